#include "server/ops/rpc_interceptor.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace palmgate::ops {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(Metrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(absl::Now()) {
    metrics_->RpcStarted();
  }

  ~RpcMetricsInterceptor() override {
    // No status was sent (the call was torn down first): count it as cancelled.
    if (!finished_) metrics_->RpcFinished(method_, grpc::StatusCode::CANCELLED, absl::Now() - start_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!finished_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      finished_ = true;
      const grpc::Status status = methods->GetSendStatus();
      metrics_->RpcFinished(method_, status.error_code(), absl::Now() - start_);
      if (!status.ok() && !status.error_details().empty()) CountVerificationFailure(status.error_details());
    }
    methods->Proceed();
  }

 private:
  void CountVerificationFailure(const std::string& details) {
    google::rpc::Status rich;
    if (!rich.ParseFromString(details)) return;
    for (const auto& any : rich.details()) {
      google::rpc::ErrorInfo info;
      if (any.Is<google::rpc::ErrorInfo>() && any.UnpackTo(&info) && IsVerificationFailureReason(info.reason())) {
        metrics_->VerificationFailure(info.reason());
      }
    }
  }

  Metrics* const metrics_;
  const std::string method_;
  const absl::Time start_;
  bool finished_ = false;
};

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new RpcMetricsInterceptor(metrics_, info->method() != nullptr ? info->method() : "");
  }

 private:
  Metrics* const metrics_;
};

}  // namespace

bool IsVerificationFailureReason(absl::string_view reason) {
  return absl::StartsWith(reason, "RESPONSE_") || reason == "UNKNOWN_WECHATPAY_SERIAL";
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRpcMetricsInterceptorFactory(
    Metrics* metrics) {
  return std::make_unique<Factory>(metrics);
}

}  // namespace palmgate::ops
