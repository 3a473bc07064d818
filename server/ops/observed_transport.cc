#include "server/ops/observed_transport.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "absl/time/clock.h"

namespace palmgate::ops {

std::string UrlOrigin(absl::string_view url) {
  size_t scheme = url.find("://");
  size_t start = scheme == absl::string_view::npos ? 0 : scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  return std::string(url.substr(0, end));
}

std::string WechatpayCode(absl::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  auto it = j.find("code");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

wechatpay::TransferId ObservedTransport::Send(wechatpay::HttpRequest request, Callback done) {
  std::string host = UrlOrigin(request.url);
  const absl::Time start = absl::Now();
  return inner_->Send(std::move(request), [this, host = std::move(host), start, done = std::move(done)](
                                              absl::StatusOr<wechatpay::HttpResponse> response) mutable {
    if (response.ok()) {
      const bool success = response->status >= 200 && response->status < 300;
      metrics_->UpstreamResponse(host, response->status, success ? "" : WechatpayCode(response->body),
                                 absl::Now() - start);
    } else if (!absl::IsCancelled(response.status())) {
      metrics_->UpstreamResponse(host, 0, "", absl::Now() - start);
    }
    std::move(done)(std::move(response));
  });
}

}  // namespace palmgate::ops
