// Fuzz target: the classification of error responses (ClassifyHttpStatus: the
// lenient JSON parse of WeChat Pay's error body, Request-ID, Retry-After) and
// the gRPC status built from it (ToGrpcStatus), as a client receives it.
//
// Input: an HTTP response in the text form of fuzz_util.h.
//
// Invariants:
//   - OK exactly for 2xx other than 202;
//   - an error carries an UpstreamError with the HTTP status, the code of the
//     one mapping table, bounded texts, and a retry hint in [1 s, 1 h] exactly
//     when the code is UNAVAILABLE or RESOURCE_EXHAUSTED;
//   - the grpc-status-details-bin blob parses back (strict proto3 UTF-8) into
//     a google.rpc.Status with one ErrorInfo, whose strings are valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/common/utf8.h"
#include "server/service/status_conversion.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  std::optional<wechatpay::HttpResponse> response =
      ParseHttpText(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!response.has_value()) return -1;
  const absl::Status status = wechatpay::ClassifyHttpStatus(*response);
  const bool success = response->status >= 200 && response->status <= 299 && response->status != 202;
  PALMGATE_FUZZ_CHECK(status.ok() == success);
  if (status.ok()) return 0;

  std::optional<wechatpay::UpstreamError> e = wechatpay::GetUpstreamError(status);
  PALMGATE_FUZZ_CHECK(e.has_value());
  PALMGATE_FUZZ_CHECK(e->http_status == response->status);
  const wechatpay::MappedError mapped = wechatpay::MapHttpError(response->status, e->wechatpay_code);
  PALMGATE_FUZZ_CHECK(status.code() == mapped.code && e->reason == mapped.reason);
  for (const std::string* s : {&e->wechatpay_code, &e->wechatpay_message, &e->detail_json, &e->request_id}) {
    PALMGATE_FUZZ_CHECK(s->size() <= 512);
  }
  if (mapped.code == absl::StatusCode::kUnavailable || mapped.code == absl::StatusCode::kResourceExhausted) {
    PALMGATE_FUZZ_CHECK(e->retry_after >= absl::Seconds(1) && e->retry_after <= absl::Hours(1));
  } else {
    PALMGATE_FUZZ_CHECK(e->retry_after == absl::ZeroDuration());
  }

  const grpc::Status converted = service::ToGrpcStatus(status);
  PALMGATE_FUZZ_CHECK(static_cast<int>(converted.error_code()) == static_cast<int>(status.code()));
  google::rpc::Status rich;
  PALMGATE_FUZZ_CHECK(rich.ParseFromString(converted.error_details()));
  PALMGATE_FUZZ_CHECK(IsValidUtf8(rich.message()));
  PALMGATE_FUZZ_CHECK(rich.details_size() >= 1);
  google::rpc::ErrorInfo info;
  PALMGATE_FUZZ_CHECK(rich.details(0).UnpackTo(&info));
  PALMGATE_FUZZ_CHECK(info.reason() == wechatpay::ReasonName(e->reason));
  for (const auto& [key, value] : info.metadata()) {
    PALMGATE_FUZZ_CHECK(IsValidUtf8(key) && IsValidUtf8(value));
  }
  return 0;
}
