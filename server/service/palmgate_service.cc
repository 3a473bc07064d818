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
#include "server/common/request_tags.h"
#include "server/common/utf8.h"
#include "server/service/request_mapping.h"
#include "server/service/status_conversion.h"
#include "server/wechatpay/error.h"

namespace palmgate::service {
namespace {

constexpr absl::string_view kMethod = "/palmgate.v1.PalmAuthorization/GetAuthorization";

// Correlation ids of one RPC (request_tags.h); x-request-id is echoed to the caller.
struct RpcTags {
  std::string request_id;
  std::string trace_id;
};

RpcTags TagsOf(grpc::CallbackServerContext* context) {
  const auto& md = context->client_metadata();
  auto get = [&md](const char* key) -> absl::string_view {
    auto it = md.find(key);
    return it == md.end() ? absl::string_view() : absl::string_view(it->second.data(), it->second.size());
  };
  RpcTags tags{RequestIdOrNew(get("x-request-id")), TraceIdFromTraceparent(get("traceparent"))};
  context->AddInitialMetadata("x-request-id", tags.request_id);
  return tags;
}

// What the upstream call tells the log line (all optional). The log line is
// where what callers are not told goes: the failure's own message (serials,
// hosts, addresses, libcurl's text) and the serial involved.
struct UpstreamTags {
  std::string request_id;  // WeChat Pay's Request-ID
  std::string request_id_dropped;  // why a Request-ID header was not kept
  std::string reason;
  std::string host;
  int attempts = 0;
  int http_status = 0;
  std::string wechatpay_code;
  std::string serial;  // the Wechatpay-Serial involved in a failure
  std::string detail;  // the failure's status message
};

// Bound of the `detail` log field (its parts are bounded already; this is the backstop).
constexpr size_t kMaxDetailBytes = 1024;

void LogRpc(const grpc::Status& status, absl::Duration latency, absl::string_view openid, const RpcTags& tags,
            const UpstreamTags& upstream) {
  LogFields fields;
  fields.Add("method", kMethod)
      .Add("code", static_cast<int>(status.error_code()))
      .Add("latency_ms", absl::ToDoubleMilliseconds(latency))
      .Add("openid", OpenidTag(openid))
      .Add("x_request_id", tags.request_id)
      .AddIfNotEmpty("trace_id", tags.trace_id)
      .AddIfNotEmpty("wechatpay_request_id", upstream.request_id)
      .AddIfNotEmpty("wechatpay_request_id_dropped", upstream.request_id_dropped)
      .AddIfNotEmpty("upstream_host", upstream.host);
  if (upstream.attempts > 0) fields.Add("attempts", upstream.attempts);
  if (upstream.http_status > 0) fields.Add("http_status", upstream.http_status);
  fields.AddIfNotEmpty("wechatpay_code", upstream.wechatpay_code)
      .AddIfNotEmpty("wechatpay_serial", upstream.serial)
      .AddIfNotEmpty("reason", upstream.reason)
      .AddIfNotEmpty("detail", ToBoundedUtf8(upstream.detail, kMaxDetailBytes));
  const bool server_fault = status.error_code() == grpc::StatusCode::INTERNAL || status.error_code() == grpc::StatusCode::UNKNOWN;
  Log(server_fault ? LogLevel::kWarning : LogLevel::kInfo, "rpc", fields);
}

}  // namespace

std::string OpenidTag(absl::string_view openid) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(openid.data()), openid.size(), digest);
  return absl::StrCat("sha256:", absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), 6)));
}

// One GetAuthorization RPC. Deletes itself when gRPC is done with it (OnDone),
// Start has returned (a completion may run before Start returns) and Complete
// has returned from Finish (gRPC's ServerUnaryReactor::Finish still reads the
// reactor while OnDone may already run on another thread; the last reference,
// an acq_rel count, orders that read before the delete).
class PalmAuthorizationService::Reactor final : public grpc::ServerUnaryReactor {
 public:
  Reactor(const PalmAuthorizationService* service, const palmgate::internal::wire::GetAuthorizationRequest* request,
          palmgate::v1::Authorization* response, RpcTags tags)
      : service_(service), request_(request), response_(response), tags_(std::move(tags)), start_(service->clock_.Now()) {}

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
    UpstreamTags upstream;
    if (result.ok()) {
      ToAuthorization(*result, response_);
      upstream.request_id = result->request_id;
      upstream.request_id_dropped = result->request_id_dropped;
      upstream.host = result->host;
      upstream.attempts = result->attempts;
      upstream.http_status = 200;
    } else {
      status = ToGrpcStatus(result.status());
      upstream.detail = std::string(result.status().message());
      if (auto e = wechatpay::GetUpstreamError(result.status()); e.has_value()) {
        upstream.request_id = e->request_id;
        upstream.request_id_dropped = e->request_id_dropped;
        upstream.serial = e->serial;
        upstream.reason = std::string(wechatpay::ReasonName(e->reason));
        upstream.http_status = e->http_status;
        upstream.wechatpay_code = e->wechatpay_code;
      }
    }
    if (service_->options_.log_rpcs) {
      LogRpc(status, service_->clock_.Now() - start_, request_->openid(), tags_, upstream);
    }
    Finish(status);
    Unref();
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  const PalmAuthorizationService* const service_;
  const palmgate::internal::wire::GetAuthorizationRequest* const request_;
  palmgate::v1::Authorization* const response_;
  const RpcTags tags_;
  const absl::Time start_;
  std::atomic<int> refs_{3};  // Start, Complete and OnDone
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
  RpcTags tags = TagsOf(context);
  std::vector<absl::Status> problems = ValidateRequest(request->openid(), request->organization_id());
  if (!problems.empty()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    grpc::Status status = ToGrpcStatus(problems.front(), std::vector<absl::Status>(problems.begin() + 1, problems.end()));
    if (options_.log_rpcs) {
      UpstreamTags upstream;
      upstream.reason = std::string(wechatpay::ReasonName(wechatpay::GetReason(problems.front())));
      LogRpc(status, clock_.Now() - start, request->openid(), tags, upstream);
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
  auto* reactor = new Reactor(this, request, response, std::move(tags));
  reactor->Start(deadline);
  return reactor;
}

}  // namespace palmgate::service
