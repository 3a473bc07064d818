// File: server/tcp_listener.h
//
// TcpListener: palmgate's own listening socket(s) and accept loop. gRPC serves
// the connections (GrpcServer hands each accepted descriptor to gRPC's
// external connection acceptor, grpc_server.h) but no longer owns the port,
// because gRPC 1.51's own listener
//   - sets SO_REUSEPORT, so a second gateway on a port in use "started" and
//     took a share of the calls; here bind() fails with EADDRINUSE;
//   - gives up its listening socket on EMFILE ("Failed accept4: Too many open
//     files"): after 300 idle connections at a limit of 256 descriptors, 0 of
//     20 new connections were ever answered again. Here a reserved descriptor
//     sheds connections at the limit (close the spare, accept, close, reopen
//     the spare) and the loop never stops;
//   - has no cap on concurrent connections (Options::max_connections);
//   - can only be stopped by shutting the whole server down (Stop()).
//
// Addresses (what --listen accepted with gRPC's listener, minus unix: and
// vsock: forms, which palmgate never documented): "host:port" with a numeric
// IPv4 address, a host name (every address it resolves to is bound, on one
// port: "localhost:0" listens on 127.0.0.1 and ::1) or "[IPv6]:port". A
// wildcard ("0.0.0.0", "[::]") listens on one dual-stack IPv6 socket (IPv4 and
// IPv6, as gRPC did), or on 0.0.0.0 where IPv6 is unavailable. Port 0 picks one.
//
// Counting live connections. gRPC 1.51 does not tell when it closes a
// connection, so the listener remembers, per descriptor it handed over, the
// inode of its socket. A connection is live while fstat() of that descriptor
// still shows the same socket inode: when gRPC closes it the number is free,
// and if it is reused (by a new connection or anything else) it names another
// inode. The number of remembered descriptors is a cheap upper bound; only when
// it reaches the cap are they checked (one fstat each), at most once per 10 ms
// while the cap is still reached: a connection closed in between may shed
// another for up to 10 ms.
//
// Example:
//   absl::StatusOr<std::unique_ptr<TcpListener>> listener = TcpListener::Bind("0.0.0.0:50051", {});
//   if (!listener.ok()) return listener.status();  // e.g. "0.0.0.0:50051 is already in use"
//   (*listener)->Start([](int listener_fd, int fd) { /* owns fd from now on */ });
//   ...
//   (*listener)->Stop();  // new connections refused; what was queued was handed over first
//
// Thread safety: Start() and Stop() from one owner; the other methods from
// any thread. The handler runs on the accept thread.
#ifndef PALMGATE_SERVER_TCP_LISTENER_H_
#define PALMGATE_SERVER_TCP_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace palmgate {

class TcpListener {
 public:
  struct Options {
    // Connections handed over and still open at once; beyond it new
    // connections are accepted and reset at once (the caller's connect
    // succeeds, its first read fails: gRPC clients see UNAVAILABLE and
    // reconnect with backoff, balancers try another replica). 0: no cap.
    int max_connections = 0;
    // Accept queue length asked of listen() (the kernel caps it at net.core.somaxconn).
    int backlog = 4096;
  };

  // Called on the accept thread with each accepted descriptor (non-blocking,
  // close-on-exec, TCP_NODELAY), which it owns from then on, and the listening
  // descriptor it came from.
  using Handler = std::function<void(int listener_fd, int fd)>;

  struct Stats {
    int64_t accepted = 0;              // handed to the handler
    int64_t shed_at_cap = 0;           // reset: max_connections reached
    int64_t shed_at_descriptor_limit = 0;  // reset: EMFILE/ENFILE, through the reserved descriptor
  };

  // Resolves `address` and binds and listens on it (no SO_REUSEPORT). Errors:
  // kInvalidArgument when the address cannot be parsed or resolved;
  // kUnavailable "<address> is already in use" when another socket listens on
  // it (EADDRINUSE); else the errno's code, with the address in the message.
  static absl::StatusOr<std::unique_ptr<TcpListener>> Bind(const std::string& address, Options options);

  // Stop().
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // The bound port (the one picked when the address asked for port 0).
  int port() const { return port_; }

  // Starts the accept thread. Call once.
  void Start(Handler handler);

  // Stops accepting: a filter on the listening sockets drops new SYNs (the
  // client retransmits after 1 s and is then refused), the connections the
  // kernel had already completed are accepted and handed over (not reset:
  // a client may have sent its request on one), then the sockets are closed.
  // Returns when done: the number of listening sockets closed (0 on later calls).
  int Stop();

  // Connections handed over that are still open (checks each one).
  int LiveConnections();

  Stats GetStats() const;

 private:
  TcpListener(std::vector<int> fds, int port, int wake_fd, Options options);

  void AcceptLoop();
  // Accepts what `listener` has queued (up to a batch); false when the
  // descriptor limit left no way to shed (then the loop backs off briefly).
  bool AcceptReady(int listener);
  // Takes one accepted descriptor: hands it over, or sheds it at the cap.
  void Take(int listener, int fd);
  // EMFILE/ENFILE: accepts one connection through the reserved descriptor and
  // resets it. False when no descriptor could be freed.
  bool ShedAtDescriptorLimit(int listener);
  // The accept queue's connections, handed over; then closes the sockets.
  int DrainAndClose();
  void CountShed(bool at_cap);
  // Logs the connections shed since the last line, at most once per 10 s unless `force`.
  void MaybeLogShed(bool force);
  int RecountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::vector<int> fds_;  // listening sockets; closed by Stop()
  const int port_;
  const Options options_;
  Handler handler_;
  const int wake_fd_;    // eventfd: Stop() wakes the accept loop
  int reserve_fd_ = -1;  // /dev/null, given up to accept (and reset) at the descriptor limit
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;  // owner only
  int closed_ = 0;        // written by the accept thread before it ends, read after join

  mutable absl::Mutex mu_;
  // Descriptor handed over -> inode of its socket then (see the file comment).
  std::unordered_map<int, ino_t> handed_ ABSL_GUARDED_BY(mu_);
  absl::Time next_recount_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> shed_at_cap_{0};
  std::atomic<int64_t> shed_at_limit_{0};
  // Accept thread only: shed connections not yet logged, and when the last log line went out.
  int64_t unlogged_cap_ = 0;
  int64_t unlogged_limit_ = 0;
  absl::Time last_shed_log_ = absl::InfinitePast();
};

}  // namespace palmgate

#endif  // PALMGATE_SERVER_TCP_LISTENER_H_
