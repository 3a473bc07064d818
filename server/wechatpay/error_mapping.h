// File: server/wechatpay/error_mapping.h
//
// The one table that turns WeChat Pay HTTP statuses and error codes into
// absl::Status codes and ErrorReasons (anchors.md C.2). Codes are chosen by
// the caller's next step: fix the request → kInvalidArgument; retry →
// kUnavailable; our own misconfiguration → kInternal (never UNAUTHENTICATED,
// which would blame the caller).
#ifndef PALMGATE_SERVER_WECHATPAY_ERROR_MAPPING_H_
#define PALMGATE_SERVER_WECHATPAY_ERROR_MAPPING_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/http_message.h"

namespace palmgate::wechatpay {

struct MappedError {
  absl::StatusCode code;
  ErrorReason reason;
};

// Returns the mapping for a non-2xx HTTP status and WeChat Pay error code.
MappedError MapHttpError(int http_status, absl::string_view wechatpay_code);

// Returns OK for a 2xx response. Otherwise returns the mapped error, carrying
// the HTTP status, WeChat Pay's `code`, `message` and `detail` (parsed leniently:
// the body may be HTML from a proxy, or empty) and the Request-ID. Error
// responses are classified whether or not they are signed; they are never
// verified (WeChat Pay does not sign most of them).
absl::Status ClassifyHttpStatus(const HttpResponse& response);

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_ERROR_MAPPING_H_
