#include "server/tcp_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/logging.h"

namespace palmgate {
namespace {

// Connections accepted per listener and wake-up, so that other listeners and Stop() get their turn.
constexpr int kAcceptBatch = 64;
// Pause of the accept loop when no descriptor can be freed at all (EMFILE without the reserve, ENOBUFS...).
constexpr absl::Duration kBackoff = absl::Milliseconds(10);
// While the cap is reached, connections are checked at most this often (see the header).
constexpr absl::Duration kRecountInterval = absl::Milliseconds(10);
// At most one "connections shed" log line per this interval (with the counts since the last one).
constexpr absl::Duration kShedLogInterval = absl::Seconds(10);

struct Address {
  sockaddr_storage storage{};
  socklen_t size = 0;
  bool dual_stack = false;  // [::] serving IPv4 too

  int family() const { return storage.ss_family; }
  void set_port(int port) {
    if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(static_cast<uint16_t>(port));
    if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(static_cast<uint16_t>(port));
  }
  bool IsWildcard() const {
    if (family() == AF_INET) return reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (family() == AF_INET6) {
      return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
    }
    return false;
  }
  bool operator==(const Address& other) const {
    return size == other.size && std::memcmp(&storage, &other.storage, size) == 0;
  }
};

Address Wildcard(int family, int port, bool dual_stack) {
  Address a;
  if (family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_any;
    a.size = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    a.size = sizeof(sockaddr_in);
  }
  a.set_port(port);
  a.dual_stack = dual_stack;
  return a;
}

int BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t size = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &size) != 0) return -1;
  if (bound.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  if (bound.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  return -1;
}

// Parses "host:port" / "[v6]:port" and resolves the host; a wildcard becomes
// the dual-stack [::] (with 0.0.0.0 as the fallback, second).
absl::StatusOr<std::vector<Address>> Resolve(const std::string& address, int* port) {
  std::string host;
  std::string port_text;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat(address, ": not host:port or [IPv6]:port"));
    }
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat(address, ": not host:port (an IPv6 address goes in brackets: [::1]:50051)"));
    }
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat(address, ": no host (0.0.0.0 listens on every address)"));
  int value = -1;
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(port_text, &value) || value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(address, ": the port must be a number from 0 to 65535"));
  }
  *port = value;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(address, ": cannot resolve \"", host, "\": ", ::gai_strerror(rc)));
  }
  std::vector<Address> out;
  bool wildcard = false;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.size = static_cast<socklen_t>(ai->ai_addrlen);
    wildcard = wildcard || a.IsWildcard();
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  ::freeaddrinfo(found);
  if (wildcard) return std::vector<Address>{Wildcard(AF_INET6, value, true), Wildcard(AF_INET, value, false)};
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(address, ": \"", host, "\" has no IP address"));
  return out;
}

// A listening socket on `a` (SO_REUSEADDR, so that a restart binds while old
// connections are in TIME_WAIT; Linux still refuses a second listener). -errno on failure.
int OpenListener(const Address& a, int backlog) {
  const int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const int one = 1;
  const int v6only = a.dual_stack ? 0 : 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      // Inherited by accepted sockets: gRPC writes small frames.
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
      (a.family() == AF_INET6 && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) ||
      ::bind(fd, reinterpret_cast<const sockaddr*>(&a.storage), a.size) != 0 || ::listen(fd, backlog) != 0) {
    const int error = errno;
    ::close(fd);
    return -error;
  }
  return fd;
}

absl::Status BindError(const std::string& address, int error) {
  switch (error) {
    case EADDRINUSE:
      return absl::UnavailableError(absl::StrCat(address, " is already in use"));
    case EACCES:
      return absl::PermissionDeniedError(
          absl::StrCat(address, ": permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"));
    case EADDRNOTAVAIL:
      return absl::InvalidArgumentError(absl::StrCat(address, ": not an address of this host"));
    default:
      return absl::ErrnoToStatus(error, absl::StrCat("cannot listen on ", address));
  }
}

// Closes `fd` with a reset (SO_LINGER 0): the peer learns at once, no TIME_WAIT is kept here.
void Reset(int fd) {
  const linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  ::close(fd);
}

