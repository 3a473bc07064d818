// Fuzz target: response verification (ValidateResponse), then the parsing of a
// verified success body (ParseAuthorizationBody) and the gRPC answer built from
// it (ToAuthorization), as PalmServiceClient and the service run them.
//
// Input: an HTTP response in the text form of fuzz_util.h. A Wechatpay-Signature
// value of "@sign" is replaced by the real signature of the response (the key
// for Wechatpay-Serial, K3 when the serial is unknown), so that the fuzzer
// reaches past the signature check into the body.
//
// Invariants:
//   - success only for a 2xx (not 202) response with all four headers, a
//     timestamp inside the window, and a signature that verifies with a key of
//     the serial it names (checked here independently of the key ring);
//   - a response this target signed, with a known serial and a timestamp inside
//     the window, is accepted (no false rejects);
//   - every failure carries an UpstreamError with a reason; failures of 2xx
//     responses are kInternal; the gRPC status made of it parses back (strict
//     proto3 UTF-8), so that a client can read why;
//   - a verified body that parses names the openid asked for (always) and the
//     organization asked for (or none), and carries a state,
//     and the answer built from it (with the Request-ID) parses back unchanged.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "google/rpc/status.pb.h"
#include "palmgate/v1/palm_authorization.pb.h"
#include "absl/strings/str_cat.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/common/utf8.h"
#include "server/service/request_mapping.h"
#include "server/service/status_conversion.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/palm_service_client.h"
#include "server/wechatpay/response_validator.h"
#include "tests/fuzz/fuzz_util.h"

