#include "server/crypto/aes_gcm.h"

#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/base64.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::crypto {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;

std::string B64(absl::string_view s) { return *Base64Decode(s); }

struct GcmVector {
  const char* name;
  const char* key;
  const char* nonce;
  const char* aad;
  const char* plaintext;
  const char* ciphertext_b64;
};

// vectors.md V4a–V4d (wechatpay-java, wechatpay-go, wechatpay-axios-plugin tests).
constexpr GcmVector kVectors[] = {
    {"V4a", "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", "uluk4a9R25RW", "associatedData", "message",
     "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="},
    {"V4b", "testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "Hello World",
     "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"},
    {"V4c", "0123456789abcdef0123456789abcdef", "0123456789abcdef", "", "", "GvpmmdtYwexXIPhySs9Tlg=="},
    {"V4d", "0123456789abcdef0123456789abcdef", "0123456789abcdef", "world", "hello",
     "APoZlYpivU3HjbAiB4CvW1rAFr8J"},
};

TEST(AesGcmTest, OpensPublishedVectors) {
  for (const auto& v : kVectors) {
    auto pt = AesGcmOpen(v.key, v.nonce, v.aad, B64(v.ciphertext_b64));
    ASSERT_THAT(pt, IsOk()) << v.name;
    EXPECT_EQ(*pt, v.plaintext) << v.name;
  }
}

TEST(AesGcmTest, SealsPublishedVectors) {
  for (const auto& v : kVectors) {
    auto ct = AesGcmSeal(v.key, v.nonce, v.aad, v.plaintext);
    ASSERT_THAT(ct, IsOk()) << v.name;
    EXPECT_EQ(Base64Encode(*ct), v.ciphertext_b64) << v.name;
  }
}

TEST(AesGcmTest, RejectsWrongAssociatedDataNonceKeyOrText) {
  const auto& v = kVectors[0];
  const std::string ct = B64(v.ciphertext_b64);
  EXPECT_THAT(AesGcmOpen(v.key, v.nonce, "bad-associatedData", ct), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(AesGcmOpen(v.key, "bad-4a9R25RW", v.aad, ct), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(AesGcmOpen(v.key, v.nonce, v.aad, std::string(128, '\0')), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(AesGcmOpen("testAPIv3Key1111", kVectors[1].nonce, kVectors[1].aad, B64(kVectors[1].ciphertext_b64)),
              StatusIs(absl::StatusCode::kDataLoss));
  std::string flipped = ct;
  flipped[0] ^= 1;
  EXPECT_THAT(AesGcmOpen(v.key, v.nonce, v.aad, flipped), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(AesGcmOpen(v.key, v.nonce, v.aad, ct.substr(0, ct.size() - 1)), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(AesGcmTest, RejectsBadSizes) {
  EXPECT_THAT(AesGcmOpen("short", "uluk4a9R25RW", "", std::string(20, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AesGcmOpen(kVectors[0].key, "", "", std::string(20, 'x')), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AesGcmOpen(kVectors[0].key, "uluk4a9R25RW", "", "tooshort"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RandomTest, AlphanumericHasLengthAlphabetAndVariety) {
  std::set<std::string> seen;
  std::set<char> chars;
  for (int i = 0; i < 200; ++i) {
    std::string s = RandomAlphanumeric(32);
    ASSERT_EQ(s.size(), 32u);
    for (char c : s) {
      ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) << s;
      chars.insert(c);
    }
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_EQ(chars.size(), 62u);  // 6400 draws cover all 62 symbols with overwhelming probability
}

// Nonces come from a per-thread pool of CSPRNG output: a child process must
// not repeat the nonces its parent draws next from the same pool.
TEST(RandomAlphanumericTest, ForkedChildDoesNotRepeatTheParentsNonces) {
  const std::string before = RandomAlphanumeric(32);  // fills this thread's pool
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string child = RandomAlphanumeric(32);
    const ssize_t n = write(fds[1], child.data(), child.size());
    _exit(n == static_cast<ssize_t>(child.size()) ? 0 : 1);
  }
  close(fds[1]);
  const std::string parent = RandomAlphanumeric(32);
  std::string child(32, '\0');
  ASSERT_EQ(read(fds[0], child.data(), child.size()), 32);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(child, parent);
  EXPECT_NE(child, before);
}

// Many nonces drawn across pool refills stay distinct.
TEST(RandomAlphanumericTest, NoncesStayDistinctAcrossPoolRefills) {
  std::set<std::string> seen;
  for (int i = 0; i < 5000; ++i) seen.insert(RandomAlphanumeric(32));  // ~125 refills of 1 KB
  EXPECT_EQ(seen.size(), 5000u);
}

}  // namespace
}  // namespace palmgate::crypto
