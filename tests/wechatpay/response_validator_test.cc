#include "server/wechatpay/response_validator.h"

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/utf8.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/wechatpay/error.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;

// vectors.md D3/D4/D5: responses signed with wechatpay-java's "WeChat Pay" test key K3.
constexpr char kTimestamp[] = "1722850421";
constexpr char kNonce[] = "d824f2e086d3c1df967785d13fcd22ef";
constexpr char kCertSerial[] = "440024045C4A427599D09BB4E3DE0279F2E813FD";
constexpr char kPubKeyId[] = "PUB_KEY_ID_0114232134912410000000000000000001";
constexpr char kRequestId[] = "08F5B8C2B506102C18FDDFEEA30620BE821E28EDC405-0";
constexpr char kD3Body[] =
    R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2018-06-08T10:34:56+08:00"})";
constexpr char kD3Signature[] =
    "tiRMXK1WbSxuSugmlxoWsQlC0E/Q8tTf25p1JKtX5lxogowHhK98heTWnrdBDYZp5/BAbQPuWzcYFdO8kO9VHbFwHjOxjVfPcCePzFQ7mNnbl4"
    "6gniiFHGtv6XRTB5DeoQWDkZk7sts3EwQjdJn5Dt9Q9QWfIFCB4aV5zRNKkgtYF5pCw8PDb1kn+Tby05xZ8nDLb9DK2+U0WCtFWaOz3dCISONUhu"
    "n0wxxydPL6f9EWv7onU83nq63yGDVCIgLVzlokPqTgHGV47C8G4ksF5Uzrub959QFzJVGgbndOQH9OL+J0CJs8cNjJ6L4v4ZyzqHtMKYnoEV8IPx"
    "ggpnvVrw==";
constexpr char kD4Body[] =
    "{\n  \"openid\" : \"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\",\n  \"organization_id\" : \"1004\",\n  \"state\" : "
    "\"AUTHORIZATION_STATE_NONE\",\n  \"authorize_time\" : \"2018-06-08T10:34:56+08:00\"\n}";
constexpr char kD4Signature[] =
    "LfLd1GBZEg5KPFGwUAdnFyihuUqSM5lIZVJCX1s5deu03+YDXypBQILi9vVtlMlxiaxiTOMFI5CLLkp3Q9i05T+B384fXaCq7Ab2hZ3Ar9GLfafPJn"
    "ZGNT72K2LKeuh9vVV/HeNC/6GatElStY5owHjPcf6unfq8T2hzz3Oe7xJXCcjZ651FjSL1w6hPB7u90qDqn5G2ggnz+nkI4CkDU4DUCRbrIN81bB"
    "2YGowEooD6uRRpN6vD5nwThJfBbL25guNlVFJaK9s3Flhzz1b5g+EtDNBwajKfnhvP0iOHGRYfBYFzlnSyiLIEFzmOQ6hMdbZdDXaa9aAdQJ+hWz"
    "edow==";
constexpr char kD5Signature[] =
    "C+OdLSq4cZauZVcWqhwHPNF6qDCtjlgM4GhJJTcRQPt/16m63gxQWiQqyMOJQnE3twf1thNgvHg7myrqzd+G2ALT8OL/aS2dRgKIfDy3AUaXUnGh"
    "8s910cgOG5MN87G86shz1wv0NJVNGp2lpNqlSQM1+4TO4iRJ/eBE9+qpal+LhekKKhwJEgzeKZmRuyFfala5BP8K94W9M9JGP6eqSngqIHXH7VyF"
    "LbOGUXpiL2d/2uT9n1RFTCOdvw7vz3XjrpxWMLzrk9+vvYisFFL8b1V3nnWVJRdJXFIjXaD2pZy/NdIS3ozlxpN9ra++xmqTeI2POKv4OQCdHB9X"
    "8lNIMw==";

const absl::Time kSignedAt = absl::FromUnixSeconds(1722850421);

