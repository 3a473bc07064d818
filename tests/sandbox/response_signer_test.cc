#include "sandbox/response_signer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/base64.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::IsOkAndHolds;
using ::palmgate::testing::ReadTestData;
using ::testing::MatchesRegex;

constexpr char kTimestamp[] = "1722850421";
constexpr char kNonce[] = "d824f2e086d3c1df967785d13fcd22ef";
constexpr char kD3Body[] =
    R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2018-06-08T10:34:56+08:00"})";
constexpr char kD3Signature[] =
    "tiRMXK1WbSxuSugmlxoWsQlC0E/Q8tTf25p1JKtX5lxogowHhK98heTWnrdBDYZp5/BAbQPuWzcYFdO8kO9VHbFwHjOxjVfPcCePzFQ7mNnbl46gn"
    "iiFHGtv6XRTB5DeoQWDkZk7sts3EwQjdJn5Dt9Q9QWfIFCB4aV5zRNKkgtYF5pCw8PDb1kn+Tby05xZ8nDLb9DK2+U0WCtFWaOz3dCISONUhun0wx"
    "xydPL6f9EWv7onU83nq63yGDVCIgLVzlokPqTgHGV47C8G4ksF5Uzrub959QFzJVGgbndOQH9OL+J0CJs8cNjJ6L4v4ZyzqHtMKYnoEV8IPxggpnvVrw==";
constexpr char kD5Signature[] =
    "C+OdLSq4cZauZVcWqhwHPNF6qDCtjlgM4GhJJTcRQPt/16m63gxQWiQqyMOJQnE3twf1thNgvHg7myrqzd+G2ALT8OL/aS2dRgKIfDy3AUaXUnGh8s9"
    "10cgOG5MN87G86shz1wv0NJVNGp2lpNqlSQM1+4TO4iRJ/eBE9+qpal+LhekKKhwJEgzeKZmRuyFfala5BP8K94W9M9JGP6eqSngqIHXH7VyFLbOG"
    "UXpiL2d/2uT9n1RFTCOdvw7vz3XjrpxWMLzrk9+vvYisFFL8b1V3nnWVJRdJXFIjXaD2pZy/NdIS3ozlxpN9ra++xmqTeI2POKv4OQCdHB9X8lNIMw==";

crypto::RsaPrivateKey K3() {
  return *crypto::RsaPrivateKey::FromPem(ReadTestData("vectors/java_wechat_pay_private_key.pem"));
}

TEST(ResponseSignerTest, ProducesVectorD3) {
  EXPECT_EQ(BuildResponseSignMessage(kTimestamp, kNonce, kD3Body).size(), 189u);
  EXPECT_THAT(SignResponse(K3(), kTimestamp, kNonce, kD3Body), IsOkAndHolds(std::string(kD3Signature)));
}

TEST(ResponseSignerTest, ProducesVectorD5ForAnEmptyBody) {
  EXPECT_EQ(BuildResponseSignMessage(kTimestamp, kNonce, ""), "1722850421\nd824f2e086d3c1df967785d13fcd22ef\n\n");
  EXPECT_THAT(SignResponse(K3(), kTimestamp, kNonce, ""), IsOkAndHolds(std::string(kD5Signature)));
}

TEST(ResponseSignerTest, SignsWithClockTimestampAndFreshHexNonce) {
  FakeClock clock(absl::FromUnixSeconds(1722850421));
  ResponseSigner signer(&clock, absl::ZeroDuration());
  SigningKey key{"PUB_KEY_ID_1", K3()};
  absl::StatusOr<ResponseSignature> a = signer.Sign(key, "body");
  absl::StatusOr<ResponseSignature> b = signer.Sign(key, "body");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->timestamp, "1722850421");
  EXPECT_EQ(a->serial, "PUB_KEY_ID_1");
  EXPECT_THAT(a->nonce, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(a->nonce, b->nonce);
  EXPECT_THAT(SignResponse(key.key, a->timestamp, a->nonce, "body"), IsOkAndHolds(a->signature));
}

TEST(ResponseSignerTest, SkewShiftsTheSignedTimestamp) {
  FakeClock clock(absl::FromUnixSeconds(1722850421));
  ResponseSigner signer(&clock, absl::ZeroDuration());
  absl::StatusOr<ResponseSignature> s = signer.Sign(SigningKey{"S", K3()}, "b", -600);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->timestamp, "1722849821");
  auto pub = K3().PublicKey();
  EXPECT_THAT(pub.VerifySha256(BuildResponseSignMessage(s->timestamp, s->nonce, "b"),
                               *crypto::Base64Decode(s->signature)),
              IsOkAndHolds(true));
}

TEST(ResponseSignerTest, CacheReusesSignatureWithinTtlOnly) {
  FakeClock clock(absl::FromUnixSeconds(1722850421));
  ResponseSigner signer(&clock, absl::Milliseconds(500));
  SigningKey key{"S", K3()};
  ResponseSignature a = *signer.Sign(key, "same");
  EXPECT_EQ(signer.Sign(key, "same")->nonce, a.nonce);
  EXPECT_NE(signer.Sign(key, "other")->nonce, a.nonce);
  EXPECT_NE(signer.Sign(key, "same", /*timestamp_shift_s=*/1)->nonce, a.nonce);
  clock.Advance(absl::Milliseconds(600));
  EXPECT_NE(signer.Sign(key, "same")->nonce, a.nonce);
}

}  // namespace
}  // namespace palmgate::sandbox
