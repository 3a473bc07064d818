#include "server/service/request_mapping.h"

#include "server/wechatpay/request_target.h"

namespace palmgate::service {

std::vector<absl::Status> ValidateRequest(absl::string_view openid, absl::string_view organization_id) {
  std::vector<absl::Status> problems;
  if (absl::Status s = wechatpay::ValidateOpenid(openid); !s.ok()) problems.push_back(std::move(s));
  if (absl::Status s = wechatpay::ValidateOrganizationId(organization_id); !s.ok()) {
    problems.push_back(std::move(s));
  }
  return problems;
}

palmgate::v1::AuthorizationState StateFromString(absl::string_view state) {
  palmgate::v1::AuthorizationState value;
  // The enum's names are WeChat Pay's strings; "AUTHORIZATION_STATE_UNSPECIFIED"
  // is ours and never a real upstream state.
  if (state != "AUTHORIZATION_STATE_UNSPECIFIED" &&
      palmgate::v1::AuthorizationState_Parse(std::string(state), &value)) {
    return value;
  }
  return palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED;
}

void ToAuthorization(const wechatpay::AuthorizationResult& result, palmgate::v1::Authorization* out) {
  out->set_openid(result.openid);
  out->set_organization_id(result.organization_id);
  out->set_state(StateFromString(result.state));
  out->set_wechatpay_state(result.state);
  out->set_wechatpay_request_id(result.request_id);
  if (result.authorize_time.has_value()) {
    const absl::Time t = *result.authorize_time;
    const int64_t seconds = absl::ToUnixSeconds(t);
    out->mutable_authorize_time()->set_seconds(seconds);
    out->mutable_authorize_time()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  }
}

}  // namespace palmgate::service