HttpResponse SignedResponse(absl::string_view serial, absl::string_view body, absl::string_view signature) {
  HttpResponse r;
  r.status = 200;
  r.headers.Add("Content-Type", "application/json; charset=utf-8");
  r.headers.Add("Request-ID", kRequestId);
  r.headers.Add("Wechatpay-Nonce", kNonce);
  r.headers.Add("Wechatpay-Timestamp", kTimestamp);
  r.headers.Add("Wechatpay-Serial", std::string(serial));
  r.headers.Add("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048");
  r.headers.Add("Wechatpay-Signature", std::string(signature));
  r.body = std::string(body);
  return r;
}

HttpResponse Without(const HttpResponse& in, absl::string_view header) {
  HttpResponse out = in;
  out.headers = HttpHeaders();
  for (const auto& [n, v] : in.headers.fields()) {
    if (!absl::EqualsIgnoreCase(n, header)) out.headers.Add(n, v);
  }
  return out;
}

HttpResponse With(const HttpResponse& in, absl::string_view header, absl::string_view value) {
  HttpResponse out = Without(in, header);
  out.headers.Add(std::string(header), std::string(value));
  return out;
}

class ResponseValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KeyRing::Builder mixed;
    ASSERT_THAT(mixed.AddCertificatePem(ReadTestData("vectors/java_wechat_pay_certificate.pem")), IsOk());
    ASSERT_THAT(mixed.AddPublicKeyPem(kPubKeyId, ReadTestData("vectors/java_wechat_pay_public_key.pem")), IsOk());
    // The SDK certificate expired in 2025; the ring is built at signing time.
    auto ring = std::move(mixed).Build(kSignedAt);
    ASSERT_THAT(ring, IsOk());
    mixed_ = *ring;
  }

  static ErrorReason ReasonOf(const absl::StatusOr<VerifiedResponse>& r) { return GetReason(r.status()); }

  std::shared_ptr<const KeyRing> mixed_;
};

TEST_F(ResponseValidatorTest, BuildsD3VerifyMessage) {
  std::string msg = BuildResponseVerifyMessage(kTimestamp, kNonce, kD3Body);
  EXPECT_EQ(msg.size(), 189u);
  EXPECT_EQ(msg, absl::StrCat("1722850421\nd824f2e086d3c1df967785d13fcd22ef\n", kD3Body, "\n"));
}

TEST_F(ResponseValidatorTest, BuildsV3VerifyMessagesOfGoAndJavaSdks) {
  // vectors.md V3: wechatpay-go validator_test.go and wechatpay-java WechatPay2ValidatorTest.java.
  EXPECT_EQ(BuildResponseVerifyMessage("1624523846", "NONCE1234567890", "BODY"), "1624523846\nNONCE1234567890\nBODY\n");
  EXPECT_EQ(BuildResponseVerifyMessage("1624523846", "NONCE1234567890", ""), "1624523846\nNONCE1234567890\n\n");
  EXPECT_EQ(BuildResponseVerifyMessage("1652750623", "nonce", "body"), "1652750623\nnonce\nbody\n");
  EXPECT_EQ(BuildResponseVerifyMessage("1722850421", "d824f2e086d3c1df967785d13fcd22ef",
                                       R"({"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz1"})"),
            "1722850421\nd824f2e086d3c1df967785d13fcd22ef\n{\"code_url\":\"weixin://wxpay/bizpayurl?pr=JyC91EIz1\"}\n");
}