namespace palmgate::fuzz {
namespace {

using wechatpay::HttpResponse;

struct TestKey {
  std::string serial;
  crypto::RsaPrivateKey private_key;
};

struct Keys {
  std::vector<TestKey> keys;  // what this target signs with and verifies independently
  std::shared_ptr<const wechatpay::KeyRing> ring;
};

const Keys& GetKeys() {
  static const Keys* keys = [] {
    auto* k = new Keys();
    crypto::RsaPrivateKey k3 = *crypto::RsaPrivateKey::FromPem(TestData("vectors/java_wechat_pay_private_key.pem"));
    crypto::RsaPrivateKey k1 = *crypto::RsaPrivateKey::FromPem(TestData("vectors/go_key.pem"));
    k->keys = {{std::string(kK3CertSerial), k3}, {std::string(kPubKeyId), k3}, {std::string(kK1CertSerial), k1}};
    wechatpay::KeyRing::Builder b;
    PALMGATE_FUZZ_CHECK(b.AddCertificatePem(TestData("vectors/java_wechat_pay_certificate.pem")).ok());
    PALMGATE_FUZZ_CHECK(b.AddPublicKeyPem(kPubKeyId, TestData("vectors/java_wechat_pay_public_key.pem")).ok());
    PALMGATE_FUZZ_CHECK(b.AddCertificatePem(TestData("vectors/go_cert.pem")).ok());
    auto ring = std::move(b).Build(kNow);
    PALMGATE_FUZZ_CHECK(ring.ok() && (*ring)->size() == 3);
    k->ring = *std::move(ring);
    return k;
  }();
  return *keys;
}

bool IsDecimal(absl::string_view s) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Replaces every "@sign" signature with a real one. Returns true when the first
// Wechatpay-Signature (the one the validator reads) was replaced.
bool SignPlaceholders(HttpResponse* response, const Keys& keys) {
  const std::string message = wechatpay::BuildResponseVerifyMessage(
      response->headers.GetOrEmpty("Wechatpay-Timestamp"), response->headers.GetOrEmpty("Wechatpay-Nonce"),
      response->body);
  const absl::string_view serial = response->headers.GetOrEmpty("Wechatpay-Serial");
  const TestKey* signer = &keys.keys[0];
  for (const TestKey& k : keys.keys) {
    if (k.serial == serial) signer = &k;
  }
  wechatpay::HttpHeaders headers;
  bool first = true;
  bool first_signed = false;
  for (const auto& [name, value] : response->headers.fields()) {
    if (absl::EqualsIgnoreCase(name, "Wechatpay-Signature")) {
      if (value == "@sign") {
        absl::StatusOr<std::string> sig = signer->private_key.SignSha256(message);
        PALMGATE_FUZZ_CHECK(sig.ok());
        headers.Add(name, crypto::Base64Encode(*sig));
        first_signed |= first;
      } else {
        headers.Add(name, value);
      }
      first = false;
    } else {
      headers.Add(name, value);
    }
  }
  response->headers = std::move(headers);
  return first_signed;
}

}  // namespace
}  // namespace palmgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  const Keys& keys = GetKeys();
  std::optional<wechatpay::HttpResponse> parsed =
      ParseHttpText(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!parsed.has_value()) return -1;
  wechatpay::HttpResponse& response = *parsed;
  const bool signed_here = SignPlaceholders(&response, keys);

  absl::StatusOr<wechatpay::VerifiedResponse> verified = wechatpay::ValidateResponse(response, *keys.ring, kNow);

  const bool success_status = response.status >= 200 && response.status <= 299 && response.status != 202;
  const absl::string_view timestamp = response.headers.GetOrEmpty("Wechatpay-Timestamp");
  const absl::string_view nonce = response.headers.GetOrEmpty("Wechatpay-Nonce");
  const absl::string_view serial = response.headers.GetOrEmpty("Wechatpay-Serial");
  const absl::string_view signature = response.headers.GetOrEmpty("Wechatpay-Signature");
  int64_t ts = 0;
  const bool in_window = IsDecimal(timestamp) && absl::SimpleAtoi(timestamp, &ts) &&
                         absl::AbsDuration(absl::FromUnixSeconds(ts) - kNow) < absl::Seconds(300);

  if (signed_here && success_status && in_window && !nonce.empty()) {
    bool known = false;
    for (const TestKey& k : keys.keys) known |= (k.serial == serial);
    if (known) PALMGATE_FUZZ_CHECK(verified.ok());
  }

  if (!verified.ok()) {
    std::optional<wechatpay::UpstreamError> e = wechatpay::GetUpstreamError(verified.status());
    PALMGATE_FUZZ_CHECK(e.has_value() && e->reason != wechatpay::ErrorReason::kUnspecified);
    PALMGATE_FUZZ_CHECK(e->http_status == response.status);
    if (success_status) PALMGATE_FUZZ_CHECK(verified.status().code() == absl::StatusCode::kInternal);
    const grpc::Status converted = service::ToGrpcStatus(verified.status());
    google::rpc::Status rich;
    PALMGATE_FUZZ_CHECK(rich.ParseFromString(converted.error_details()) && IsValidUtf8(rich.message()));
    return 0;
  }

  // Accepted: check it independently of the key ring.
  PALMGATE_FUZZ_CHECK(success_status);
  PALMGATE_FUZZ_CHECK(!nonce.empty() && !serial.empty() && !signature.empty());
  PALMGATE_FUZZ_CHECK(in_window);
  absl::StatusOr<std::string> raw = crypto::Base64Decode(signature);
  PALMGATE_FUZZ_CHECK(raw.ok());
  const std::string message = absl::StrCat(timestamp, "\n", nonce, "\n", response.body, "\n");
  bool verifies_as_named = false;
  for (const TestKey& k : keys.keys) {
    if (k.serial != verified->serial) continue;
    absl::StatusOr<bool> ok = k.private_key.PublicKey().VerifySha256(message, *raw);
    verifies_as_named |= ok.ok() && *ok;
  }
  PALMGATE_FUZZ_CHECK(verifies_as_named);

  absl::StatusOr<wechatpay::AuthorizationResult> result =
      wechatpay::ParseAuthorizationBody(response.body, kOpenid, kOrganizationId);
  if (result.ok()) {
    PALMGATE_FUZZ_CHECK(result->openid == kOpenid && !result->state.empty());
    PALMGATE_FUZZ_CHECK(result->organization_id.empty() || result->organization_id == kOrganizationId);
    PALMGATE_FUZZ_CHECK(!result->authorize_time.has_value() || !result->authorize_time_raw.empty());
    result->request_id = verified->request_id;
    palmgate::v1::Authorization answer;
    service::ToAuthorization(*result, &answer);
    std::string wire;
    PALMGATE_FUZZ_CHECK(answer.SerializeToString(&wire));
    palmgate::v1::Authorization back;
    PALMGATE_FUZZ_CHECK(back.ParseFromString(wire) && back.SerializeAsString() == wire);
  } else {
    PALMGATE_FUZZ_CHECK(wechatpay::GetReason(result.status()) == wechatpay::ErrorReason::kUpstreamMalformedResponse);
  }
  return 0;
}
