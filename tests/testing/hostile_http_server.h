// File: tests/testing/hostile_http_server.h
//
// HostileHttpServer: a deliberately misbehaving HTTP/1.1 upstream for tests,
// plain or TLS, on 127.0.0.1 port 0. It reads each request head and answers
// with whatever byte script the test chose: a body far larger than any real
// answer, an endless chunked stream, one byte per interval (headers or body),
// endless headers, signed answers with invalid UTF-8 or nested JSON, and so
// on. It is a real socket server (one thread per connection, blocking I/O
// with OpenSSL for TLS), so the gateway's real libcurl transport is what
// meets it.
//
// It also records what happened: the request heads it read, the TLS
// handshakes that failed, the bytes written per connection and when each
// connection ended, so tests can prove that a read was cut short or that no
// request was ever sent.
//
// Example:
//   HostileHttpServer::Options options;
//   options.tls_cert_pem = cert;  options.tls_key_pem = key;
//   PALMGATE_ASSERT_OK_AND_ASSIGN(auto server, HostileHttpServer::Start(options));
//   server->SetScript([](absl::string_view head) {
//     HostileScript s;
//     s.head = "HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n";
//     s.repeat = std::string(64 * 1024, 'x');
//     s.repeat_limit = 50 * 1024 * 1024;
//     return s;
//   });
//   ... call server->base_url() ...
//
// Thread safety: all methods are thread-safe.
#ifndef PALMGATE_TESTS_TESTING_HOSTILE_HTTP_SERVER_H_
#define PALMGATE_TESTS_TESTING_HOSTILE_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace palmgate::testing {

// What the server sends for one request, in order: `head`, `body`, then
// `repeat` again and again (forever, or until `repeat_limit` bytes of it were
// sent). With a `byte_interval`, every byte of `body` is written on its own,
// that long after the previous one (to trickle headers, leave `head` empty and
// put them in `body`). The connection is kept open for the next request when
// the script ends without `repeat`; `close_after` closes it instead.
struct HostileScript {
  std::string head;
  std::string body;
  absl::Duration byte_interval = absl::ZeroDuration();
  std::string repeat;
  size_t repeat_limit = 0;  // 0: endless
  bool close_after = false;
};

// One connection as the server saw it.
struct HostileConnection {
  bool tls_failed = false;          // TLS handshake did not complete
  std::vector<std::string> heads;   // request heads read (request line + headers)
  size_t bytes_written = 0;         // response bytes the peer accepted
  bool closed = false;              // the connection has ended
};

class HostileHttpServer {
 public:
  struct Options {
    // PEM certificate (chain) and private key; both empty: plain HTTP.
    std::string tls_cert_pem;
    std::string tls_key_pem;
  };
  using ScriptFn = std::function<HostileScript(absl::string_view request_head)>;

  static absl::StatusOr<std::unique_ptr<HostileHttpServer>> Start(const Options& options);
  // Closes every connection and joins every thread.
  ~HostileHttpServer();

  HostileHttpServer(const HostileHttpServer&) = delete;
  HostileHttpServer& operator=(const HostileHttpServer&) = delete;

  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  const std::string& base_url() const { return base_url_; }
  int port() const { return port_; }

  // Sets how later requests are answered (default: an empty 404).
  void SetScript(ScriptFn script);

  // Snapshot of every connection so far, in accept order.
  std::vector<HostileConnection> Connections() const;
  // Number of request heads read over all connections.
  size_t RequestCount() const;

  // Waits until every accepted connection has ended (and at least `min_connections`
  // were accepted). False on timeout.
  bool WaitAllClosed(size_t min_connections, absl::Duration timeout) const;

  class Impl;

 private:
  explicit HostileHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string base_url_;
  int port_ = 0;
};

// Returns the Wechatpay-* headers ("Name: value\r\n" lines) of a response
// carrying `body`, signed SHA256withRSA over "timestamp\nnonce\nbody\n" with
// `private_key_pem` and naming `serial`, plus a Request-ID.
absl::StatusOr<std::string> WechatpaySignatureHeaders(absl::string_view body, const std::string& private_key_pem,
                                                      const std::string& serial, absl::Time now,
                                                      absl::string_view request_id = "hostile-request-id");

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_HOSTILE_HTTP_SERVER_H_
