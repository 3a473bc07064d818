#include "server/wechatpay/response_validator.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/common/utf8.h"
#include "server/crypto/base64.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"

namespace palmgate::wechatpay {
namespace {

constexpr absl::string_view kTimestamp = "Wechatpay-Timestamp";
constexpr absl::string_view kNonce = "Wechatpay-Nonce";
constexpr absl::string_view kSignature = "Wechatpay-Signature";
constexpr absl::string_view kSerial = "Wechatpay-Serial";
constexpr size_t kMaxSerialInError = 80;
constexpr size_t kRsa2048SignatureBytes = 256;

bool ParseTimestamp(absl::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 12) return false;  // 12 digits: year 33658; no overflow
  int64_t v = 0;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string BuildResponseVerifyMessage(absl::string_view timestamp, absl::string_view nonce,
                                       absl::string_view body) {
  return absl::StrCat(timestamp, "\n", nonce, "\n", body, "\n");
}

absl::StatusOr<VerifiedResponse> ValidateResponse(const HttpResponse& response, const KeyRing& ring,
                                                  absl::Time now, const ValidatorOptions& options) {
  PALMGATE_RETURN_IF_ERROR(ClassifyHttpStatus(response));

  UpstreamError e;
  e.http_status = response.status;
  RequestId request_id = ReadRequestId(response);
  e.request_id = std::move(request_id.value);
  e.request_id_dropped = std::move(request_id.dropped);
  auto fail = [&e](ErrorReason reason, std::string message) {
    e.reason = reason;
    return MakeError(absl::StatusCode::kInternal, absl::StrCat("verify response: ", message), e);
  };

  std::optional<absl::string_view> timestamp = response.headers.Get(kTimestamp);
  std::optional<absl::string_view> nonce = response.headers.Get(kNonce);
  std::optional<absl::string_view> signature = response.headers.Get(kSignature);
  std::optional<absl::string_view> serial = response.headers.Get(kSerial);
  std::vector<absl::string_view> missing;
  for (auto [name, value] : {std::pair{kTimestamp, timestamp}, std::pair{kNonce, nonce},
                             std::pair{kSignature, signature}, std::pair{kSerial, serial}}) {
    if (!value.has_value() || value->empty()) missing.push_back(name);
  }
  if (!missing.empty()) {
    return fail(ErrorReason::kResponseSignatureMissing,
                absl::StrCat("missing ", absl::StrJoin(missing, ", "),
                             " on a 2xx response (an unsigned success is treated as forged)"));
  }

  e.serial = PrintableHeaderValue(*serial, kMaxSerialInError);
  int64_t ts = 0;
  if (!ParseTimestamp(*timestamp, &ts)) {
    return fail(ErrorReason::kResponseTimestampInvalid, "Wechatpay-Timestamp is not a decimal unix time");
  }
  const VerificationKey* key = ring.Find(*serial);
  if (key == nullptr) {
    // The known serials are configuration: this message goes to the log only
    // (callers get ReasonSummary), where it tells the operator what to fix.
    return fail(ErrorReason::kUnknownWechatpaySerial,
                absl::StrCat("unknown serial \"", e.serial, "\" (known: ", absl::StrJoin(ring.Serials(), ", "), ")"));
  }
  if (absl::StartsWith(*signature, kSignatureProbePrefix)) {
    return fail(ErrorReason::kResponseSignatureProbe, "signature is a WECHATPAY/SIGNTEST/ probe; rejected");
  }
  absl::StatusOr<std::string> raw = crypto::Base64Decode(*signature);
  if (!raw.ok()) return fail(ErrorReason::kResponseSignatureMalformed, "signature is not standard Base64");
  if (raw->size() != kRsa2048SignatureBytes) {
    return fail(ErrorReason::kResponseSignatureMalformed,
                absl::StrCat("signature is ", raw->size(), " bytes; RSA-2048 signatures are 256"));
  }
  absl::StatusOr<bool> valid =
      key->key.VerifySha256(BuildResponseVerifyMessage(*timestamp, *nonce, response.body), *raw);
  if (!valid.ok()) return fail(ErrorReason::kInternal, std::string(valid.status().message()));
  if (!*valid) {
    return fail(ErrorReason::kResponseSignatureInvalid,
                absl::StrCat("signature does not verify with key \"", key->serial, "\""));
  }
  // Only now is the timestamp WeChat Pay's own: judged after the signature, so
  // that no unverified header can make the gateway report a skew.
  const absl::Duration skew = absl::FromUnixSeconds(ts) - now;
  if (absl::AbsDuration(skew) >= options.max_clock_skew) {
    return fail(ErrorReason::kResponseTimestampSkew,
                absl::StrCat("Wechatpay-Timestamp is ", absl::FormatDuration(skew),
                             " from the local clock (allowed: under ", absl::FormatDuration(options.max_clock_skew),
                             "); is the local clock wrong?"));
  }
  return VerifiedResponse{key->serial, e.request_id, e.request_id_dropped, skew};
}

}  // namespace palmgate::wechatpay
