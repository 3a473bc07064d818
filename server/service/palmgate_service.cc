#include "server/service/palmgate_service.h"

#include <openssl/sha.h>

#include <atomic>
#include <chrono>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/common/logging.h"
#include "server/service/request_mapping.h"
#include "server/service/status_conversion.h"
#include "server/wechatpay/error.h"

namespace palmgate::service {
namespace {

constexpr absl::string_view kMethod = "/palmgate.v1.PalmAuthorization/GetAuthorization";

void LogRpc(const grpc::Status& status, absl::Duration latency, absl::string_view openid,
            absl::string_view request_id, absl::string_view reason) {
  Log(LogLevel::kInfo,
      absl::StrCat("rpc method=", kMethod, " code=", static_cast<int>(status.error_code()),
                   " latency_ms=", absl::StrFormat("%.2f", absl::ToDoubleMilliseconds(latency)),
                   " openid=", OpenidTag(openid), " wechatpay_request_id=", request_id.empty() ? "-" : request_id,
                   reason.empty() ? "" : absl::StrCat(" reason=", reason)));
}

}  // namespace

std::string OpenidTag(absl::string_view openid) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(openid.data()), openid.size(), digest);
  return absl::StrCat("sha256:", absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), 6)));
}

// One GetAuthorization RPC. Deletes itself when both gRPC is done with it
// (OnDone) and Start has returned: a completion may run before Start returns.
class PalmAuthorizationService::Reactor final : public grpc::ServerUnaryReactor {
 public:
  Reactor(const PalmAuthorizationService* service, const palmgate::internal::wire::GetAuthorizationRequest* request,
          palmgate::v1::Authorization* response)
      : service_(service), request_(request), response_(response), start_(service->clock_.Now()) {}

  void Start(absl::Time deadline) {
    wechatpay::CallId id = service_->client_->GetAuthorization(
        request_->openid(), request_->organization_id(), deadline,
        [this](absl::StatusOr<wechatpay::AuthorizationResult> result) { Complete(std::move(result)); });
    bool cancel = false;
    {
      absl::MutexLock lock(&mu_);
      transfer_ = id;
      cancel = cancelled_ && id != 0;
    }
    if (cancel) service_->client_->Cancel(id);
    Unref();
  }

  // grpc::ServerUnaryReactor
  void OnCancel() override {
    wechatpay::CallId id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = transfer_;
    }
    if (id != 0) service_->client_->Cancel(id);
  }
  void OnDone() override { Unref(); }

 private:
  void Complete(absl::StatusOr<wechatpay::AuthorizationResult> result) {
    grpc::Status status;
    std::string request_id;
    std::string reason;
    if (result.ok()) {
      ToAuthorization(*result, response_);
      request_id = result->request_id;
    } else {
      status = ToGrpcStatus(result.status());
      if (auto e = wechatpay::GetUpstreamError(result.status()); e.has_value()) {
        request_id = e->request_id;
        reason = std::string(wechatpay::ReasonName(e->reason));
      }
    }
    if (service_->options_.log_rpcs) {
      LogRpc(status, service_->clock_.Now() - start_, request_->openid(), request_id, reason);
    }
    Finish(status);  // last use of `this` here: OnDone may run at once
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  const PalmAuthorizationService* const service_;
  const palmgate::internal::wire::GetAuthorizationRequest* const request_;
  palmgate::v1::Authorization* const response_;
  const absl::Time start_;
  std::atomic<int> refs_{2};  // Start and OnDone
  absl::Mutex mu_;
  wechatpay::CallId transfer_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

PalmAuthorizationService::PalmAuthorizationService(wechatpay::PalmServiceClient* client, const Clock& clock,
                                                   Options options)
    : client_(client), clock_(clock), options_(options) {
  // Method 0 is GetAuthorization; the replaced generated handler is deleted.
  MarkMethodCallback(
      0, new grpc::internal::CallbackUnaryHandler<palmgate::internal::wire::GetAuthorizationRequest,
                                                  palmgate::v1::Authorization>(
             [this](grpc::CallbackServerContext* context,
                    const palmgate::internal::wire::GetAuthorizationRequest* request,
                    palmgate::v1::Authorization* response) {
               return HandleGetAuthorization(context, request, response);
             }));
}

grpc::ServerUnaryReactor* PalmAuthorizationService::HandleGetAuthorization(
    grpc::CallbackServerContext* context, const palmgate::internal::wire::GetAuthorizationRequest* request,
    palmgate::v1::Authorization* response) {
  const absl::Time start = clock_.Now();
  std::vector<absl::Status> problems = ValidateRequest(request->openid(), request->organization_id());
  if (!problems.empty()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    grpc::Status status = ToGrpcStatus(problems.front(), std::vector<absl::Status>(problems.begin() + 1, problems.end()));
    if (options_.log_rpcs) {
      LogRpc(status, clock_.Now() - start, request->openid(), "",
             wechatpay::ReasonName(wechatpay::GetReason(problems.front())));
    }
    reactor->Finish(status);
    return reactor;
  }
  // No deadline from the caller: the client's maximum applies.
  absl::Time deadline = absl::InfiniteFuture();
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    deadline = absl::FromChrono(context->deadline()) - options_.deadline_margin;
  } else {
    deadline = clock_.Now() + client_->options().max_timeout;
  }
  auto* reactor = new Reactor(this, request, response);
  reactor->Start(deadline);
  return reactor;
}

}  // namespace palmgate::service
