#include "server/wechatpay/certificates.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kApiV3Key[] = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";  // vectors.md V5 (wechatpay-java TestConfig)

TEST(CertificatesTest, DecryptsV5RealTenpayCertificate) {
  auto certs = ParseCertificatesResponse(ReadTestData("vectors/java_certs_response.json"), kApiV3Key);
  ASSERT_THAT(certs, IsOk());
  ASSERT_EQ(certs->size(), 1u);
  const crypto::Certificate& c = (*certs)[0];
  EXPECT_EQ(c.serial(), "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC");
  EXPECT_THAT(c.subject(), HasSubstr("CN=Tenpay.com sign"));
  EXPECT_EQ(absl::FormatTime("%Y-%m-%d", c.not_after(), absl::UTCTimeZone()), "2028-09-17");
  // The plaintext is the published certificate, byte for byte.
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(c.pem()),
            absl::StripTrailingAsciiWhitespace(ReadTestData("vectors/java_downloaded_cert.pem")));
}

TEST(CertificatesTest, WrongApiV3KeyIsDataLoss) {
  EXPECT_THAT(ParseCertificatesResponse(ReadTestData("vectors/java_certs_response.json"),
                                        "b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ParseCertificatesResponse(ReadTestData("vectors/java_certs_response.json"), "short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
}

TEST(CertificatesTest, RejectsTamperedDocuments) {
  const nlohmann::json good = nlohmann::json::parse(ReadTestData("vectors/java_certs_response.json"));
  auto mutate = [&](auto&& f) {
    nlohmann::json j = good;
    f(j);
    return ParseCertificatesResponse(j.dump(), kApiV3Key);
  };
  EXPECT_THAT(mutate([](auto& j) { j["data"][0]["serial_no"] = "0123"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("serial")));
  EXPECT_THAT(mutate([](auto& j) { j["data"][0]["encrypt_certificate"]["algorithm"] = "AEAD_SM4_GCM"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("algorithm")));
  EXPECT_THAT(mutate([](auto& j) { j["data"][0]["encrypt_certificate"]["associated_data"] = "cert"; }),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(mutate([](auto& j) { j["data"][0]["encrypt_certificate"]["nonce"] = "24b16c03dc1b"; }),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(mutate([](auto& j) { j["data"][0]["encrypt_certificate"]["ciphertext"] = "invalid cipher"; }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(mutate([](auto& j) { j["data"][0].erase("encrypt_certificate"); }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(mutate([](auto& j) { j["data"] = "x"; }), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseCertificatesResponse("not json", kApiV3Key), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseCertificatesResponse("[]", kApiV3Key), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseCertificatesResponse(std::string(100000, '['), kApiV3Key),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CertificatesTest, EncryptedNonCertificateIsRefused) {
  const std::string nonce = "0123456789ab";
  auto ct = crypto::AesGcmSeal(kApiV3Key, nonce, "certificate", "-----BEGIN PUBLIC KEY-----\nAAAA\n");
  ASSERT_THAT(ct, IsOk());
  nlohmann::json doc = {{"data",
                         {{{"serial_no", "01"},
                           {"effective_time", "2024-01-01T00:00:00+08:00"},
                           {"expire_time", "2029-01-01T00:00:00+08:00"},
                           {"encrypt_certificate",
                            {{"algorithm", "AEAD_AES_256_GCM"},
                             {"nonce", nonce},
                             {"associated_data", "certificate"},
                             {"ciphertext", crypto::Base64Encode(*ct)}}}}}}};
  EXPECT_THAT(ParseCertificatesResponse(doc.dump(), kApiV3Key), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace palmgate::wechatpay
