// File: server/service/request_mapping.h
//
// Between the protobuf contract (palmgate.v1) and the WeChat Pay library:
// request validation before anything is sent upstream, and the mapping of a
// verified WeChat Pay answer to the Authorization message.
#ifndef PALMGATE_SERVER_SERVICE_REQUEST_MAPPING_H_
#define PALMGATE_SERVER_SERVICE_REQUEST_MAPPING_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "palmgate/v1/palm_authorization.pb.h"
#include "server/wechatpay/palm_service_client.h"

namespace palmgate::service {

// Returns every field problem (empty when valid): each status is
// kInvalidArgument with an UpstreamError naming the field
// (INVALID_OPENID / INVALID_ORGANIZATION_ID). The fields are raw bytes: the
// gateway parses requests without protobuf's UTF-8 check and checks here.
std::vector<absl::Status> ValidateRequest(absl::string_view openid, absl::string_view organization_id);

// Returns the enum for WeChat Pay's state string; UNSPECIFIED for an unknown
// or empty one (never an error: the raw string is kept alongside).
palmgate::v1::AuthorizationState StateFromString(absl::string_view state);

// Fills `out` from a verified answer.
void ToAuthorization(const wechatpay::AuthorizationResult& result, palmgate::v1::Authorization* out);

}  // namespace palmgate::service

#endif  // PALMGATE_SERVER_SERVICE_REQUEST_MAPPING_H_
