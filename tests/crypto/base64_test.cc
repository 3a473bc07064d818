#include "server/crypto/base64.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::crypto {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;

TEST(Base64Test, EncodesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(std::string("\xfb\xff\xfe", 3)), "+//+");
}

TEST(Base64Test, DecodesWhatItEncodes) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 7) {
    auto decoded = Base64Decode(Base64Encode(all.substr(0, n)));
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(*decoded, all.substr(0, n));
  }
}

TEST(Base64Test, RejectsNonStrictInput) {
  for (const char* bad : {"Zg", "Zg=", "Zm9v\n", "Zm9v Yg==", "Zm-v", "Zm_v", "Z===", "=Zm9", "Zg=a",
                          "Zh==",  // non-zero padding bits
                          "Zm9=",  // non-zero padding bits
                          "WECHATPAY/SIGNTEST/tiRMXK1WbSxuSugmlxoWsQlC0E/Q8tTf25p1JKtX"}) {
    EXPECT_THAT(Base64Decode(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

}  // namespace
}  // namespace palmgate::crypto
