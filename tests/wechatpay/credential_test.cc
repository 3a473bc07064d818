#include "server/wechatpay/credential.h"

#include <memory>
#include <regex>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/wechatpay/request_target.h"
#include "server/wechatpay/rsa_signer.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOkAndHolds;
using ::palmgate::testing::TestDataPath;

// A signer that returns "Sign:" + message, as in wechatpay-go's credential test (vectors.md V2a).
class MockSigner final : public Signer {
 public:
  absl::StatusOr<std::string> Sign(absl::string_view message) const override {
    return absl::StrCat("Sign:", message);
  }
  absl::string_view Algorithm() const override { return "Mock"; }
};

TEST(CredentialTest, MatchesGoSdkLayoutForGet) {  // V2a
  FakeClock clock;
  Credential cred("1234567890", "0123456789ABC", std::make_shared<MockSigner>(), clock);
  EXPECT_THAT(cred.AuthorizationHeaderAt("GET", "/v3/certificates", "", 1624523846, "A1B2C3D4E5F6G7"),
              IsOkAndHolds(std::string(
                  "WECHATPAY2-Mock mchid=\"1234567890\",nonce_str=\"A1B2C3D4E5F6G7\",timestamp=\"1624523846\","
                  "serial_no=\"0123456789ABC\",signature=\"Sign:GET\n/v3/certificates\n1624523846\nA1B2C3D4E5F6G7\n\n\"")));
}

TEST(CredentialTest, BodyEndingInNewlineStillGetsOne) {  // V2a, POST
  EXPECT_EQ(BuildRequestSignMessage("POST", "/v3/certificates", 1624523846, "A1B2C3D4E5F6G7", "Hello World!\n"),
            "POST\n/v3/certificates\n1624523846\nA1B2C3D4E5F6G7\nHello World!\n\n");
}

TEST(CredentialTest, MatchesJavaSdkMessage) {  // V2b
  EXPECT_EQ(BuildRequestSignMessage("GET", "/v3/pay/transactions/id/1217752501201407033233368018?mchid=1230000109",
                                    1652750623, "eBYqCOxa0QudMnPvVilkTzOg3gHh5Z3u", ""),
            "GET\n/v3/pay/transactions/id/1217752501201407033233368018?mchid=1230000109\n1652750623\n"
            "eBYqCOxa0QudMnPvVilkTzOg3gHh5Z3u\n\n");
}

constexpr char kD1Signature[] =
    "Tgc8fRu24ppRRLcsjwNI1sKR81C0jv3fGkBDfG8NKZudKfDCd4NSTac2OjZLJvPBO8AZXLFV3FIFTJuGO+rMmTEos3XbmxkY9mS0GIBE/okgPCJ"
    "BKS4y/vQ57lOMyg647wpx/6nSoZ0CsiwulA2aGvpxWPXxiLpIcqtUGFUhSViw0Flc7TGyq64P5kt5ukYtwy9rixBkomZQOTGkLVofXQb1RG/F"
    "xJzJ/TZshjyGFgHFSdowaDHZESYp384bENglJhgRUdVgX4XeEjcCzEgLFYr+9gkBWjWunqVafDtZ3HVmLGCZ3I7zv/LDacvxvjp1MwEIEsiUuhE"
    "Zqy3bKHfhQA==";

constexpr char kD2Signature[] =
    "HEcVQLfh7k5/0KMbPAz+IXATrE9CqEbVw/2cIDMSQM7XPDCsvaBOuznH6HCRnqkhZChMpdFx8RSuFG1xE5HPRn8eAAah4S62Ys/DpBCEzFIU9y3"
    "933+VJNPsMmaV0B8ZXeMkchVunNJ+arXn4kTTwICvszr4PS2ilnfmyQA1WZwG4Dr48IPGnnLiXr+v8oBurNlFzucOihG56PcSICc8fmR81OBTJj"
    "uREN8esm/XbNGb9tiEAI0BpZleLpxeMNZkCvvXhACXbYZuTNNccz37/INhHubw5q6SbXFPLD1WE/LQ4sTz3YylDif2QhfqS0bPKuU5dkV/3S/qx"
    "RNoaBcByA==";

TEST(CredentialTest, SignsD1PalmserviceRequestWithGoKey) {
  auto signer = RsaSha256Signer::FromPemFile(TestDataPath("vectors/go_key.pem"));
  ASSERT_TRUE(signer.ok()) << signer.status();
  FakeClock clock;
  Credential cred("1900000001", "F5765756002FDD77", std::shared_ptr<const Signer>(*std::move(signer)), clock);
  auto target = AuthorizationQueryTarget("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "1004");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004");
  EXPECT_EQ(BuildRequestSignMessage("GET", *target, 1554208460, "593BEC0C930BF1AFEB40B4A08C8FB242", "").size(), 136u);
  EXPECT_THAT(cred.AuthorizationHeaderAt("GET", *target, "", 1554208460, "593BEC0C930BF1AFEB40B4A08C8FB242"),
              IsOkAndHolds(absl::StrCat(
                  "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\","
                  "timestamp=\"1554208460\",serial_no=\"F5765756002FDD77\",signature=\"",
                  kD1Signature, "\"")));
}

TEST(CredentialTest, SignsD2PalmserviceRequestWithJavaKey) {
  auto signer = RsaSha256Signer::FromPemFile(TestDataPath("vectors/java_merchant_private_key.pem"));
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_THAT((*signer)->Sign(BuildRequestSignMessage(
                  "GET", "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004",
                  1554208460, "593BEC0C930BF1AFEB40B4A08C8FB242", "")),
              IsOkAndHolds(std::string(kD2Signature)));
}

TEST(CredentialTest, FreshNonceAndClockTimestampEveryCall) {
  FakeClock clock(absl::FromUnixSeconds(1722850421));
  Credential cred("1900000001", "SERIAL", std::make_shared<MockSigner>(), clock);
  const std::regex layout(
      "WECHATPAY2-Mock mchid=\"1900000001\",nonce_str=\"([0-9A-Za-z]{32})\",timestamp=\"1722850421\","
      "serial_no=\"SERIAL\",signature=\"Sign:GET\n/x\n1722850421\n([0-9A-Za-z]{32})\n\n\"");
  std::set<std::string> nonces;
  for (int i = 0; i < 50; ++i) {
    auto header = cred.AuthorizationHeader("GET", "/x", "");
    ASSERT_TRUE(header.ok());
    std::smatch m;
    ASSERT_TRUE(std::regex_match(*header, m, layout)) << *header;
    EXPECT_EQ(m[1].str(), m[2].str());  // the header's nonce is the signed one
    nonces.insert(m[1].str());
  }
  EXPECT_EQ(nonces.size(), 50u);
}

TEST(RsaSha256SignerTest, LoadErrorsNameTheFileNotTheKey) {
  auto missing = RsaSha256Signer::FromPemFile("/nonexistent/apiclient_key.pem");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), ::testing::HasSubstr("/nonexistent/apiclient_key.pem"));
  auto cert = RsaSha256Signer::FromPemFile(TestDataPath("vectors/go_cert.pem"));
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cert.status().message()), ::testing::HasSubstr("found a certificate"));
  auto small = RsaSha256Signer::FromPemFile(TestDataPath("keys/rsa1024_key.pem"));
  EXPECT_THAT(std::string(small.status().message()), ::testing::HasSubstr("RSA-2048"));
  EXPECT_THAT(std::string(small.status().message()), ::testing::Not(::testing::HasSubstr("MII")));
}

}  // namespace
}  // namespace palmgate::wechatpay
