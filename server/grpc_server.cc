#include "server/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <dirent.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace palmgate {

namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), std::numeric_limits<int>::max()));
}

// The local port of socket `fd` when it is listening; -1 otherwise.
int ListeningPort(int fd) {
  int listening = 0;
  socklen_t size = sizeof(listening);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || listening == 0) return -1;
  sockaddr_storage address{};
  socklen_t address_size = sizeof(address);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &address_size) != 0) return -1;
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const std::string& address, grpc::Service* service,
                                                               GrpcServerOptions options) {
  // Both are process-wide switches that must precede the builder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(),
                           &port);
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
  if (server == nullptr || port == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: cannot listen on ", address));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(server), port));
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

int GrpcServer::StopListening() {
  // gRPC owns its listeners (one per address family, SO_REUSEPORT clones)
  // and has no call to stop them without shutting the server down, which
  // would also refuse new calls on established connections. So, per
  // listening socket of our port:
  //  1. a socket filter that drops every packet: new SYNs go unanswered (the
  //     client retransmits in 1 s, and is then refused), and nothing new
  //     joins the accept queue;
  //  2. wait until gRPC's acceptor has taken what was queued (for a listening
  //     socket TCP_INFO's tcpi_unacked is the accept queue length): closing
  //     the listener would reset those connections, and a client may already
  //     have sent its request on one;
  //  3. shutdown(2): the kernel refuses connections from then on; gRPC's
  //     acceptor sees accept4() fail (it logs "Failed accept4" once), stops
  //     watching the socket, and closes it itself in Shutdown().
  std::vector<int> listeners;
  if (DIR* fds = ::opendir("/proc/self/fd"); fds != nullptr) {
    while (const dirent* entry = ::readdir(fds)) {
      int fd = -1;
      if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == ::dirfd(fds)) continue;
      if (ListeningPort(fd) == port_) listeners.push_back(fd);
    }
    ::closedir(fds);
  }
  sock_filter drop_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog program{};
  program.len = 1;
  program.filter = drop_all;
  for (int fd : listeners) ::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  for (int fd : listeners) {
    for (;;) {
      tcp_info info{};
      socklen_t size = sizeof(info);
      if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0 || info.tcpi_unacked == 0) break;
      if (absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(1));  // gRPC's acceptor runs on its own threads
    }
  }
  int stopped = 0;
  for (int fd : listeners) {
    if (::shutdown(fd, SHUT_RD) == 0) ++stopped;
  }
  return stopped;
}

void GrpcServer::Shutdown(absl::Duration grace) {
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

}  // namespace palmgate
