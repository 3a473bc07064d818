// File: server/ops/observed_transport.h
//
// ObservedTransport: an HttpTransport decorator that reports every upstream
// request to Metrics (host, HTTP status or 0 for no response, WeChat Pay
// `code` of an error body, latency) and forwards everything else unchanged.
//
// Thread safety: as thread-safe as the wrapped transport.
#ifndef PALMGATE_SERVER_OPS_OBSERVED_TRANSPORT_H_
#define PALMGATE_SERVER_OPS_OBSERVED_TRANSPORT_H_

#include <string>

#include "server/ops/metrics.h"
#include "server/wechatpay/http_transport.h"

namespace palmgate::ops {

class ObservedTransport final : public wechatpay::HttpTransport {
 public:
  // `inner` and `metrics` must outlive this object.
  ObservedTransport(wechatpay::HttpTransport* inner, Metrics* metrics) : inner_(inner), metrics_(metrics) {}

  // wechatpay::HttpTransport
  wechatpay::TransferId Send(wechatpay::HttpRequest request, Callback done) override;
  void Cancel(wechatpay::TransferId id) override { inner_->Cancel(id); }
  void Schedule(absl::Duration delay, absl::AnyInvocable<void() &&> fn) override {
    inner_->Schedule(delay, std::move(fn));
  }

 private:
  wechatpay::HttpTransport* const inner_;
  Metrics* const metrics_;
};

// Returns scheme://host[:port] of an absolute URL.
std::string UrlOrigin(absl::string_view url);

// Returns the "code" member of a WeChat Pay error body, or "".
std::string WechatpayCode(absl::string_view body);

}  // namespace palmgate::ops

#endif  // PALMGATE_SERVER_OPS_OBSERVED_TRANSPORT_H_
