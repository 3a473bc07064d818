// File: sandbox/server.h
//
// The sandbox's HTTP/1.1 (optionally HTTPS) server: Boost.Beast sessions,
// fully asynchronous (async_read/async_write, keep-alive, one strand per
// connection), an io_context run on N threads, per-request delays held by
// asio timers (never by blocking a thread), idle keep-alive connections
// closed after --idle_timeout_ms with `Keep-Alive: timeout=N` announced.
// Requests go to a Handler (handler.h).
//
// Example:
//   PALMGATE_ASSIGN_OR_RETURN(auto server, Server::Create(handler.get(), options));
//   printf("LISTENING %s\n", server->base_url().c_str());
//   server->Run();  // until SIGINT/SIGTERM or Shutdown()
//
// Thread safety: Create/Run from one thread; Shutdown() from any thread.
#ifndef PALMGATE_SANDBOX_SERVER_H_
#define PALMGATE_SANDBOX_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sandbox/handler.h"

namespace palmgate::sandbox {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0 picks a free port
  bool tls = false;
  std::string tls_cert_path;  // PEM chain, used when tls
  std::string tls_key_path;
  int threads = 1;
  absl::Duration idle_timeout = absl::Milliseconds(8000);
  size_t body_limit = 64 * 1024;
  size_t header_limit = 16 * 1024;
  bool access_log = true;    // one line per API request on stderr
  size_t max_body_log = 0;   // bytes of each response body in the access log
  bool handle_signals = true;  // SIGINT/SIGTERM -> graceful stop
};

class Server {
 public:
  // Binds the listening socket (so the port is known) without serving yet.
  // `handler` must outlive the server.
  static absl::StatusOr<std::unique_ptr<Server>> Create(Handler* handler, const ServerOptions& options);
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  // "http://HOST:PORT" or "https://…" with the address really bound:
  // "http://127.0.0.1:PORT", "http://[::1]:PORT", and "http://0.0.0.0:PORT"
  // or "http://[::]:PORT" when listening on every interface.
  std::string base_url() const;

  // Serves on options.threads threads (the caller's included) until a signal
  // or Shutdown(); then returns.
  void Run();

  // Stops accepting and stops the I/O threads. Thread-safe, idempotent.
  void Shutdown();

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_SERVER_H_
