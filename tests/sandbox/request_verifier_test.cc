#include "sandbox/request_verifier.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kTarget[] = "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004";
constexpr int64_t kTimestamp = 1554208460;
constexpr char kD1Authorization[] =
    R"(WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",timestamp="1554208460",serial_no="F5765756002FDD77",signature="Tgc8fRu24ppRRLcsjwNI1sKR81C0jv3fGkBDfG8NKZudKfDCd4NSTac2OjZLJvPBO8AZXLFV3FIFTJuGO+rMmTEos3XbmxkY9mS0GIBE/okgPCJBKS4y/vQ57lOMyg647wpx/6nSoZ0CsiwulA2aGvpxWPXxiLpIcqtUGFUhSViw0Flc7TGyq64P5kt5ukYtwy9rixBkomZQOTGkLVofXQb1RG/FxJzJ/TZshjyGFgHFSdowaDHZESYp384bENglJhgRUdVgX4XeEjcCzEgLFYr+9gkBWjWunqVafDtZ3HVmLGCZ3I7zv/LDacvxvjp1MwEIEsiUuhEZqy3bKHfhQA==")";
constexpr char kD2Authorization[] =
    R"(WECHATPAY2-SHA256-RSA2048 mchid="1234567891",serial_no="5F1C72E2A8931B72A2E13AF8DEE92471EB397115",timestamp="1554208460",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",signature="HEcVQLfh7k5/0KMbPAz+IXATrE9CqEbVw/2cIDMSQM7XPDCsvaBOuznH6HCRnqkhZChMpdFx8RSuFG1xE5HPRn8eAAah4S62Ys/DpBCEzFIU9y3933+VJNPsMmaV0B8ZXeMkchVunNJ+arXn4kTTwICvszr4PS2ilnfmyQA1WZwG4Dr48IPGnnLiXr+v8oBurNlFzucOihG56PcSICc8fmR81OBTJjuREN8esm/XbNGb9tiEAI0BpZleLpxeMNZkCvvXhACXbYZuTNNccz37/INhHubw5q6SbXFPLD1WE/LQ4sTz3YylDif2QhfqS0bPKuU5dkV/3S/qxRNoaBcByA==")";

MerchantIdentity GoMerchant() {
  auto cert = crypto::Certificate::FromPem(ReadTestData("vectors/go_cert.pem"));
  EXPECT_THAT(cert, IsOk());
  return MerchantIdentity{"1900000001", "F5765756002FDD77", cert->public_key()};
}

class RequestVerifierTest : public ::testing::Test {
 protected:
  RequestVerifierTest()
      : clock_(absl::FromUnixSeconds(kTimestamp)),
        go_key_(*crypto::RsaPrivateKey::FromPem(ReadTestData("vectors/go_key.pem"))),
        verifier_(GoMerchant(), &clock_) {}

  std::string Sign(const std::string& target, int64_t ts, const std::string& nonce) {
    std::string msg = "GET\n" + target + "\n" + std::to_string(ts) + "\n" + nonce + "\n\n";
    return "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"" + nonce + "\",timestamp=\"" +
           std::to_string(ts) + "\",serial_no=\"F5765756002FDD77\",signature=\"" +
           crypto::Base64Encode(*go_key_.SignSha256(msg)) + "\"";
  }

  FakeClock clock_;
  crypto::RsaPrivateKey go_key_;
  RequestVerifier verifier_;
};

TEST_F(RequestVerifierTest, AcceptsVectorD1) {
  RequestVerification v = verifier_.Verify("GET", kTarget, "", kD1Authorization);
  EXPECT_THAT(v.status, IsOk());
  EXPECT_EQ(v.sign_message.size(), 136u);
}

TEST_F(RequestVerifierTest, AcceptsVectorD2InPhpFieldOrder) {
  auto cert = crypto::Certificate::FromPem(ReadTestData("vectors/java_merchant_certificate.pem"));
  ASSERT_THAT(cert, IsOk());
  RequestVerifier java(MerchantIdentity{"1234567891", cert->serial(), cert->public_key()}, &clock_);
  EXPECT_THAT(java.Verify("GET", kTarget, "", kD2Authorization).status, IsOk());
}

TEST_F(RequestVerifierTest, RejectsReplayedNonce) {
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", kD1Authorization).status, IsOk());
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", kD1Authorization).status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("nonce_str has already been used")));
  verifier_.ClearNonces();
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", kD1Authorization).status, IsOk());
}

TEST_F(RequestVerifierTest, NonceForgottenOnceOutsideWindow) {
  std::string auth = Sign(kTarget, kTimestamp, "n1");
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", auth).status, IsOk());
  clock_.Advance(absl::Seconds(301));
  // Now rejected for its timestamp, not for its nonce.
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", auth).status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("301 s away")));
}

TEST_F(RequestVerifierTest, TimestampWindowIsPlusMinus300Seconds) {
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", Sign(kTarget, kTimestamp - 300, "a")).status, IsOk());
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", Sign(kTarget, kTimestamp + 300, "b")).status, IsOk());
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", Sign(kTarget, kTimestamp - 301, "c")).status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("timestamp")));
  EXPECT_THAT(verifier_.Verify("GET", kTarget, "", Sign(kTarget, kTimestamp + 301, "d")).status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("timestamp")));
}

TEST_F(RequestVerifierTest, RejectsEachDefect) {
  struct Case {
    std::string header;
    std::string issue;
  };
  std::string good = Sign(kTarget, kTimestamp, "x1");
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string h = good;
    h.replace(h.find(from), from.size(), to);
    return h;
  };
  std::vector<Case> cases = {
      {replace("mchid=\"1900000001\"", "mchid=\"1900000002\""), "unknown mchid"},
      {replace("serial_no=\"F5765756002FDD77\"", "serial_no=\"ABCDEF\""), "serial_no"},
      {replace("timestamp=\"1554208460\"", "timestamp=\"+1554208460\""), "decimal"},
      {replace("timestamp=\"1554208460\"", "timestamp=\"1554208461\""), "sign not match"},
      {replace("signature=\"", "signature=\"!"), "Base64"},
      {replace("nonce_str=\"x1\"", "nonce_str=\"x2\""), "sign not match"},
      {replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3"), "scheme"},
  };
  for (const Case& c : cases) {
    RequestVerification v = verifier_.Verify("GET", kTarget, "", c.header);
    EXPECT_THAT(v.status, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr(c.issue))) << c.header;
  }
}

TEST_F(RequestVerifierTest, SignsTheRawTargetNotADecodedOne) {
  const std::string raw = "/v3/palmservice/authorization/openid/o%2Ba?organization_id=a%20b";
  std::string auth = Sign("/v3/palmservice/authorization/openid/o+a?organization_id=a b", kTimestamp, "r1");
  EXPECT_THAT(verifier_.Verify("GET", raw, "", auth).status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("sign not match")));
  EXPECT_THAT(verifier_.Verify("GET", raw, "", Sign(raw, kTimestamp, "r2")).status, IsOk());
}

TEST_F(RequestVerifierTest, ReportsTheMessageItChecked) {
  RequestVerification v = verifier_.Verify("GET", "/v3/certificates", "", Sign("/v3/other", kTimestamp, "m1"));
  EXPECT_FALSE(v.status.ok());
  EXPECT_EQ(v.sign_message, "GET\n/v3/certificates\n1554208460\nm1\n\n");
}

}  // namespace
}  // namespace palmgate::sandbox
