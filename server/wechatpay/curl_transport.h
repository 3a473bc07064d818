// File: server/wechatpay/curl_transport.h
//
// CurlTransport: HttpTransport on one libcurl multi handle driven by one
// thread. Many transfers share that thread and the connection pool (keep-alive
// reuse, HTTP/2 multiplexing when the server offers it through ALPN); no
// thread is held per request.
//
// Defaults suit WeChat Pay: TLS verification on (optionally against a given
// CA file), idle connections retired before WeChat Pay's 8 s keep-alive
// timeout, bounded response size, and the path sent exactly as given (no
// dot-segment squashing), so the bytes signed are the bytes sent.
//
// Example:
//   PALMGATE_ASSIGN_OR_RETURN(auto transport, CurlTransport::Create({}));
//   transport->Send(std::move(request), [](absl::StatusOr<HttpResponse> r) { ... });
#ifndef PALMGATE_SERVER_WECHATPAY_CURL_TRANSPORT_H_
#define PALMGATE_SERVER_WECHATPAY_CURL_TRANSPORT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/crypto/secret.h"
#include "server/wechatpay/http_transport.h"

namespace palmgate::wechatpay {

// Returns "palmgate/<version> (libcurl/x.y.z; OpenSSL/…)".
std::string DefaultUserAgent();

class CurlTransport final : public HttpTransport {
 public:
  struct Options {
    // PEM bundle of CAs trusted for upstream TLS; empty: the system bundle.
    std::string ca_file;
    // Sent on every request.
    std::string user_agent = DefaultUserAgent();
    absl::Duration connect_timeout = absl::Seconds(3);
    // Idle pooled connections older than this are not reused (WeChat Pay closes at 8 s).
    absl::Duration max_idle_connection_age = absl::Seconds(7);
    // Larger bodies abort the transfer with UPSTREAM_RESPONSE_TOO_LARGE.
    size_t max_response_bytes = 256 * 1024;
    // Explicit proxy URL; empty: libcurl's HTTPS_PROXY/NO_PROXY environment handling.
    std::string proxy;
    // Credentials for the proxy (given or from the environment), sent as
    // CURLOPT_PROXYUSERNAME/PROXYPASSWORD (raw, no URL escaping); not sent
    // when the user name is empty. Wiped with the options.
    crypto::SecretString proxy_username;
    crypto::SecretString proxy_password;
    // Allow HTTP/2 (over TLS, negotiated by ALPN).
    bool http2 = true;
    // Connections kept for reuse (HTTP/1.1 needs one per transfer in flight).
    int max_cached_connections = 4096;
    // Connections open at once, and transfers running at once (0: no limit;
    // with HTTP/1.1 each running transfer holds a connection). Transfers
    // beyond it wait in line, first come first served, within their budget
    // (HttpRequest::budget; their own timeout starts when they leave the
    // line, and one whose budget ends first fails with
    // UPSTREAM_CONNECTIONS_BUSY, never as the far end's timeout). Bounds memory (~100 KB per TLS connection) and handshake storms
    // when thousands of calls are in flight; 512 connections carry 5,000
    // calls/s at 100 ms of upstream latency.
    int max_connections = 512;
  };

  // Starts the event-loop thread. kInternal if libcurl cannot be initialised.
  static absl::StatusOr<std::unique_ptr<CurlTransport>> Create(Options options);

  // Cancels every transfer still running (callbacks get kCancelled), then joins
  // the loop thread. Must not be called from a completion callback.
  ~CurlTransport() override;

  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  // HttpTransport
  TransferId Send(HttpRequest request, Callback done) override;
  void Cancel(TransferId id) override;
  void Schedule(absl::Duration delay, absl::AnyInvocable<void() &&> fn) override;

  // Transfers started and not yet completed.
  int64_t InFlight() const;

 private:
  class Loop;
  explicit CurlTransport(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_CURL_TRANSPORT_H_
