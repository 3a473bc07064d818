#include "server/crypto/secret.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <new>
#include <string>
#include <system_error>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::crypto {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::palmgate::testing::TestDataPath;
using ::testing::HasSubstr;
using ::testing::Not;

// True when any byte in [p, p + n) is not zero.
bool AnyNonZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != '\0') return true;
  }
  return false;
}

TEST(WipeStringTest, ZeroesTheWholeAllocationAndKeepsIt) {
  std::string s(200, 'k');
  s.resize(10);  // bytes 10..199 still hold key bytes beyond size()
  const char* buffer = s.data();
  const size_t capacity = s.capacity();
  ASSERT_GE(capacity, 200u);
  WipeString(s);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.data(), buffer);  // same allocation, still owned by `s`: safe to inspect
  EXPECT_FALSE(AnyNonZero(buffer, capacity));
}

TEST(WipeStringTest, ZeroesAShortInlineValue) {
  std::string s = "0123456789";  // fits libstdc++'s inline buffer
  const char* buffer = s.data();
  WipeString(s);
  EXPECT_FALSE(AnyNonZero(buffer, s.capacity()));
}

// The destructor runs in storage we own, so what it leaves can be read: a short
// value lives inside the object (checked first, or the test would prove
// nothing), where the wipe must have reached it.
TEST(SecretStringTest, DestructorWipesTheValue) {
  alignas(SecretString) unsigned char storage[sizeof(SecretString)];
  auto raw = [&] { return std::string(reinterpret_cast<const char*>(storage), sizeof(storage)); };
  auto* secret = new (storage) SecretString(std::string("apiv3-secret"));
  ASSERT_EQ(secret->value(), "apiv3-secret");
  ASSERT_THAT(raw(), HasSubstr("apiv3-secret"));
  secret->~SecretString();
  asm volatile("" ::: "memory");  // read the storage as memory, whatever the optimiser assumed
  EXPECT_THAT(raw(), Not(HasSubstr("apiv3")));
}

TEST(SecretStringTest, MovedFromSourceIsWiped) {
  alignas(SecretString) unsigned char storage[sizeof(SecretString)];
  auto* source = new (storage) SecretString(std::string("short-key"));
  auto raw = [&] { return std::string(reinterpret_cast<const char*>(storage), sizeof(storage)); };
  ASSERT_THAT(raw(), HasSubstr("short-key"));  // inline in the object
  SecretString target(std::move(*source));
  EXPECT_EQ(target.value(), "short-key");
  EXPECT_THAT(raw(), Not(HasSubstr("short-key")));
  source->~SecretString();
}

TEST(SecretStringTest, AssignmentReplacesAndClearEmpties) {
  SecretString a(std::string(64, 'a'));
  SecretString b(std::string(32, 'b'));
  a = b;
  EXPECT_EQ(a.value(), std::string(32, 'b'));
  EXPECT_EQ(b.value(), std::string(32, 'b'));
  a = SecretString(std::string("c"));
  EXPECT_EQ(a.value(), "c");
  a.Clear();
  EXPECT_TRUE(a.empty());
}

TEST(SecretStringTest, StripTrailingWhitespaceZeroesTheTail) {
  SecretString s(std::string("0123456789abcdef0123456789abcdef \r\n\t"));
  const char* buffer = s.value().data();
  s.StripTrailingWhitespace();
  EXPECT_EQ(s.value(), "0123456789abcdef0123456789abcdef");
  EXPECT_FALSE(AnyNonZero(buffer + 33, 3));  // the terminator at 32, then the wiped tail
}

TEST(ReadSecretFileTest, ReadsWhatReadFileReads) {
  absl::StatusOr<SecretString> secret = ReadSecretFile(TestDataPath("vectors/go_key.pem"));
  ASSERT_THAT(secret.status(), IsOk());
  EXPECT_EQ(secret->value(), ReadTestData("vectors/go_key.pem"));
}

TEST(ReadSecretFileTest, ErrorsNameThePathWithTheSameCodesAsReadFile) {
  EXPECT_THAT(ReadSecretFile("/nonexistent/apiclient_key.pem").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/apiclient_key.pem")));
  EXPECT_THAT(ReadSecretFile(PALMGATE_TESTDATA_DIR).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ReadSecretFile(TestDataPath("vectors/go_key.pem"), /*max_bytes=*/100).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("larger than 100 bytes")));
}

TEST(ReadSecretFileTest, ReadsFilesWhoseSizeStatDoesNotKnow) {
  // /proc files report size 0: the buffer has to grow while reading.
  absl::StatusOr<SecretString> secret = ReadSecretFile("/proc/self/status");
  ASSERT_THAT(secret.status(), IsOk());
  EXPECT_THAT(secret->value(), HasSubstr("Name:"));
  EXPECT_GT(secret->size(), 100u);
}

}  // namespace
}  // namespace palmgate::crypto
