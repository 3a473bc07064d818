#include "sandbox/certificates.h"

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::testing::MatchesRegex;

TEST(CertificatesTest, FormatsBeijingTime) {
  EXPECT_EQ(FormatRfc3339Cst(absl::FromUnixSeconds(0)), "1970-01-01T08:00:00+08:00");
}

TEST(CertificatesTest, EnvelopeRoundTrips) {
  const std::string pem = ReadTestData("vectors/java_wechat_pay_certificate.pem");
  absl::StatusOr<crypto::Certificate> cert = crypto::Certificate::FromPem(pem);
  ASSERT_THAT(cert, IsOk());
  const std::string key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
  absl::StatusOr<std::string> body = BuildCertificatesBody({*cert, *cert}, key);
  ASSERT_THAT(body, IsOk());
  nlohmann::json j = nlohmann::json::parse(*body, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_EQ(j["data"].size(), 2u);
  const nlohmann::json& d = j["data"][0];
  EXPECT_EQ(d["serial_no"], "440024045C4A427599D09BB4E3DE0279F2E813FD");
  EXPECT_THAT(d["effective_time"].get<std::string>(), MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\+08:00"));
  const nlohmann::json& e = d["encrypt_certificate"];
  EXPECT_EQ(e["algorithm"], "AEAD_AES_256_GCM");
  EXPECT_EQ(e["associated_data"], "certificate");
  EXPECT_THAT(e["nonce"].get<std::string>(), MatchesRegex("[0-9A-Za-z]{12}"));
  EXPECT_NE(e["nonce"], j["data"][1]["encrypt_certificate"]["nonce"]);
  absl::StatusOr<std::string> sealed = crypto::Base64Decode(e["ciphertext"].get<std::string>());
  ASSERT_THAT(sealed, IsOk());
  absl::StatusOr<std::string> opened = crypto::AesGcmOpen(key, e["nonce"].get<std::string>(), "certificate", *sealed);
  ASSERT_THAT(opened, IsOk());
  absl::StatusOr<crypto::Certificate> back = crypto::Certificate::FromPem(*opened);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->serial(), cert->serial());
  EXPECT_THAT(crypto::AesGcmOpen("b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", e["nonce"].get<std::string>(), "certificate",
                                 *sealed),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(CertificatesTest, RejectsShortApiV3Key) {
  EXPECT_THAT(BuildCertificatesBody({}, "short"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace palmgate::sandbox
