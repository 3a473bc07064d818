#include "server/wechatpay/request_target.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/common/utf8.h"
#include "server/wechatpay/error.h"

namespace palmgate::wechatpay {
namespace {

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

absl::Status FieldError(ErrorReason reason, absl::string_view field, absl::string_view problem) {
  UpstreamError e;
  e.reason = reason;
  e.field = std::string(field);
  return MakeError(absl::StatusCode::kInvalidArgument, absl::StrCat(field, ": ", problem), std::move(e));
}

absl::Status ValidateField(absl::string_view value, absl::string_view field, size_t max_bytes,
                           ErrorReason reason) {
  if (value.empty()) return FieldError(reason, field, "must not be empty");
  if (value.size() > max_bytes) {
    return FieldError(reason, field, absl::StrCat("is ", value.size(), " bytes; at most ", max_bytes, " allowed"));
  }
  if (!IsValidUtf8(value)) return FieldError(reason, field, "is not valid UTF-8");
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) return FieldError(reason, field, "contains a control character");
  }
  return absl::OkStatus();
}

}  // namespace

std::string PercentEncode(absl::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    if (IsUnreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

absl::Status ValidateOpenid(absl::string_view openid) {
  PALMGATE_RETURN_IF_ERROR(ValidateField(openid, "openid", kMaxOpenidBytes, ErrorReason::kInvalidOpenid));
  // "." and ".." are dot-segments: HTTP stacks may resolve them and call another path.
  if (openid == "." || openid == "..") {
    return FieldError(ErrorReason::kInvalidOpenid, "openid", "must not be a dot-segment (\".\" or \"..\")");
  }
  return absl::OkStatus();
}

absl::Status ValidateOrganizationId(absl::string_view organization_id) {
  return ValidateField(organization_id, "organization_id", kMaxOrganizationIdBytes,
                       ErrorReason::kInvalidOrganizationId);
}

absl::StatusOr<std::string> AuthorizationQueryTarget(absl::string_view openid,
                                                     absl::string_view organization_id) {
  PALMGATE_RETURN_IF_ERROR(ValidateOpenid(openid));
  PALMGATE_RETURN_IF_ERROR(ValidateOrganizationId(organization_id));
  return absl::StrCat("/v3/palmservice/authorization/openid/", PercentEncode(openid),
                      "?organization_id=", PercentEncode(organization_id));
}

}  // namespace palmgate::wechatpay
