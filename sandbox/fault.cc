#include "sandbox/fault.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace palmgate::sandbox {
namespace {

constexpr int64_t kMaxLatencyMs = 10 * 60 * 1000;
constexpr size_t kMaxHugeBody = 64u << 20;
constexpr int64_t kMaxSkewS = 10LL * 365 * 24 * 3600;

constexpr absl::string_view kOmittableHeaders[] = {
    "Wechatpay-Timestamp", "Wechatpay-Nonce",  "Wechatpay-Serial",
    "Wechatpay-Signature", "Wechatpay-Signature-Type", "Request-ID"};

absl::Status Bad(absl::string_view part, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad X-Sandbox-Fault \"", part, "\": ", why));
}

absl::Status NoArg(absl::string_view name, bool has_arg, absl::string_view part) {
  if (has_arg) return Bad(part, absl::StrCat("fault \"", name, "\" takes no argument"));
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> DefaultRandomFaultSpecs() {
  return {"latency=200",       "status=500",        "status=503",
          "status=429",        "status=400",        "status=401",
          "status=403",        "status=404",        "drop",
          "corrupt_signature", "probe_signature",   "missing_signature_headers",
          "missing_header=Wechatpay-Nonce",         "skew_timestamp=600",
          "unknown_serial",    "malformed_json",    "empty_body",
          "html_error",        "huge_body=1048576"};
}

StatusFault DefaultStatusFault(int http_status) {
  switch (http_status) {
    case 400: return {400, "PARAM_ERROR", "参数错误"};
    case 401: return {401, "SIGN_ERROR", "签名错误"};
    case 403: return {403, "NO_AUTH", "无权限"};
    case 404: return {404, "NOT_FOUND", "资源不存在"};
    case 429: return {429, "RATELIMIT_EXCEEDED", "请求频率超限"};
    case 500: return {500, "SYSTEM_ERROR", "系统繁忙，请稍后重试"};
    case 502:
    case 503: return {http_status, "SERVICE_UNAVAILABLE", "服务不可用，请稍后重试"};
    default:
      if (http_status >= 500) return {http_status, "SYSTEM_ERROR", "系统异常，请稍后重试"};
      return {http_status, "INVALID_REQUEST", "请求不合法"};
  }
}

absl::StatusOr<FaultPlan> ParseFaultSpec(absl::string_view spec) {
  FaultPlan plan;
  absl::string_view trimmed = absl::StripAsciiWhitespace(spec);
  if (trimmed.empty()) return absl::InvalidArgumentError("empty X-Sandbox-Fault");
  plan.spec = std::string(trimmed);
  for (absl::string_view raw : absl::StrSplit(trimmed, ';')) {
    absl::string_view part = absl::StripAsciiWhitespace(raw);
    if (part.empty()) return Bad(trimmed, "empty fault between ';'");
    size_t eq = part.find('=');
    absl::string_view name = part.substr(0, eq);
    const bool has_arg = eq != absl::string_view::npos;
    absl::string_view arg = has_arg ? part.substr(eq + 1) : absl::string_view();
    if (has_arg && arg.empty() && name != "status") return Bad(part, "empty argument");
    if (name == "latency") {
      int64_t ms = 0;
      if (!has_arg || !absl::SimpleAtoi(arg, &ms) || ms < 0 || ms > kMaxLatencyMs) {
        return Bad(part, "expected latency=MS with 0 <= MS <= 600000");
      }
      plan.latency_ms += ms;
    } else if (name == "status") {
      std::vector<absl::string_view> pieces = absl::StrSplit(arg, absl::MaxSplits(':', 2));
      int http = 0;
      if (!has_arg || pieces.empty() || !absl::SimpleAtoi(pieces[0], &http) || http < 400 || http > 599) {
        return Bad(part, "expected status=HTTP[:CODE[:MESSAGE]] with HTTP in 400..599");
      }
      StatusFault f = DefaultStatusFault(http);
      if (pieces.size() > 1 && !pieces[1].empty()) f.code = std::string(pieces[1]);
      if (pieces.size() > 2 && !pieces[2].empty()) f.message = std::string(pieces[2]);
      plan.status = f;
    } else if (name == "drop") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.drop = true;
    } else if (name == "corrupt_signature") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.corrupt_signature = true;
    } else if (name == "probe_signature") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.probe_signature = true;
    } else if (name == "missing_signature_headers") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.missing_signature_headers = true;
    } else if (name == "missing_header") {
      std::string canonical;
      for (absl::string_view h : kOmittableHeaders) {
        if (absl::EqualsIgnoreCase(h, arg)) canonical = std::string(h);
      }
      if (!has_arg || canonical.empty()) {
        return Bad(part, "expected missing_header=NAME with NAME one of Wechatpay-Timestamp, Wechatpay-Nonce, "
                         "Wechatpay-Serial, Wechatpay-Signature, Wechatpay-Signature-Type, Request-ID");
      }
      plan.missing_headers.push_back(canonical);
    } else if (name == "skew_timestamp") {
      int64_t s = 0;
      if (!has_arg || !absl::SimpleAtoi(arg, &s) || s > kMaxSkewS || s < -kMaxSkewS) {
        return Bad(part, "expected skew_timestamp=SECONDS (may be negative)");
      }
      plan.skew_timestamp_s = s;
    } else if (name == "unknown_serial") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.unknown_serial = true;
    } else if (name == "malformed_json") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.malformed_json = true;
    } else if (name == "empty_body") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.empty_body = true;
    } else if (name == "html_error") {
      if (auto s = NoArg(name, has_arg, part); !s.ok()) return s;
      plan.html_error = true;
    } else if (name == "huge_body") {
      size_t bytes = 0;
      if (!has_arg || !absl::SimpleAtoi(arg, &bytes) || bytes > kMaxHugeBody) {
        return Bad(part, "expected huge_body=BYTES with BYTES <= 67108864");
      }
      plan.huge_body = bytes;
    } else {
      return Bad(part, absl::StrCat("unknown fault \"", name,
                                    "\" (known: latency, status, drop, corrupt_signature, probe_signature, "
                                    "missing_signature_headers, missing_header, skew_timestamp, unknown_serial, "
                                    "malformed_json, empty_body, html_error, huge_body)"));
    }
  }
  return plan;
}

}  // namespace palmgate::sandbox