bool IsTransientAcceptError(int error) {
  // accept(2): pending network errors of the new connection are reported by
  // accept itself and are to be treated like EAGAIN, i.e. retried.
  switch (error) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:  // a firewall rule
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpListener>> TcpListener::Bind(const std::string& address, Options options) {
  int port = 0;
  absl::StatusOr<std::vector<Address>> resolved = Resolve(address, &port);
  if (!resolved.ok()) return resolved.status();
  const bool wildcard = resolved->front().dual_stack;
  // Port 0 on several addresses: the first picks, the others must get the same; retried when one is taken.
  for (int attempt = 0;; ++attempt) {
    std::vector<int> fds;
    int bound_port = port;
    int failure = 0;
    for (Address a : *resolved) {
      if (wildcard && !fds.empty()) break;  // the dual-stack socket serves IPv4 too
      a.set_port(bound_port);
      const int fd = OpenListener(a, options.backlog);
      if (fd < 0) {
        // An address family this host lacks (::1 of "localhost" without IPv6, [::] there): skipped
        // while another address is served. Anything else fails the whole address.
        if (-fd == EAFNOSUPPORT || -fd == EADDRNOTAVAIL) {
          if (failure == 0) failure = -fd;
          continue;
        }
        failure = -fd;
        break;
      }
      fds.push_back(fd);
      if (bound_port == 0) bound_port = BoundPort(fd);
    }
    const bool complete = !fds.empty() && (failure == 0 || failure == EAFNOSUPPORT || failure == EADDRNOTAVAIL);
    if (complete) {
      // Stop() wakes the accept loop through it: without it Stop() could not return.
      const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (wake_fd < 0) {
        const int error = errno;
        for (int fd : fds) ::close(fd);
        return absl::ErrnoToStatus(error, "eventfd");
      }
      return std::unique_ptr<TcpListener>(new TcpListener(std::move(fds), bound_port, wake_fd, options));
    }
    for (int fd : fds) ::close(fd);
    if (failure == EADDRINUSE && port == 0 && attempt < 10) continue;
    return BindError(address, failure);
  }
}

TcpListener::TcpListener(std::vector<int> fds, int port, int wake_fd, Options options)
    : fds_(std::move(fds)), port_(port), options_(options), wake_fd_(wake_fd) {
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // else reopened by the accept loop
}

TcpListener::~TcpListener() {
  Stop();
  ::close(wake_fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

void TcpListener::Start(Handler handler) {
  handler_ = std::move(handler);
  thread_ = std::thread([this] { AcceptLoop(); });
}

int TcpListener::Stop() {
  if (stopped_) return 0;
  stopped_ = true;
  if (!thread_.joinable()) {  // never started: nothing to hand queued connections to
    const int closed = static_cast<int>(fds_.size());
    for (int fd : fds_) ::close(fd);
    fds_.clear();
    return closed;
  }
  stopping_.store(true);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  return closed_;
}

void TcpListener::AcceptLoop() {
  std::vector<pollfd> polled;
  bool backoff = false;
  while (!stopping_.load()) {
    polled.clear();
    polled.push_back({wake_fd_, POLLIN, 0});
    if (!backoff) {
      for (int fd : fds_) polled.push_back({fd, POLLIN, 0});
    }
    int timeout_ms = -1;
    if (backoff) timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(kBackoff));
    if (unlogged_cap_ + unlogged_limit_ > 0) {
      const int64_t flush_ms = absl::ToInt64Milliseconds(kShedLogInterval);
      timeout_ms = timeout_ms < 0 ? static_cast<int>(flush_ms) : timeout_ms;
    }
    backoff = false;
    const int rc = ::poll(polled.data(), polled.size(), timeout_ms);
    if (rc < 0 && errno != EINTR) backoff = true;
    if (stopping_.load()) break;
    if (rc > 0) {
      for (size_t i = 1; i < polled.size(); ++i) {
        if (polled[i].revents != 0 && !AcceptReady(polled[i].fd)) backoff = true;
      }
    }
    MaybeLogShed(/*force=*/false);
  }
  closed_ = DrainAndClose();
}

bool TcpListener::AcceptReady(int listener) {
  for (int i = 0; i < kAcceptBatch; ++i) {
    if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Take(listener, fd);
      continue;
    }
    const int error = errno;
    if (error == EAGAIN || error == EWOULDBLOCK) return true;
    if (IsTransientAcceptError(error)) continue;
    if (error == EMFILE || error == ENFILE) {
      if (!ShedAtDescriptorLimit(listener)) return false;
      continue;
    }
    return false;  // ENOBUFS, ENOMEM, or a broken listener: back off, try again
  }
  return true;
}

bool TcpListener::ShedAtDescriptorLimit(int listener) {
  if (reserve_fd_ < 0) return false;
  ::close(reserve_fd_);
  reserve_fd_ = -1;
  const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  const int error = errno;
  if (fd >= 0) {
    CountShed(/*at_cap=*/false);  // counted before the peer can see the reset
    Reset(fd);
  }
  // Fails when another thread took the freed number; AcceptReady tries again.
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd >= 0 || error == EAGAIN || error == EWOULDBLOCK || IsTransientAcceptError(error);
}

void TcpListener::Take(int listener, int fd) {
  struct stat st {};
  const bool known = ::fstat(fd, &st) == 0;
  bool at_cap = false;
  {
    absl::MutexLock lock(&mu_);
    const size_t cap = static_cast<size_t>(options_.max_connections);
    if (cap > 0 && handed_.size() >= cap) {
      const absl::Time now = absl::Now();
      if (now >= next_recount_) RecountLocked();
      at_cap = handed_.size() >= cap;
      if (at_cap) next_recount_ = now + kRecountInterval;
    }
    // The number was free, so an entry under it (if any) was a closed connection.
    if (!at_cap && known) handed_[fd] = st.st_ino;
  }
  if (at_cap) {
    CountShed(/*at_cap=*/true);  // counted before the peer can see the reset
    Reset(fd);
    return;
  }
  accepted_.fetch_add(1, std::memory_order_relaxed);
  handler_(listener, fd);
}

int TcpListener::RecountLocked() {
  for (auto it = handed_.begin(); it != handed_.end();) {
    struct stat st {};
    if (::fstat(it->first, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != it->second) {
      it = handed_.erase(it);
    } else {
      ++it;
    }
  }
  return static_cast<int>(handed_.size());
}

int TcpListener::LiveConnections() {
  absl::MutexLock lock(&mu_);
  return RecountLocked();
}

TcpListener::Stats TcpListener::GetStats() const {
  Stats s;
  s.accepted = accepted_.load(std::memory_order_relaxed);
  s.shed_at_cap = shed_at_cap_.load(std::memory_order_relaxed);
  s.shed_at_descriptor_limit = shed_at_limit_.load(std::memory_order_relaxed);
  return s;
}

void TcpListener::CountShed(bool at_cap) {
  (at_cap ? shed_at_cap_ : shed_at_limit_).fetch_add(1, std::memory_order_relaxed);
  ++(at_cap ? unlogged_cap_ : unlogged_limit_);
  MaybeLogShed(/*force=*/false);
}

void TcpListener::MaybeLogShed(bool force) {
  if (unlogged_cap_ + unlogged_limit_ == 0) return;
  const absl::Time now = absl::Now();
  if (!force && now - last_shed_log_ < kShedLogInterval) return;
  last_shed_log_ = now;
  Log(LogLevel::kWarning, "connections shed",
      LogFields()
          .Add("at_max_connections", unlogged_cap_)
          .Add("at_open_files_limit", unlogged_limit_)
          .Add("max_connections", options_.max_connections)
          .Add("port", port_));
  unlogged_cap_ = 0;
  unlogged_limit_ = 0;
}

int TcpListener::DrainAndClose() {
  // Nothing new joins the accept queues from here on (see Stop()).
  sock_filter drop_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog program{};
  program.len = 1;
  program.filter = drop_all;
  for (int fd : fds_) ::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
  for (int fd : fds_) {
    // Bounded: the queue only shrinks now. A failure that persists (ENOBUFS)
    // leaves the rest to be reset by close().
    for (int failures = 0; failures < 100;) {
      if (AcceptReady(fd)) {
        // Done when the queue is empty (the next accept would block).
        pollfd p = {fd, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
      } else {
        ++failures;
        if (reserve_fd_ < 0) absl::SleepFor(kBackoff);  // a descriptor may free up
      }
    }
  }
  const int closed = static_cast<int>(fds_.size());
  for (int fd : fds_) ::close(fd);
  fds_.clear();
  MaybeLogShed(/*force=*/true);
  return closed;
}

}  // namespace palmgate
