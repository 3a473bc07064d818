#include "server/wechatpay/error.h"

#include <array>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/utf8.h"

namespace palmgate::wechatpay {
namespace {

constexpr absl::string_view kPayloadUrl = "type.palmgate.dev/palmgate.wechatpay.UpstreamError";

struct ReasonEntry {
  ErrorReason reason;
  absl::string_view name;
  absl::string_view summary;  // what callers are told: short, stable, no configuration
};

constexpr ReasonEntry kReasons[] = {
    {ErrorReason::kUnspecified, "REASON_UNSPECIFIED", "internal error"},
    {ErrorReason::kInvalidOpenid, "INVALID_OPENID", "invalid openid"},
    {ErrorReason::kInvalidOrganizationId, "INVALID_ORGANIZATION_ID", "invalid organization_id"},
    {ErrorReason::kUpstreamParamError, "UPSTREAM_PARAM_ERROR", "wechatpay refused a request parameter"},
    {ErrorReason::kUpstreamInvalidRequest, "UPSTREAM_INVALID_REQUEST", "wechatpay refused the request"},
    {ErrorReason::kUpstreamSignatureRejected, "UPSTREAM_SIGNATURE_REJECTED",
     "wechatpay rejected the gateway's request signature"},
    {ErrorReason::kMerchantNotAuthorized, "MERCHANT_NOT_AUTHORIZED",
     "the merchant is not authorized for this wechatpay api"},
    {ErrorReason::kUpstreamNotFound, "UPSTREAM_NOT_FOUND", "wechatpay found no such resource"},
    {ErrorReason::kUpstreamRateLimited, "UPSTREAM_RATE_LIMITED", "wechatpay rate limit reached"},
    {ErrorReason::kUpstreamError, "UPSTREAM_ERROR", "wechatpay answered with an unexpected http status"},
    {ErrorReason::kUpstreamUnavailable, "UPSTREAM_UNAVAILABLE", "wechatpay is unavailable"},
    {ErrorReason::kUpstreamTlsError, "UPSTREAM_TLS_ERROR", "wechatpay's tls certificate did not verify"},
    {ErrorReason::kUpstreamTimeout, "UPSTREAM_TIMEOUT", "no wechatpay answer within the deadline"},
    {ErrorReason::kUpstreamAccepted, "UPSTREAM_ACCEPTED_NOT_PROCESSED",
     "wechatpay accepted but did not process the request"},
    {ErrorReason::kUpstreamConnectionsBusy, "UPSTREAM_CONNECTIONS_BUSY",
     "the gateway's upstream connections were all busy; try again shortly"},
    {ErrorReason::kResponseSignatureMissing, "RESPONSE_SIGNATURE_MISSING", "wechatpay answer is not signed"},
    {ErrorReason::kResponseTimestampInvalid, "RESPONSE_TIMESTAMP_INVALID", "wechatpay answer has an invalid timestamp"},
    {ErrorReason::kResponseTimestampSkew, "RESPONSE_TIMESTAMP_SKEW",
     "wechatpay answer's timestamp is outside the allowed clock skew"},
    {ErrorReason::kUnknownWechatpaySerial, "UNKNOWN_WECHATPAY_SERIAL",
     "wechatpay answer is signed with a key the gateway does not hold"},
    {ErrorReason::kResponseSignatureProbe, "RESPONSE_SIGNATURE_PROBE", "wechatpay answer carries a signature probe"},
    {ErrorReason::kResponseSignatureMalformed, "RESPONSE_SIGNATURE_MALFORMED",
     "wechatpay answer has a malformed signature"},
    {ErrorReason::kResponseSignatureInvalid, "RESPONSE_SIGNATURE_INVALID", "wechatpay answer has an invalid signature"},
    {ErrorReason::kUpstreamMalformedResponse, "UPSTREAM_MALFORMED_RESPONSE",
     "wechatpay answer is not a usable answer to this request"},
    {ErrorReason::kResponseTooLarge, "UPSTREAM_RESPONSE_TOO_LARGE", "wechatpay answer is too large"},
    {ErrorReason::kCancelled, "CANCELLED", "call cancelled"},
    {ErrorReason::kConfiguration, "GATEWAY_MISCONFIGURED", "gateway misconfigured"},
    {ErrorReason::kInternal, "INTERNAL", "internal error"},
};

const ReasonEntry& EntryOf(ErrorReason reason) {
  for (const auto& e : kReasons) {
    if (e.reason == reason) return e;
  }
  return kReasons[0];
}

// The payload of a status made by MakeError: kPayloadVersion, then reason,
// http_status and retry_after in milliseconds as decimal numbers, then the
// strings of StringFields, each field as "<decimal length>:<bytes>". It used to
// be JSON (nlohmann): parsing it again at every GetUpstreamError was about 30 %
// of the fuzz targets that make errors (perf, error_body), for a value that
// never leaves the process.
constexpr absl::string_view kPayloadVersion = "1;";

std::array<std::string*, 7> StringFields(UpstreamError& e) {
  return {&e.wechatpay_code, &e.wechatpay_message, &e.detail_json, &e.request_id,
          &e.request_id_dropped, &e.serial, &e.field};
}

// Appends `value` as one field; invalid UTF-8 becomes '?' (ToBoundedUtf8), as
// everything read from the payload ends up in proto3 strings.
void AppendField(std::string* out, absl::string_view value) {
  if (IsValidUtf8(value)) {
    absl::StrAppend(out, value.size(), ":", value);
  } else {
    const std::string valid = ToBoundedUtf8(value, value.size());
    absl::StrAppend(out, valid.size(), ":", valid);
  }
}

// Reads one field written by AppendField from the front of `in`.
bool ReadField(absl::string_view* in, absl::string_view* value) {
  const size_t colon = in->find(':');
  if (colon == absl::string_view::npos || colon == 0 || colon > 9) return false;
  size_t size = 0;
  for (char c : in->substr(0, colon)) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    size = size * 10 + static_cast<size_t>(c - '0');
  }
  in->remove_prefix(colon + 1);
  if (size > in->size()) return false;
  *value = in->substr(0, size);
  in->remove_prefix(size);
  return true;
}

}  // namespace

