// File: server/wechatpay/error_mapping.h
//
// The one table that turns WeChat Pay HTTP statuses and error codes into
// absl::Status codes and ErrorReasons (anchors.md C.2). Codes are chosen by
// the caller's next step: fix the request → kInvalidArgument; retry →
// kUnavailable; our own misconfiguration → kInternal (never UNAUTHENTICATED,
// which would blame the caller).
#ifndef PALMGATE_SERVER_WECHATPAY_ERROR_MAPPING_H_
#define PALMGATE_SERVER_WECHATPAY_ERROR_MAPPING_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/http_message.h"

namespace palmgate::wechatpay {

struct MappedError {
  absl::StatusCode code;
  ErrorReason reason;
};

// Returns the mapping for a non-2xx HTTP status and WeChat Pay error code.
MappedError MapHttpError(int http_status, absl::string_view wechatpay_code);

// The bounds of the retry hint (UpstreamError::retry_after) of a 429, 202 or
// 5xx answer. Retry-After is unsigned text that anything on the path can
// write: a hint below the floor (0, a date in the past) becomes the floor, one
// above the cap (a year) becomes the cap; without a usable Retry-After the
// hint is the floor.
inline constexpr absl::Duration kMinRetryAfter = absl::Seconds(1);
inline constexpr absl::Duration kMaxRetryAfter = absl::Seconds(60);

// Returns the delay a Retry-After value asks for (RFC 9110 section 10.2.3):
// delay-seconds, or an HTTP-date (IMF-fixdate, RFC 850 or asctime form)
// measured from `reference`. Not bounded. nullopt when `value` is neither.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time reference);

// Returns OK for a 2xx response. Otherwise returns the mapped error, carrying
// the HTTP status, WeChat Pay's `code`, `message` and `detail` (parsed leniently:
// the body may be HTML from a proxy, or empty) and the Request-ID. Error
// responses are classified whether or not they are signed; they are never
// verified (WeChat Pay does not sign most of them). 429, 202 and 5xx answers
// carry a retry hint from Retry-After, bounded to [kMinRetryAfter,
// kMaxRetryAfter]; an HTTP-date counts from the response's Date header when it
// has one (the sender's own clock), else from `now`.
absl::Status ClassifyHttpStatus(const HttpResponse& response, absl::Time now);

// As above, with the local clock's time.
absl::Status ClassifyHttpStatus(const HttpResponse& response);

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_ERROR_MAPPING_H_
