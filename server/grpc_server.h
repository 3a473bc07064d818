// File: server/grpc_server.h
//
// Starts palmgate's gRPC server: the PalmAuthorization service, the standard
// grpc.health.v1 health service and server reflection, on one listening port.
// Health is SERVING once started (callers load and check keys before),
// follows SetServing() (e.g. NOT_SERVING while no verification key is usable),
// and is NOT_SERVING for good from SetNotServing() on (drain). StopListening()
// refuses new connections while established ones keep serving (drain behind
// balancers that only learn from a refused connect). Thread-safe.
//
// Connection management (GrpcServerOptions): server keepalive pings, a
// maximum connection age (so that clients behind L4 balancers reconnect and
// spread over new replicas), a grace for calls on an aged connection, and a
// per-connection stream limit; server interceptors (metrics).
//
// Listening (tcp_listener.h): the port is palmgate's own socket, not gRPC's;
// gRPC takes each accepted connection through its external connection
// acceptor (plain text or TLS: the handshake runs on the handed descriptor).
// So a port in use fails Start(), the accept loop survives descriptor
// exhaustion, a cap bounds concurrent connections, and StopListening() closes
// the socket without touching the server.
//
// Limits every caller meets before any of our code runs: a request message
// larger than `max_receive_message_bytes` (also after decompression) and
// request metadata (headers) larger than `max_metadata_bytes` are refused by
// gRPC's transport with RESOURCE_EXHAUSTED; a connection that has not sent
// its HTTP/2 preface and SETTINGS (after the TLS handshake, with TLS) within
// `handshake_timeout` is closed.
#ifndef PALMGATE_SERVER_GRPC_SERVER_H_
#define PALMGATE_SERVER_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/tcp_listener.h"

namespace palmgate {

inline constexpr char kServiceName[] = "palmgate.v1.PalmAuthorization";

// The largest valid GetAuthorizationRequest is under 300 bytes (openid 128 and
// organization_id 64 bytes of UTF-8, framing); health and reflection requests
// are smaller still.
inline constexpr int kDefaultMaxReceiveMessageBytes = 4 * 1024;
// gRPC's own default (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE, counted as RFC 7541
// does: name + value + 32 per entry): room for traceparent, x-request-id and a
// mesh's headers.
inline constexpr int kDefaultMaxMetadataBytes = 8 * 1024;

struct GrpcServerOptions {
  // Null: plain text.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Server-initiated HTTP/2 pings on idle connections, and how long to wait
  // for their ack before closing. Zero: gRPC's defaults (2h / 20s).
  absl::Duration keepalive_time = absl::ZeroDuration();
  absl::Duration keepalive_timeout = absl::ZeroDuration();
  // Client pings are accepted (also without calls) at most this often.
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // GOAWAY after this age (gRPC adds ±10% jitter); then `max_connection_age_grace`
  // for the calls still running. Zero: unlimited.
  absl::Duration max_connection_age = absl::ZeroDuration();
  absl::Duration max_connection_age_grace = absl::ZeroDuration();
  // Concurrent streams per connection; 0: gRPC's default.
  int max_concurrent_streams = 0;
  // Connections open at once (TcpListener::Options::max_connections); 0: no cap.
  int max_connections = 0;
  // Time from accept to the client's HTTP/2 SETTINGS (TLS handshake included);
  // zero: gRPC's default (2 minutes).
  absl::Duration handshake_timeout = absl::ZeroDuration();
  // Request messages and request metadata above these sizes are refused
  // (RESOURCE_EXHAUSTED) by gRPC's transport.
  int max_receive_message_bytes = kDefaultMaxReceiveMessageBytes;
  int max_metadata_bytes = kDefaultMaxMetadataBytes;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
};

class GrpcServer {
 public:
  // Listens on `address` (tcp_listener.h: host:port, [IPv6]:port; port 0
  // picks one). Errors name the address, e.g. kUnavailable "--listen:
  // 127.0.0.1:50051 is already in use". `service` must outlive the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const std::string& address, grpc::Service* service,
                                                           GrpcServerOptions options = {});

  int port() const { return port_; }
  grpc::Server* server() { return server_.get(); }

  // Flips health (overall and per service) to NOT_SERVING, for good (drain).
  void SetNotServing();

  // Sets health (overall and per service); ignored once SetNotServing() was called.
  void SetServing(bool serving);

  // Closes the listening socket(s) of port(): from now on new connections
  // are refused, while established connections keep being served, new calls
  // on them included, until Shutdown(). Connections the kernel had completed
  // but not yet handed over are accepted and served first, not reset
  // (TcpListener::Stop()). Open-source nginx has no active health checks: a
  // refused connect is what makes it pass the request to another replica
  // (before sending it) and skip this one. Returns the number of sockets
  // closed (0 when already closed).
  int StopListening();

  // Connections accepted and shed so far (tcp_listener.h).
  TcpListener::Stats ConnectionStats() const { return listener_->GetStats(); }

  // Closes the listening socket(s) (as StopListening()), stops accepting
  // calls and waits for in-flight ones until `grace` has passed; then cancels
  // the rest and returns when all are done.
  void Shutdown(absl::Duration grace);

  ~GrpcServer();

 private:
  GrpcServer() = default;
  // Destroyed in reverse: the accept loop stops before the acceptor and the server go.
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;
  std::unique_ptr<TcpListener> listener_;
  int port_ = 0;
  absl::Mutex health_mu_;
  bool draining_ ABSL_GUARDED_BY(health_mu_) = false;
};

}  // namespace palmgate

#endif  // PALMGATE_SERVER_GRPC_SERVER_H_
