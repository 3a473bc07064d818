#include "server/service/status_conversion.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"

namespace palmgate::service {
namespace {

constexpr size_t kMaxWechatpayMessageBytes = 512;

using wechatpay::ErrorReason;
using wechatpay::GetUpstreamError;
using wechatpay::UpstreamError;

void AddViolation(google::rpc::BadRequest* bad, const absl::Status& status) {
  std::optional<UpstreamError> e = GetUpstreamError(status);
  if (!e.has_value() || e->field.empty()) return;
  google::rpc::BadRequest::FieldViolation* v = bad->add_field_violations();
  v->set_field(e->field);
  // The status message is "<field>: <problem>"; the violation already names the field.
  absl::string_view description = status.message();
  absl::ConsumePrefix(&description, absl::StrCat(e->field, ": "));
  v->set_description(std::string(description));
}

}  // namespace

std::string CallerMessage(const absl::Status& status) {
  if (status.ok()) return "";
  const ErrorReason reason = wechatpay::GetReason(status);
  // Field checks describe only the caller's own input ("openid: must not be empty").
  if (reason == ErrorReason::kInvalidOpenid || reason == ErrorReason::kInvalidOrganizationId) {
    return std::string(status.message());
  }
  return std::string(wechatpay::ReasonSummary(reason));
}

grpc::Status ToGrpcStatus(const absl::Status& status, const std::vector<absl::Status>& more) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::optional<UpstreamError> e = GetUpstreamError(status);
  const ErrorReason reason = e.has_value() ? e->reason : ErrorReason::kUnspecified;
  const std::string message = CallerMessage(status);

  google::rpc::Status rich;
  rich.set_code(static_cast<int>(code));
  rich.set_message(message);

  google::rpc::ErrorInfo info;
  info.set_domain(std::string(kErrorDomain));
  info.set_reason(reason != ErrorReason::kUnspecified ? std::string(ReasonName(reason)) : std::string("INTERNAL"));
  if (e.has_value()) {
    // Serials (configuration, or unverified header text) are not passed on:
    // the RPC's log line has them. The code is unsigned: passed on only in
    // WeChat Pay's form; the message is WeChat Pay's (unsigned) human text,
    // made displayable here too, whatever built the payload.
    auto& md = *info.mutable_metadata();
    if (!e->request_id.empty()) md["requestId"] = e->request_id;
    if (e->http_status != 0) md["httpStatus"] = absl::StrCat(e->http_status);
    if (wechatpay::IsWellFormedWechatpayCode(e->wechatpay_code)) md["wechatpayCode"] = e->wechatpay_code;
    if (!e->wechatpay_message.empty()) {
      md["wechatpayMessage"] = wechatpay::ToDisplayableText(e->wechatpay_message, kMaxWechatpayMessageBytes);
    }
    if (!e->field.empty()) md["field"] = e->field;
  }
  rich.add_details()->PackFrom(info);

  google::rpc::BadRequest bad;
  AddViolation(&bad, status);
  for (const absl::Status& s : more) AddViolation(&bad, s);
  if (bad.field_violations_size() > 0) rich.add_details()->PackFrom(bad);

  if (e.has_value() && e->retry_after > absl::ZeroDuration()) {
    google::rpc::RetryInfo retry;
    const int64_t ms = absl::ToInt64Milliseconds(e->retry_after);
    retry.mutable_retry_delay()->set_seconds(ms / 1000);
    retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>((ms % 1000) * 1000000));
    rich.add_details()->PackFrom(retry);
  }
  return grpc::Status(code, message, rich.SerializeAsString());
}

}  // namespace palmgate::service
