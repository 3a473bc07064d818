// File: sandbox/authorization_parser.h
//
// The sandbox's own, strict parser for the APIv3 request Authorization header
// and its own builder of the request string-to-sign (wechatpay-v3.md 2.1, 2.4).
// It deliberately shares no code with server/wechatpay/: the sandbox is the
// independent check of the gateway's signer.
//
// Accepted grammar (anything else is rejected with a precise reason):
//   WECHATPAY2-SHA256-RSA2048 SP pair *("," pair)
//   pair = key "=" DQUOTE value DQUOTE      ; value: no '"', not empty
//   key  = mchid | nonce_str | timestamp | serial_no | signature
// Each key exactly once, in any order; no whitespace around ',' or '='.
//
// Example:
//   absl::StatusOr<AuthorizationFields> f = ParseAuthorization(header);
//   std::string msg = BuildRequestSignMessage("GET", target, f->timestamp, f->nonce_str, "");
//
// Thread safety: stateless free functions.
#ifndef PALMGATE_SANDBOX_AUTHORIZATION_PARSER_H_
#define PALMGATE_SANDBOX_AUTHORIZATION_PARSER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::sandbox {

inline constexpr absl::string_view kAuthorizationScheme = "WECHATPAY2-SHA256-RSA2048";

// The five fields of an APIv3 Authorization header, verbatim (not validated
// beyond being present and non-empty).
struct AuthorizationFields {
  std::string mchid;
  std::string nonce_str;
  std::string timestamp;
  std::string serial_no;
  std::string signature;
};

// Parses `header` (the Authorization value). kInvalidArgument whose message is
// the precise defect, e.g. `duplicate parameter "nonce_str"`.
absl::StatusOr<AuthorizationFields> ParseAuthorization(absl::string_view header);

// Returns "METHOD\nTARGET\nTIMESTAMP\nNONCE\nBODY\n", where TARGET is the raw
// request-target exactly as received (path plus '?' and query, if any).
std::string BuildRequestSignMessage(absl::string_view method, absl::string_view target,
                                    absl::string_view timestamp, absl::string_view nonce,
                                    absl::string_view body);

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_AUTHORIZATION_PARSER_H_
