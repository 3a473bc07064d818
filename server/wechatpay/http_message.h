// File: server/wechatpay/http_message.h
//
// Plain HTTP request/response values exchanged between the palmservice client,
// the response validator and the transport.
#ifndef PALMGATE_SERVER_WECHATPAY_HTTP_MESSAGE_H_
#define PALMGATE_SERVER_WECHATPAY_HTTP_MESSAGE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace palmgate::wechatpay {

// HttpHeaders
//
// An ordered list of header fields; names compare case-insensitively.
class HttpHeaders {
 public:
  void Add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }

  // Returns the first value of `name`, or nullopt.
  std::optional<absl::string_view> Get(absl::string_view name) const {
    for (const auto& [n, v] : fields_) {
      if (absl::EqualsIgnoreCase(n, name)) return absl::string_view(v);
    }
    return std::nullopt;
  }

  // Returns the first value of `name`, or "" when absent.
  absl::string_view GetOrEmpty(absl::string_view name) const { return Get(name).value_or(""); }

  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }
  size_t size() const { return fields_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute: scheme://host[:port]/path?query
  HttpHeaders headers;
  std::string body;
  // The transfer's own time limit (connect + TLS + request + response),
  // counted from when it leaves the transport's admission line
  // (CurlTransport::Options::max_connections): waiting for one of the
  // gateway's own connections is local congestion, not the far end's
  // slowness. Running out of it is the far end's: kDeadlineExceeded,
  // kUpstreamTimeout.
  absl::Duration timeout = absl::Seconds(10);
  // The most the transfer may take in all, time in the line included; zero:
  // equal to `timeout`. When it ends first — the transfer still in line, or
  // running with less than `timeout` left to it because it waited — the
  // transfer fails with kUnavailable, kUpstreamConnectionsBusy (local, with a
  // retry hint), never with kUpstreamTimeout.
  absl::Duration budget = absl::ZeroDuration();
};

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;
  std::string body;
  std::string http_version;  // "1.1", "2"
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_HTTP_MESSAGE_H_
