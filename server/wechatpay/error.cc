#include "server/wechatpay/error.h"

#include <nlohmann/json.hpp>

#include "absl/strings/cord.h"

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
  nlohmann::json j = {
      {"reason", static_cast<int>(error.reason)},
      {"http_status", error.http_status},
      {"wechatpay_code", error.wechatpay_code},
      {"wechatpay_message", error.wechatpay_message},
      {"detail_json", error.detail_json},
      {"request_id", error.request_id},
      {"request_id_dropped", error.request_id_dropped},
      {"serial", error.serial},
      {"field", error.field},
      {"retry_after_ms", absl::ToInt64Milliseconds(error.retry_after)},
  };
  // Invalid UTF-8 from upstream must not make the serialiser throw.
  status.SetPayload(kPayloadUrl,
                    absl::Cord(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  return status;
}

absl::Status MakeError(absl::StatusCode code, ErrorReason reason, absl::string_view message) {
  UpstreamError e;
  e.reason = reason;
  return MakeError(code, message, std::move(e));
}

std::optional<UpstreamError> GetUpstreamError(const absl::Status& status) {
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(std::string(*payload), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  UpstreamError e;
  e.reason = static_cast<ErrorReason>(j.value("reason", 0));
  e.http_status = j.value("http_status", 0);
  e.wechatpay_code = j.value("wechatpay_code", "");
  e.wechatpay_message = j.value("wechatpay_message", "");
  e.detail_json = j.value("detail_json", "");
  e.request_id = j.value("request_id", "");
  e.request_id_dropped = j.value("request_id_dropped", "");
  e.serial = j.value("serial", "");
  e.field = j.value("field", "");
  e.retry_after = absl::Milliseconds(j.value("retry_after_ms", int64_t{0}));
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
