// File: client/palmctl_output.h
//
// How palmctl prints answers and errors. Kept apart from main.cc so that the
// exact text (which scripts and tests read) is unit-tested without a server.
//
// Example:
//   std::cout << FormatAuthorization(authorization);
//   std::cerr << FormatError(status);  // "error: NOT_FOUND: ...\n  reason: ..."
#ifndef PALMGATE_CLIENT_PALMCTL_OUTPUT_H_
#define PALMGATE_CLIENT_PALMCTL_OUTPUT_H_

#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "palmgate/v1/palm_authorization.pb.h"

namespace palmgate::client {

// Returns the upper-snake name of a gRPC status code ("INVALID_ARGUMENT"),
// or "CODE_<n>" for a number outside google.rpc.Code. Takes the number: a
// code from the wire may be one grpc::StatusCode cannot hold.
std::string StatusCodeName(int code);

// Returns `authorization` as "name: value" lines: state, authorize_time (RFC
// 3339, UTC), openid, organization_id, wechatpay_state, request_id. An unset
// authorize_time prints as "-".
std::string FormatAuthorization(const palmgate::v1::Authorization& authorization);

// Returns `authorization` as one line of protobuf JSON (lowerCamel names, enum
// names, every field present), or kInternal if it cannot be converted.
absl::StatusOr<std::string> FormatAuthorizationJson(const palmgate::v1::Authorization& authorization);

// Returns the lines describing a failed call: "error: CODE_NAME: message",
// then, decoded from the google.rpc.Status in `status.error_details()`, each
// ErrorInfo (reason, domain, sorted metadata), BadRequest field violations,
// RetryInfo delay, and the type URL of any other detail. Undecodable details
// are reported, never fatal.
std::string FormatError(const grpc::Status& status);

}  // namespace palmgate::client

#endif  // PALMGATE_CLIENT_PALMCTL_OUTPUT_H_
