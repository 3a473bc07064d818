// Fuzz target: the request validator: the request's wire image
// (palmgate.internal.wire.GetAuthorizationRequest, bytes fields), ValidateRequest,
// and the INVALID_ARGUMENT status built from its problems (ToGrpcStatus).
//
// Input: the serialized request message, as gRPC hands it to the service.
//
// Invariants:
//   - what the wire image cannot parse, palmgate.v1.GetAuthorizationRequest
//     cannot either;
//   - the fields of a request without problems are valid for
//     palmgate.v1.GetAuthorizationRequest (UTF-8, as the contract says), and a
//     request-target is built for it;
//   - each problem is INVALID_ARGUMENT naming its field; the gRPC status parses
//     back and holds one BadRequest violation per problem.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "palmgate/v1/palm_authorization.pb.h"
#include "server/common/utf8.h"
#include "server/service/request_mapping.h"
#include "server/service/status_conversion.h"
#include "service/wire/get_authorization_request.pb.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/request_target.h"
#include "tests/fuzz/fuzz_util.h"

// protobuf logs every invalid UTF-8 string it refuses; the runs would drown in it.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  palmgate::internal::wire::GetAuthorizationRequest wire;
  palmgate::v1::GetAuthorizationRequest contract;
  const bool wire_ok = wire.ParseFromArray(data, static_cast<int>(size));
  const bool contract_ok = contract.ParseFromArray(data, static_cast<int>(size));
  if (!wire_ok) {
    PALMGATE_FUZZ_CHECK(!contract_ok);
    return 0;
  }
  const std::vector<absl::Status> problems = service::ValidateRequest(wire.openid(), wire.organization_id());
  const absl::StatusOr<std::string> target = wechatpay::AuthorizationQueryTarget(wire.openid(), wire.organization_id());
  PALMGATE_FUZZ_CHECK(target.ok() == problems.empty());
  if (problems.empty()) {
    // The values used (the last occurrence of each field) are valid for the
    // contract. (The wire image does not look at superseded occurrences, which
    // palmgate.v1 would also UTF-8-check: a request that repeats a field with
    // invalid UTF-8 before a valid one is accepted; its valid value is used.)
    palmgate::v1::GetAuthorizationRequest used;
    PALMGATE_FUZZ_CHECK(used.ParseFromString(wire.SerializeAsString()));
    PALMGATE_FUZZ_CHECK(used.openid() == wire.openid() && used.organization_id() == wire.organization_id());
    if (contract_ok) {
      PALMGATE_FUZZ_CHECK(contract.openid() == wire.openid() && contract.organization_id() == wire.organization_id());
    }
    return 0;
  }
  PALMGATE_FUZZ_CHECK(problems.size() <= 2);
  for (const absl::Status& p : problems) {
    PALMGATE_FUZZ_CHECK(p.code() == absl::StatusCode::kInvalidArgument);
    std::optional<wechatpay::UpstreamError> e = wechatpay::GetUpstreamError(p);
    PALMGATE_FUZZ_CHECK(e.has_value() && (e->field == "openid" || e->field == "organization_id"));
  }
  const grpc::Status status =
      service::ToGrpcStatus(problems[0], std::vector<absl::Status>(problems.begin() + 1, problems.end()));
  PALMGATE_FUZZ_CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::Status rich;
  PALMGATE_FUZZ_CHECK(rich.ParseFromString(status.error_details()));
  PALMGATE_FUZZ_CHECK(IsValidUtf8(rich.message()));
  int violations = -1;
  for (const google::protobuf::Any& any : rich.details()) {
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&bad)) violations = bad.field_violations_size();
  }
  PALMGATE_FUZZ_CHECK(violations == static_cast<int>(problems.size()));
  return 0;
}