TEST_F(ResponseValidatorTest, AcceptsD3InCertificateModePublicKeyModeAndMixedMode) {
  KeyRing::Builder cert_only;
  ASSERT_THAT(cert_only.AddCertificatePem(ReadTestData("vectors/java_wechat_pay_certificate.pem")), IsOk());
  auto cert_ring = std::move(cert_only).Build(kSignedAt);
  KeyRing::Builder key_only;
  ASSERT_THAT(key_only.AddPublicKeyPem(kPubKeyId, ReadTestData("vectors/java_wechat_pay_public_key.pem")), IsOk());
  auto key_ring = std::move(key_only).Build(kSignedAt);
  ASSERT_THAT(cert_ring, IsOk());
  ASSERT_THAT(key_ring, IsOk());

  auto by_cert = ValidateResponse(SignedResponse(kCertSerial, kD3Body, kD3Signature), **cert_ring, kSignedAt);
  ASSERT_THAT(by_cert, IsOk());
  EXPECT_EQ(by_cert->serial, kCertSerial);
  EXPECT_EQ(by_cert->request_id, kRequestId);
  EXPECT_EQ(by_cert->skew, absl::ZeroDuration());
  EXPECT_THAT(ValidateResponse(SignedResponse(kPubKeyId, kD3Body, kD3Signature), **key_ring, kSignedAt), IsOk());
  EXPECT_THAT(ValidateResponse(SignedResponse(kCertSerial, kD3Body, kD3Signature), *mixed_, kSignedAt), IsOk());
  EXPECT_THAT(ValidateResponse(SignedResponse(kPubKeyId, kD3Body, kD3Signature), *mixed_, kSignedAt), IsOk());
  // Serials are hex numbers: case does not matter for certificates.
  EXPECT_THAT(ValidateResponse(SignedResponse(absl::AsciiStrToLower(kCertSerial), kD3Body, kD3Signature), *mixed_,
                               kSignedAt),
              IsOk());
  // Each ring prefers what WeChat Pay should sign with.
  EXPECT_EQ((*cert_ring)->preferred_serial(), kCertSerial);
  EXPECT_EQ((*key_ring)->preferred_serial(), kPubKeyId);
  EXPECT_EQ(mixed_->preferred_serial(), kPubKeyId);
}

TEST_F(ResponseValidatorTest, AcceptsD4PrettyBodyAndD5EmptyBody) {
  EXPECT_THAT(ValidateResponse(SignedResponse(kPubKeyId, kD4Body, kD4Signature), *mixed_, kSignedAt), IsOk());
  EXPECT_THAT(ValidateResponse(SignedResponse(kPubKeyId, "", kD5Signature), *mixed_, kSignedAt), IsOk());
  HttpResponse no_content = SignedResponse(kPubKeyId, "", kD5Signature);
  no_content.status = 204;
  EXPECT_THAT(ValidateResponse(no_content, *mixed_, kSignedAt), IsOk());
}

TEST_F(ResponseValidatorTest, RejectsReserialisedBody) {  // D3-n1
  std::string spaced = kD3Body;
  spaced.replace(spaced.find("\"openid\":"), 9, "\"openid\": ");
  auto r = ValidateResponse(SignedResponse(kPubKeyId, spaced, kD3Signature), *mixed_, kSignedAt);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(ReasonOf(r), ErrorReason::kResponseSignatureInvalid);
  // Another body signed by D3's signature, e.g. a different state, fails the same way.
  std::string off = kD3Body;
  off.replace(off.find("STATE_ON"), 8, "STATE_OFF");
  EXPECT_EQ(ReasonOf(ValidateResponse(SignedResponse(kPubKeyId, off, kD3Signature), *mixed_, kSignedAt)),
            ErrorReason::kResponseSignatureInvalid);
}

TEST_F(ResponseValidatorTest, RejectsProbeSignature) {  // D3-n3
  auto r = ValidateResponse(
      SignedResponse(kPubKeyId, kD3Body, "WECHATPAY/SIGNTEST/tiRMXK1WbSxuSugmlxoWsQlC0E/Q8tTf25p1JKtX"), *mixed_,
      kSignedAt);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal, HasSubstr("probe")));
  EXPECT_EQ(ReasonOf(r), ErrorReason::kResponseSignatureProbe);
  // A probe whose tail happens to be valid Base64 is still a probe.
  EXPECT_EQ(ReasonOf(ValidateResponse(SignedResponse(kPubKeyId, kD3Body, absl::StrCat("WECHATPAY/SIGNTEST/", kD3Signature)),
                                      *mixed_, kSignedAt)),
            ErrorReason::kResponseSignatureProbe);
}

