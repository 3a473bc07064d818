// File: server/wechatpay/request_target.h
//
// Builds the request-target (path + query) of the palmservice call and checks
// its inputs. The same bytes are put on the wire and signed
// (wechatpay-v3.md section 2.2), so whatever an openid contains — `../`, `/`,
// `?`, `#`, `%`, spaces, non-ASCII — it can never change the path called.
//
// Encoding: RFC 3986 percent-encoding of UTF-8 bytes; only the unreserved
// characters A-Z a-z 0-9 - . _ ~ are kept; hex digits are upper case; letter
// case of the input is never changed. Real openids ([A-Za-z0-9_-]) pass through
// unchanged, so the canonical URL equals the documented one.
#ifndef PALMGATE_SERVER_WECHATPAY_REQUEST_TARGET_H_
#define PALMGATE_SERVER_WECHATPAY_REQUEST_TARGET_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::wechatpay {

inline constexpr size_t kMaxOpenidBytes = 128;         // doc 4014482017
inline constexpr size_t kMaxOrganizationIdBytes = 64;  // doc 4014482017

// Returns `value` percent-encoded as a single path segment or query value.
std::string PercentEncode(absl::string_view value);

// Checks one request field: non-empty, at most `max_bytes` bytes, valid UTF-8,
// no control characters (U+0000–U+001F, U+007F). kInvalidArgument with an
// UpstreamError payload whose reason is kInvalidOpenid or kInvalidOrganizationId
// and whose `field` names the field. An openid of "." or ".." is refused too:
// a dot-segment could be resolved away by an HTTP stack on the way.
absl::Status ValidateOpenid(absl::string_view openid);
absl::Status ValidateOrganizationId(absl::string_view organization_id);

// Returns `/v3/palmservice/authorization/openid/{openid}?organization_id={organization_id}`
// after validating both fields (errors as above; nothing is built for bad input).
absl::StatusOr<std::string> AuthorizationQueryTarget(absl::string_view openid,
                                                     absl::string_view organization_id);

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_REQUEST_TARGET_H_
