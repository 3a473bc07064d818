// TcpListener with real sockets on loopback: the address forms --listen
// accepts, a port in use (also one held by an SO_REUSEPORT listener, as gRPC's
// own listener was), the drain that hands over what the kernel had queued,
// and the connection cap.
#include "server/tcp_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;

// Waits (bounded) until `condition` holds; polls every 2 ms.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// A connected socket to `ip`:`port`; -errno when the connect fails.
int Connect(const std::string& ip, int port) {
  sockaddr_storage storage{};
  socklen_t size = 0;
  if (ip.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) != 1) return -EINVAL;
    size = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, ip.c_str(), &in->sin_addr) != 1) return -EINVAL;
    size = sizeof(sockaddr_in);
  }
  const int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&storage), size) != 0) {
    const int error = errno;
    ::close(fd);
    return -error;
  }
  return fd;
}

bool HasIpv6Loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

// True when the peer closed or reset `fd` within `timeout`.
bool ClosedByPeer(int fd, absl::Duration timeout) {
  pollfd p = {fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) return false;
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Collects what the listener hands over.
class Collector {
 public:
  TcpListener::Handler handler() {
    return [this](int, int fd) {
      absl::MutexLock lock(&mu_);
      fds_.push_back(fd);
    };
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return fds_.size();
  }
  int at(size_t i) {
    absl::MutexLock lock(&mu_);
    return fds_[i];
  }
  bool WaitForSize(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return fds_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // Closes the `i`th descriptor, as its owner would.
  void CloseAt(size_t i) {
    absl::MutexLock lock(&mu_);
    ::close(fds_[i]);
    fds_[i] = -1;
  }
  ~Collector() {
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

 private:
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
};

TEST(TcpListenerTest, ListensOnEveryAddressFormListenAccepts) {
  struct Row {
    std::string address;
    std::vector<std::string> reachable_on;
    bool needs_ipv6;
  };
  const bool ipv6 = HasIpv6Loopback();
  const std::vector<Row> rows = {
      {"127.0.0.1:0", {"127.0.0.1"}, false},
      {"localhost:0", {"127.0.0.1"}, false},
      // A wildcard is one dual-stack socket: IPv4 and IPv6, as gRPC's listener did.
      {"0.0.0.0:0", ipv6 ? std::vector<std::string>{"127.0.0.1", "::1"} : std::vector<std::string>{"127.0.0.1"}, false},
      {"[::]:0", {"127.0.0.1", "::1"}, true},
      {"[::1]:0", {"::1"}, true},
  };
  for (const Row& row : rows) {
    if (row.needs_ipv6 && !ipv6) continue;
    absl::StatusOr<std::unique_ptr<TcpListener>> listener = TcpListener::Bind(row.address, {});
    ASSERT_THAT(listener, IsOk()) << row.address;
    Collector collected;
    (*listener)->Start(collected.handler());
    ASSERT_GT((*listener)->port(), 0) << row.address;
    for (const std::string& ip : row.reachable_on) {
      const int fd = Connect(ip, (*listener)->port());
      EXPECT_GE(fd, 0) << row.address << " via " << ip << ": " << std::strerror(-fd);
      if (fd >= 0) ::close(fd);
    }
    EXPECT_TRUE(collected.WaitForSize(row.reachable_on.size(), absl::Seconds(10))) << row.address;
    // "localhost" is one socket per address it resolves to (127.0.0.1, and ::1 where /etc/hosts says so).
    EXPECT_GE((*listener)->Stop(), 1) << row.address;
  }
}

TEST(TcpListenerTest, RejectsWhatIsNotHostColonPort) {
  for (const char* address : {"", "50051", "127.0.0.1", "::1:50051", "[::1]50051", "[::1", ":50051",
                              "127.0.0.1:65536", "127.0.0.1:http", "127.0.0.1:-1"}) {
    EXPECT_THAT(TcpListener::Bind(address, {}), StatusIs(absl::StatusCode::kInvalidArgument)) << address;
  }
}

TEST(TcpListenerTest, APortInUseFailsNamingTheAddress) {
  absl::StatusOr<std::unique_ptr<TcpListener>> first = TcpListener::Bind("127.0.0.1:0", {});
  ASSERT_THAT(first, IsOk());
  const int port = (*first)->port();
  for (const std::string& address : {absl::StrCat("127.0.0.1:", port), absl::StrCat("0.0.0.0:", port),
                                     absl::StrCat("localhost:", port)}) {
    EXPECT_THAT(TcpListener::Bind(address, {}),
                StatusIs(absl::StatusCode::kUnavailable, absl::StrCat(address, " is already in use")));
  }

  // A listener with SO_REUSEPORT (gRPC 1.51's own sets it) does not let us share its port either.
  const int other = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(other, 0);
  const int one = 1;
  ASSERT_EQ(::setsockopt(other, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(other, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(other, 16), 0);
  socklen_t size = sizeof(a);
  ASSERT_EQ(::getsockname(other, reinterpret_cast<sockaddr*>(&a), &size), 0);
  const std::string taken = absl::StrCat("127.0.0.1:", ntohs(a.sin_port));
  EXPECT_THAT(TcpListener::Bind(taken, {}), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("already in use")));
  ::close(other);
}

TEST(TcpListenerTest, StopHandsOverTheQueuedConnectionsThenRefuses) {
  absl::StatusOr<std::unique_ptr<TcpListener>> listener = TcpListener::Bind("127.0.0.1:0", {});
  ASSERT_THAT(listener, IsOk());
  const int port = (*listener)->port();
  // Completed by the kernel, with a request written, before anything accepts them.
  constexpr int kQueued = 20;
  std::vector<int> clients;
  for (int i = 0; i < kQueued; ++i) {
    const int fd = Connect("127.0.0.1", port);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, "req", 3, MSG_NOSIGNAL), 3);
    clients.push_back(fd);
  }
  Collector collected;
  (*listener)->Start(collected.handler());
  EXPECT_EQ((*listener)->Stop(), 1);
  ASSERT_EQ(collected.size(), static_cast<size_t>(kQueued));  // none left behind to be reset
  for (int i = 0; i < kQueued; ++i) {
    char buf[3];
    EXPECT_EQ(::recv(collected.at(i), buf, sizeof(buf), MSG_WAITALL), 3) << i;
  }
  for (int fd : clients) {
    EXPECT_FALSE(ClosedByPeer(fd, absl::ZeroDuration()));
    ::close(fd);
  }
  EXPECT_EQ(Connect("127.0.0.1", port), -ECONNREFUSED);
  EXPECT_EQ((*listener)->GetStats().accepted, kQueued);
}

TEST(TcpListenerTest, ConnectionsBeyondTheCapAreResetUntilOneCloses) {
  TcpListener::Options options;
  options.max_connections = 2;
  absl::StatusOr<std::unique_ptr<TcpListener>> listener = TcpListener::Bind("127.0.0.1:0", options);
  ASSERT_THAT(listener, IsOk());
  Collector collected;
  (*listener)->Start(collected.handler());
  const int port = (*listener)->port();
  std::vector<int> clients;
  for (int i = 0; i < 2; ++i) clients.push_back(Connect("127.0.0.1", port));
  ASSERT_TRUE(collected.WaitForSize(2, absl::Seconds(10)));

  const int third = Connect("127.0.0.1", port);
  ASSERT_GE(third, 0);  // the kernel completes it; the listener resets it
  EXPECT_TRUE(ClosedByPeer(third, absl::Seconds(10)));
  ::close(third);
  EXPECT_EQ(collected.size(), 2u);
  EXPECT_EQ((*listener)->GetStats().shed_at_cap, 1);
  EXPECT_EQ((*listener)->LiveConnections(), 2);

  // The owner (gRPC, in the gateway) closes one: a new connection gets its place.
  collected.CloseAt(0);
  EXPECT_EQ((*listener)->LiveConnections(), 1);
  bool served = WaitFor(
      [&] {
        const int fd = Connect("127.0.0.1", port);
        if (fd < 0) return false;
        clients.push_back(fd);
        return collected.WaitForSize(3, absl::Milliseconds(50));
      },
      absl::Seconds(10));
  EXPECT_TRUE(served);
  EXPECT_EQ((*listener)->LiveConnections(), 2);
  (*listener)->Stop();
  for (int fd : clients) ::close(fd);
}

}  // namespace
}  // namespace palmgate