TEST_F(ResponseValidatorTest, EnforcesSkewWindowBothWays) {  // D3-n4
  const auto resp = SignedResponse(kPubKeyId, kD3Body, kD3Signature);
  EXPECT_THAT(ValidateResponse(resp, *mixed_, kSignedAt + absl::Seconds(299)), IsOk());
  EXPECT_THAT(ValidateResponse(resp, *mixed_, kSignedAt - absl::Seconds(299)), IsOk());
  auto late = ValidateResponse(resp, *mixed_, kSignedAt + absl::Seconds(300));
  EXPECT_EQ(ReasonOf(late), ErrorReason::kResponseTimestampSkew);
  EXPECT_THAT(late, StatusIs(absl::StatusCode::kInternal, HasSubstr("local clock")));
  EXPECT_EQ(ReasonOf(ValidateResponse(resp, *mixed_, kSignedAt - absl::Seconds(300))),
            ErrorReason::kResponseTimestampSkew);
  ValidatorOptions wide;
  wide.max_clock_skew = absl::Minutes(10);
  auto ok = ValidateResponse(resp, *mixed_, kSignedAt + absl::Seconds(400), wide);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->skew, absl::Seconds(-400));
}

// Issue 13 finding 6: the window was judged before the serial and the
// signature, so any unverified timestamp came back as RESPONSE_TIMESTAMP_SKEW,
// which the client reports as the local clock's skew. Now a failure before the
// signature verified keeps its own reason, however far off the timestamp.
TEST_F(ResponseValidatorTest, JudgesTheWindowOnlyOnceTheSignatureVerified) {
  const auto resp = SignedResponse(kPubKeyId, kD3Body, kD3Signature);
  for (absl::Duration off : {absl::Seconds(100000), absl::Seconds(-100000), absl::Seconds(300)}) {
    const absl::Time now = kSignedAt - off;  // the answer's timestamp is `off` from `now`
    EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Serial", "PUB_KEY_ID_0000000000000000000000000000000009"),
                                        *mixed_, now)),
              ErrorReason::kUnknownWechatpaySerial);
    EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Nonce", "d824f2e086d3c1df967785d13fcd22eF"), *mixed_,
                                        now)),
              ErrorReason::kResponseSignatureInvalid);
    EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Signature", "c2hvcnQ="), *mixed_, now)),
              ErrorReason::kResponseSignatureMalformed);
    EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Signature",
                                             absl::StrCat(kSignatureProbePrefix, kD3Signature)),
                                        *mixed_, now)),
              ErrorReason::kResponseSignatureProbe);
    // The genuine answer itself is outside the window: refused as such (replay window).
    EXPECT_EQ(ReasonOf(ValidateResponse(resp, *mixed_, now)), ErrorReason::kResponseTimestampSkew);
  }
}

TEST_F(ResponseValidatorTest, RejectsUnknownSerialAndNamesTheKnownOnes) {  // D3-n5
  auto r = ValidateResponse(SignedResponse("PUB_KEY_ID_0000000000000000000000000000000009", kD3Body, kD3Signature),
                            *mixed_, kSignedAt);
  EXPECT_EQ(ReasonOf(r), ErrorReason::kUnknownWechatpaySerial);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal, HasSubstr(kCertSerial)));
  EXPECT_EQ(GetUpstreamError(r.status())->serial, "PUB_KEY_ID_0000000000000000000000000000000009");
  EXPECT_EQ(GetUpstreamError(r.status())->request_id, kRequestId);
}

TEST_F(ResponseValidatorTest, EachMissingHeaderIsMissingSignature) {
  const auto resp = SignedResponse(kPubKeyId, kD3Body, kD3Signature);
  for (const char* h : {"Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"}) {
    auto r = ValidateResponse(Without(resp, h), *mixed_, kSignedAt);
    EXPECT_EQ(ReasonOf(r), ErrorReason::kResponseSignatureMissing) << h;
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal, HasSubstr(h)));
    EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, h, ""), *mixed_, kSignedAt)),
              ErrorReason::kResponseSignatureMissing)
        << h;
  }
  // Header names are case-insensitive.
  HttpResponse lower;
  lower.status = 200;
  lower.body = kD3Body;
  for (const auto& [n, v] : resp.headers.fields()) lower.headers.Add(absl::AsciiStrToLower(n), v);
  EXPECT_THAT(ValidateResponse(lower, *mixed_, kSignedAt), IsOk());
}

