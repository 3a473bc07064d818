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
#include <string>

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

// Returns true for the WeChat Pay error codes the gateway knows by name: the
// public APIv3 codes (wechatpay-v3.md section 5.2: PARAM_ERROR,
// INVALID_REQUEST, SIGN_ERROR, NO_AUTH, RATELIMIT_EXCEEDED, SYSTEM_ERROR, ...)
// and the general ones of WeChat Pay's error code page. A fixed list: error
// bodies are not signed, so whoever answers can send any code, and only these
// become metric label values (anything else is counted as OTHER).
bool IsKnownWechatpayCode(absl::string_view code);

// Returns true when `code` has the form of a WeChat Pay code, [A-Z][A-Z0-9_]{0,63}
// (UPPER_SNAKE, bounded). Such a code, known or not (WeChat Pay adds codes), may
// be passed on to callers in ErrorInfo; anything else is dropped there.
bool IsWellFormedWechatpayCode(absl::string_view code);

// Returns unsigned outside text (an error body's `message`, its `detail`) fit
// to be shown to a person: valid UTF-8 of at most `max_bytes` bytes (bytes that
// start no well-formed sequence become '?'; the cut never splits a character),
// with line breaks and tabs (C0 TAB to CR, U+0085, U+2028, U+2029) as a space,
// and every other C0/C1 control, DEL and invisible format character (Unicode
// category Cf: bidi embeddings, overrides, isolates and marks U+202A-202E,
// U+2066-2069, U+200E/200F, U+061C; zero-width characters; the BOM; tags) as
// U+FFFD. Such text can no longer reorder, hide or forge lines of what a
// reader sees (a terminal escape, a right-to-left override, a fake log line);
// it is still unsigned: show it, never act on it.
std::string ToDisplayableText(absl::string_view text, size_t max_bytes);

// RequestId: WeChat Pay's `Request-ID` header as the gateway uses it.
struct RequestId {
  // The header value when it is 1-64 characters of [0-9A-Za-z_-] (WeChat
  // Pay's look like "08F5B8C2B506102C18FDDFEEA30620BE821E28EDC405-0"), else "".
  std::string value;
  // Why a present header was not kept, for the log only: its length and its
  // first bytes, C-escaped and quoted. "" when kept or absent.
  std::string dropped;
};

// Reads the `Request-ID` header of `response`. The one place it is read: the
// header is not covered by the response signature, so every consumer (answers,
// errors, logs) gets only this filtered value.
RequestId ReadRequestId(const HttpResponse& response);

// Returns OK for a 2xx response. Otherwise returns the mapped error, carrying
// the HTTP status, WeChat Pay's `code`, `message` and `detail` (parsed leniently:
// the body may be HTML from a proxy, or empty; each as ToDisplayableText of at
// most 512 bytes) and
// the Request-ID (ReadRequestId). Error
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
