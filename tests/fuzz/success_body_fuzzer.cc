// Fuzz target: the JSON of a verified success body (ParseAuthorizationBody) and
// its mapping to the palmgate.v1.Authorization answer (ToAuthorization).
//
// Input: the body, any bytes. The query is the one of vectors D3/D4.
//
// Invariants:
//   - an accepted body names the openid asked for, carries a state of the form
//     [A-Z][A-Z0-9_]{0,63}, and names the organization asked for or none;
//   - every string of the answer is valid UTF-8 and the answer serialises and
//     parses back unchanged (a client must always be able to decode it);
//   - authorize_time, when set, is a valid google.protobuf.Timestamp (seconds
//     within years 1..9999, nanos in [0, 1e9)), as clients' libraries require;
//   - the state enum is UNSPECIFIED or exactly the state string's enum name.
#include <cstddef>
#include <cstdint>
#include <string>

#include "palmgate/v1/palm_authorization.pb.h"
#include "server/common/utf8.h"
#include "server/service/request_mapping.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"
#include "server/wechatpay/palm_service_client.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<wechatpay::AuthorizationResult> result =
      wechatpay::ParseAuthorizationBody(body, kOpenid, kOrganizationId);
  if (!result.ok()) {
    PALMGATE_FUZZ_CHECK(result.status().code() == absl::StatusCode::kInternal);
    PALMGATE_FUZZ_CHECK(wechatpay::GetReason(result.status()) == wechatpay::ErrorReason::kUpstreamMalformedResponse);
    return 0;
  }
  PALMGATE_FUZZ_CHECK(result->openid == kOpenid && wechatpay::IsWellFormedWechatpayCode(result->state));
  PALMGATE_FUZZ_CHECK(result->organization_id.empty() || result->organization_id == kOrganizationId);
  PALMGATE_FUZZ_CHECK(!result->authorize_time.has_value() || !result->authorize_time_raw.empty());
  for (const std::string* s : {&result->openid, &result->organization_id, &result->state, &result->authorize_time_raw}) {
    PALMGATE_FUZZ_CHECK(IsValidUtf8(*s));
  }

  palmgate::v1::Authorization answer;
  service::ToAuthorization(*result, &answer);
  if (answer.state() != palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED) {
    PALMGATE_FUZZ_CHECK(palmgate::v1::AuthorizationState_Name(answer.state()) == result->state);
  }
  if (answer.has_authorize_time()) {
    PALMGATE_FUZZ_CHECK(result->authorize_time.has_value());
    constexpr int64_t kMinSeconds = -62135596800;  // 0001-01-01T00:00:00Z
    constexpr int64_t kMaxSeconds = 253402300799;  // 9999-12-31T23:59:59Z
    PALMGATE_FUZZ_CHECK(answer.authorize_time().seconds() >= kMinSeconds &&
                        answer.authorize_time().seconds() <= kMaxSeconds);
    PALMGATE_FUZZ_CHECK(answer.authorize_time().nanos() >= 0 && answer.authorize_time().nanos() < 1000000000);
  }
  std::string wire;
  PALMGATE_FUZZ_CHECK(answer.SerializeToString(&wire));
  palmgate::v1::Authorization back;
  PALMGATE_FUZZ_CHECK(back.ParseFromString(wire));
  PALMGATE_FUZZ_CHECK(back.SerializeAsString() == wire);
  return 0;
}