TEST_F(ResponseValidatorTest, EachDefectHasItsOwnReason) {
  const auto resp = SignedResponse(kPubKeyId, kD3Body, kD3Signature);
  EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Timestamp", "1722850421.0"), *mixed_, kSignedAt)),
            ErrorReason::kResponseTimestampInvalid);
  EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Timestamp", "-1722850421"), *mixed_, kSignedAt)),
            ErrorReason::kResponseTimestampInvalid);
  EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Timestamp", "99999999999999999999999"), *mixed_,
                                      kSignedAt)),
            ErrorReason::kResponseTimestampInvalid);
  EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Signature", "not base64!"), *mixed_, kSignedAt)),
            ErrorReason::kResponseSignatureMalformed);
  EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Signature", "c2hvcnQ="), *mixed_, kSignedAt)),
            ErrorReason::kResponseSignatureMalformed);
  // A nonce that differs in one character changes the message: the signature fails.
  EXPECT_EQ(ReasonOf(ValidateResponse(With(resp, "Wechatpay-Nonce", "d824f2e086d3c1df967785d13fcd22eF"), *mixed_,
                                      kSignedAt)),
            ErrorReason::kResponseSignatureInvalid);
  auto other_key = crypto::RsaPublicKey::FromPem(ReadTestData("vectors/go_pub.pem"));
  ASSERT_THAT(other_key, IsOk());
  const std::string raw = *crypto::Base64Decode(kD3Signature);
  EXPECT_THAT(other_key->VerifySha256(BuildResponseVerifyMessage(kTimestamp, kNonce, kD3Body), raw),
              ::palmgate::testing::IsOkAndHolds(false));
}

TEST_F(ResponseValidatorTest, ErrorStatusesAreClassifiedBeforeSignatures) {
  HttpResponse r;
  r.status = 500;
  r.headers.Add("Request-ID", "RID-500");
  r.body = R"({"code":"SYSTEM_ERROR","message":"系统繁忙，请稍后重试"})";
  auto v = ValidateResponse(r, *mixed_, kSignedAt);
  EXPECT_THAT(v, StatusIs(absl::StatusCode::kUnavailable));
  auto e = GetUpstreamError(v.status());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->reason, ErrorReason::kUpstreamUnavailable);
  EXPECT_EQ(e->http_status, 500);
  EXPECT_EQ(e->wechatpay_code, "SYSTEM_ERROR");
  EXPECT_EQ(e->wechatpay_message, "系统繁忙，请稍后重试");
  EXPECT_EQ(e->request_id, "RID-500");
  // A signed error is still an error, not a success.
  HttpResponse signed_error = SignedResponse(kPubKeyId, R"({"code":"NO_AUTH","message":"x"})", kD3Signature);
  signed_error.status = 403;
  EXPECT_THAT(ValidateResponse(signed_error, *mixed_, kSignedAt), StatusIs(absl::StatusCode::kPermissionDenied));
}

// Found by fuzzing (tests/fuzz/corpus/response_validator/crash-request-id-invalid-utf8):
// header bytes that are not UTF-8 went into the gRPC answer's
// wechatpay_request_id, a proto3 string no client can then decode.
TEST_F(ResponseValidatorTest, HeaderTextIsKeptAsValidUtf8) {
  const auto resp = With(SignedResponse(kPubKeyId, kD3Body, kD3Signature), "Request-ID",
                         "08F5B8C2B506102C18FDDFEEA30620BE821E28E\xc4" "C405-0");
  PALMGATE_ASSERT_OK_AND_ASSIGN(VerifiedResponse v, ValidateResponse(resp, *mixed_, kSignedAt));
  EXPECT_EQ(v.request_id, "");  // not of WeChat Pay's form (ReadRequestId): dropped
  EXPECT_TRUE(IsValidUtf8(v.request_id_dropped));
  EXPECT_FALSE(v.request_id_dropped.empty());

  auto unknown = ValidateResponse(With(resp, "Wechatpay-Serial", "PUB_KEY_ID_\xff"), *mixed_, kSignedAt);
  EXPECT_EQ(ReasonOf(unknown), ErrorReason::kUnknownWechatpaySerial);
  EXPECT_TRUE(IsValidUtf8(unknown.status().message()));
  EXPECT_EQ(GetUpstreamError(unknown.status())->serial, "PUB_KEY_ID_?");
}

}  // namespace
}  // namespace palmgate::wechatpay
