// File: server/wechatpay/error.h
//
// The error model of the WeChat Pay library. Every failure is an absl::Status
// whose code is chosen by what the caller should do next (see error_mapping.h)
// and which carries one UpstreamError payload: our own reason for the failure,
// plus what WeChat Pay said when it said something (HTTP status, code, message,
// detail, Request-ID). The gRPC layer turns that payload into a
// google.rpc.ErrorInfo; nothing else needs to parse messages.
//
// The status message is for operators: it may name serials, hosts, addresses
// and libcurl's text, and it goes to the RPC's log line. Callers never see it
// (except for the local field checks, which only describe the caller's own
// input): the gRPC layer answers them with ReasonSummary().
//
// Example:
//   absl::Status s = MakeError(absl::StatusCode::kInternal, ErrorReason::kResponseSignatureInvalid,
//                              "verify response: signature mismatch", info);
//   std::optional<UpstreamError> e = GetUpstreamError(s);  // e->reason == kResponseSignatureInvalid
#ifndef PALMGATE_SERVER_WECHATPAY_ERROR_H_
#define PALMGATE_SERVER_WECHATPAY_ERROR_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace palmgate::wechatpay {

// ErrorReason
//
// Why a call failed, one value per distinct cause. The names (ReasonName) are
// stable API: they become google.rpc.ErrorInfo.reason.
enum class ErrorReason {
  kUnspecified = 0,
  // Local validation, before anything is sent.
  kInvalidOpenid,
  kInvalidOrganizationId,
  // WeChat Pay answered with an error status.
  kUpstreamParamError,         // 400 PARAM_ERROR
  kUpstreamInvalidRequest,     // 400 INVALID_REQUEST (and other 400 codes)
  kUpstreamSignatureRejected,  // 401 SIGN_ERROR: WeChat Pay rejected OUR signature
  kMerchantNotAuthorized,      // 403
  kUpstreamNotFound,           // 404
  kUpstreamRateLimited,        // 429
  kUpstreamError,              // any other 4xx
  kUpstreamUnavailable,        // 5xx, connection or DNS failure, TLS handshake cut
  kUpstreamTlsError,           // the upstream's certificate did not verify (not retried)
  kUpstreamTimeout,            // deadline budget exhausted
  kUpstreamAccepted,           // 202: accepted but not processed; try again
  kUpstreamConnectionsBusy,    // the gateway's own upstream connections stayed busy until the call's time
                               // ran out: local congestion, never counted against the site
  // A 2xx answer that cannot be trusted or used.
  kResponseSignatureMissing,   // a Wechatpay-* header is absent
  kResponseTimestampInvalid,   // Wechatpay-Timestamp is not a decimal number
  kResponseTimestampSkew,      // outside the allowed window
  kUnknownWechatpaySerial,     // no key with that serial
  kResponseSignatureProbe,     // WECHATPAY/SIGNTEST/ probe
  kResponseSignatureMalformed, // not Base64, or the wrong length
  kResponseSignatureInvalid,   // does not verify
  kUpstreamMalformedResponse,  // verified, but the body is not the expected JSON
  kResponseTooLarge,           // body beyond the read bound
  // Local trouble.
  kCancelled,
  kConfiguration,              // keys or settings unusable
  kInternal,
};

// Returns the stable UPPER_SNAKE name of `reason` (e.g. "RESPONSE_SIGNATURE_PROBE").
absl::string_view ReasonName(ErrorReason reason);

// Returns a short, stable, lower case sentence for `reason` (e.g. "wechatpay
// answer has an invalid signature"): what a caller is told. It names no
// serial, host, address, file or configuration value.
absl::string_view ReasonSummary(ErrorReason reason);

// UpstreamError
//
// The structured part of a failure. Strings are empty and http_status is 0 when
// unknown. `wechatpay_message` is WeChat Pay's human text (often Chinese);
// `detail_json` is its free-form `detail` object, re-serialised compactly.
struct UpstreamError {
  ErrorReason reason = ErrorReason::kUnspecified;
  int http_status = 0;
  std::string wechatpay_code;
  std::string wechatpay_message;
  std::string detail_json;
  std::string request_id;   // WeChat Pay's Request-ID header, when well-formed (ReadRequestId)
  std::string request_id_dropped;  // for the log only: why a Request-ID header was not kept
  std::string serial;       // the Wechatpay-Serial involved, when relevant
  std::string field;        // the offending request field, for local validation
  absl::Duration retry_after = absl::ZeroDuration();  // a hint for 429/5xx, when known

  bool operator==(const UpstreamError& o) const;
};

// Returns a non-OK status with `code`, `message` and `error` attached as payload.
// `message` is lower case English for the log (see the file comment) and must
// not contain keys, Authorization headers, bodies or personal data.
absl::Status MakeError(absl::StatusCode code, absl::string_view message, UpstreamError error);

// Shorthand for a status with only a reason.
absl::Status MakeError(absl::StatusCode code, ErrorReason reason, absl::string_view message);

// Returns the payload of a status made by MakeError, or nullopt.
std::optional<UpstreamError> GetUpstreamError(const absl::Status& status);

// Returns the reason of `status`: kUnspecified for OK or a status without payload.
ErrorReason GetReason(const absl::Status& status);

// Returns at most `max_bytes` of an upstream header value, every byte outside
// printable ASCII (0x20-0x7E) replaced by '?'. Header values are neither signed
// nor UTF-8 by any rule, while everything the gateway passes on (status
// messages, google.rpc details, answers: proto3 strings) must be valid UTF-8.
std::string PrintableHeaderValue(absl::string_view value, size_t max_bytes);

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_ERROR_H_
