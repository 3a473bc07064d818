#include "sandbox/nonce_cache.h"

#include "gtest/gtest.h"

namespace palmgate::sandbox {
namespace {

TEST(NonceCacheTest, RejectsReuseUntilExpiry) {
  NonceCache cache;
  EXPECT_TRUE(cache.Insert("m|n", /*expires_at_s=*/100, /*now_s=*/10));
  EXPECT_FALSE(cache.Insert("m|n", 200, 50));
  EXPECT_TRUE(cache.Insert("m|other", 200, 50));
  EXPECT_TRUE(cache.Insert("m|n", 300, 100));  // expired at 100
}

TEST(NonceCacheTest, MemoryIsBounded) {
  NonceCache cache(/*max_entries=*/100);
  for (int i = 0; i < 1000; ++i) cache.Insert("n" + std::to_string(i), 1000, 0);
  EXPECT_LE(cache.size(), 100u);
  // Expired entries are purged on the next insert.
  cache.Insert("late", 5000, 2000);
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace palmgate::sandbox
