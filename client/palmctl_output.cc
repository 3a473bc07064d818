#include "client/palmctl_output.h"

#include <map>
#include <string>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace palmgate::client {
namespace {

using google::protobuf::util::TimeUtil;

constexpr const char* kCodeNames[] = {
    "OK",           "CANCELLED",          "UNKNOWN",          "INVALID_ARGUMENT",  "DEADLINE_EXCEEDED",
    "NOT_FOUND",    "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",      "OUT_OF_RANGE",       "UNIMPLEMENTED",    "INTERNAL",          "UNAVAILABLE",
    "DATA_LOSS",    "UNAUTHENTICATED"};

void AppendErrorInfo(const google::rpc::ErrorInfo& info, std::string* out) {
  absl::StrAppend(out, "  reason: ", info.reason(), "\n  domain: ", info.domain(), "\n");
  // google::protobuf::Map iterates in no fixed order; sort for stable output.
  const std::map<std::string, std::string> metadata(info.metadata().begin(), info.metadata().end());
  for (const auto& [key, value] : metadata) absl::StrAppend(out, "  metadata.", key, ": ", value, "\n");
}

}  // namespace

std::string StatusCodeName(int n) {
  if (n >= 0 && n < static_cast<int>(std::size(kCodeNames))) return kCodeNames[n];
  return absl::StrCat("CODE_", n);
}

std::string FormatAuthorization(const palmgate::v1::Authorization& a) {
  std::string out;
  absl::StrAppend(&out, "state: ", palmgate::v1::AuthorizationState_Name(a.state()), "\n");
  absl::StrAppend(&out, "authorize_time: ", a.has_authorize_time() ? TimeUtil::ToString(a.authorize_time()) : "-",
                  "\n");
  absl::StrAppend(&out, "openid: ", a.openid(), "\n");
  absl::StrAppend(&out, "organization_id: ", a.organization_id(), "\n");
  absl::StrAppend(&out, "wechatpay_state: ", a.wechatpay_state(), "\n");
  absl::StrAppend(&out, "request_id: ", a.wechatpay_request_id(), "\n");
  return out;
}

absl::StatusOr<std::string> FormatAuthorizationJson(const palmgate::v1::Authorization& a) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;  // scripts may rely on every key being present
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(a, &json, options);
  if (!status.ok()) return absl::InternalError(absl::StrCat("format json: ", status.ToString()));
  return json;
}

std::string FormatError(const grpc::Status& status) {
  std::string out = absl::StrCat("error: ", StatusCodeName(static_cast<int>(status.error_code())), ": ", status.error_message(), "\n");
  if (status.error_details().empty()) return out;
  google::rpc::Status rich;
  if (!rich.ParseFromString(status.error_details())) {
    absl::StrAppend(&out, "  (grpc-status-details-bin is not a google.rpc.Status)\n");
    return out;
  }
  for (const google::protobuf::Any& detail : rich.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad;
    google::rpc::RetryInfo retry;
    if (detail.Is<google::rpc::ErrorInfo>() && detail.UnpackTo(&info)) {
      AppendErrorInfo(info, &out);
    } else if (detail.Is<google::rpc::BadRequest>() && detail.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations()) {
        absl::StrAppend(&out, "  bad_request: ", v.field(), ": ", v.description(), "\n");
      }
    } else if (detail.Is<google::rpc::RetryInfo>() && detail.UnpackTo(&retry)) {
      absl::StrAppend(&out, "  retry_delay: ", TimeUtil::ToString(retry.retry_delay()), "\n");
    } else {
      absl::StrAppend(&out, "  detail: ", detail.type_url(), "\n");
    }
  }
  return out;
}

}  // namespace palmgate::client
