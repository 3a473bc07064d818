#include "server/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace palmgate {

namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), std::numeric_limits<int>::max()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const std::string& address, grpc::Service* service,
                                                               GrpcServerOptions options) {
  // Bound before the server is built: a port in use fails here, with nothing started.
  TcpListener::Options listener_options;
  listener_options.max_connections = options.max_connections;
  absl::StatusOr<std::unique_ptr<TcpListener>> listener = TcpListener::Bind(address, listener_options);
  if (!listener.ok()) {
    return absl::Status(listener.status().code(), absl::StrCat("--listen: ", listener.status().message()));
  }
  // Both are process-wide switches that must precede the builder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor =
      builder.experimental().AddExternalConnectionAcceptor(
          grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
          options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials());
  if (options.handshake_timeout > absl::ZeroDuration()) {
    // chttp2_server.cc: the deadline of the handshakers (TLS) and then, on the
    // transport, of the client's first SETTINGS frame (after its preface).
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, std::max(1, Millis(options.handshake_timeout)));
  }
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, options.max_metadata_bytes);
  if (options.keepalive_time > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.keepalive_time));
  }
  if (options.keepalive_timeout > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options.keepalive_timeout));
  }
  // Mesh sidecars and clients may ping idle connections; accept that instead of answering too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Millis(options.min_client_ping_interval));
  if (options.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, Millis(options.max_connection_age));
  }
  if (options.max_connection_age_grace > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, Millis(options.max_connection_age_grace));
  }
  if (options.max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  }
  if (!options.interceptors.empty()) builder.experimental().SetInterceptorCreators(std::move(options.interceptors));
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return absl::InternalError(absl::StrCat("--listen: ", address, ": the gRPC server did not start"));
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);

  std::unique_ptr<GrpcServer> out(new GrpcServer());
  out->server_ = std::move(server);
  out->acceptor_ = std::move(acceptor);
  out->listener_ = *std::move(listener);
  out->port_ = out->listener_->port();
  grpc::experimental::ExternalConnectionAcceptor* handoff = out->acceptor_.get();
  out->listener_->Start([handoff](int listener_fd, int fd) {
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters connection;
    connection.listener_fd = listener_fd;
    connection.fd = fd;  // gRPC owns it from here (and closes it, also when shut down)
    handoff->HandleNewConnection(&connection);
  });
  return out;
}

GrpcServer::~GrpcServer() {
  // The accept loop must not hand a connection to an acceptor being destroyed.
  if (listener_ != nullptr) listener_->Stop();
}

void GrpcServer::SetNotServing() {
  absl::MutexLock lock(&health_mu_);
  draining_ = true;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(kServiceName, false);
  health->SetServingStatus(false);
}

void GrpcServer::SetServing(bool serving) {
  absl::MutexLock lock(&health_mu_);
  if (draining_) return;  // draining is final
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(kServiceName, serving);
  health->SetServingStatus(serving);
}

int GrpcServer::StopListening() { return listener_->Stop(); }

void GrpcServer::Shutdown(absl::Duration grace) {
  listener_->Stop();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

}  // namespace palmgate