absl::string_view ReasonName(ErrorReason reason) { return EntryOf(reason).name; }

absl::string_view ReasonSummary(ErrorReason reason) { return EntryOf(reason).summary; }

bool UpstreamError::operator==(const UpstreamError& o) const {
  return reason == o.reason && http_status == o.http_status && wechatpay_code == o.wechatpay_code &&
         wechatpay_message == o.wechatpay_message && detail_json == o.detail_json &&
         request_id == o.request_id && request_id_dropped == o.request_id_dropped && serial == o.serial && field == o.field &&
         retry_after == o.retry_after;
}

absl::Status MakeError(absl::StatusCode code, absl::string_view message, UpstreamError error) {
  absl::Status status(code, message);
  std::string payload(kPayloadVersion);
  AppendField(&payload, absl::StrCat(static_cast<int>(error.reason)));
  AppendField(&payload, absl::StrCat(error.http_status));
  AppendField(&payload, absl::StrCat(absl::ToInt64Milliseconds(error.retry_after)));
  for (std::string* field : StringFields(error)) AppendField(&payload, *field);
  status.SetPayload(kPayloadUrl, absl::Cord(std::move(payload)));
  return status;
}

absl::Status MakeError(absl::StatusCode code, ErrorReason reason, absl::string_view message) {
  UpstreamError e;
  e.reason = reason;
  return MakeError(code, message, std::move(e));
}

std::optional<UpstreamError> GetUpstreamError(const absl::Status& status) {
  auto cord = status.GetPayload(kPayloadUrl);  // absl::optional<absl::Cord>
  if (!cord.has_value()) return std::nullopt;
  const std::string payload(*cord);
  absl::string_view in = payload;
  if (!absl::ConsumePrefix(&in, kPayloadVersion)) return std::nullopt;
  absl::string_view reason, http_status, retry_after_ms;
  int reason_number = 0;
  int64_t millis = 0;
  UpstreamError e;
  if (!ReadField(&in, &reason) || !ReadField(&in, &http_status) || !ReadField(&in, &retry_after_ms) ||
      !absl::SimpleAtoi(reason, &reason_number) || !absl::SimpleAtoi(http_status, &e.http_status) ||
      !absl::SimpleAtoi(retry_after_ms, &millis)) {
    return std::nullopt;
  }
  e.reason = static_cast<ErrorReason>(reason_number);
  e.retry_after = absl::Milliseconds(millis);
  for (std::string* field : StringFields(e)) {
    absl::string_view value;
    if (!ReadField(&in, &value)) return std::nullopt;
    field->assign(value.data(), value.size());
  }
  if (!in.empty()) return std::nullopt;
  return e;
}

ErrorReason GetReason(const absl::Status& status) {
  std::optional<UpstreamError> e = GetUpstreamError(status);
  return e.has_value() ? e->reason : ErrorReason::kUnspecified;
}

std::string PrintableHeaderValue(absl::string_view value, size_t max_bytes) {
  std::string out(value.substr(0, max_bytes));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';  // char may be signed: bytes >= 0x80 are negative here
  }
  return out;
}

}  // namespace palmgate::wechatpay
