// Rolling restarts behind a real nginx: two real `palmgate` replicas in front
// of the real `palmgate-sandbox`, open-source nginx (grpc_pass, the shared
// deploy/nginx/palmgate.conf.template) balancing them on loopback, and a
// callback-API load generator keeping 32 RPCs in flight through nginx. Each
// replica in turn gets SIGTERM mid-load, must exit 0, and is restarted on the
// same port; the client must see no failed RPC, and each replica must have
// served traffic before and after its restart (its own /metrics).
//
// nginx comes from Debian (scripts/setup installs it); /usr/sbin/nginx, or
// $PALMGATE_NGINX. Its error log is printed when the test fails.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/http_test_client.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::IsOkAndHolds;
using ::palmgate::testing::ListeningProcess;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;

constexpr int kConcurrency = 32;
constexpr int kUsers = 16;
// Replicas must have served this many RPCs (counted by their own metrics) to count as "serving".
constexpr double kServedEnough = 100;
// The gateway's drain settings for this balancer (see deploy/nginx/palmgate.conf.template).
constexpr char kDrainDelay[] = "3s";

// Waits until `done()` holds, checking every 20 ms; false after `timeout`.
bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// A loopback port that was free a moment ago (bound to port 0, then released).
int PickPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(addr);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

bool Accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// nginx in the foreground (daemon off) with everything under `dir` (-p prefix).
class NginxProcess {
 public:
  ~NginxProcess() { Stop(); }

  // Renders the shared template for `listen_port` and the two replicas, starts nginx and
  // waits until it accepts connections.
  absl::Status Start(const std::string& dir, int listen_port, const std::string& replica_1,
                     const std::string& replica_2) {
    dir_ = dir;
    absl::StatusOr<std::string> tmpl = ReadFile(std::string(PALMGATE_SOURCE_DIR) + "/deploy/nginx/palmgate.conf.template");
    if (!tmpl.ok()) return tmpl.status();
    const std::string site = absl::StrReplaceAll(*tmpl, {{"${PALMGATE_LB_LISTEN}", absl::StrCat("127.0.0.1:", listen_port)},
                                                         {"${PALMGATE_REPLICA_1}", replica_1},
                                                         {"${PALMGATE_REPLICA_2}", replica_2}});
    if (absl::StrContains(site, "${")) return absl::InternalError("template variable left unreplaced");
    absl::Status written = WriteFile(dir + "/palmgate.conf", site, 0644);
    if (!written.ok()) return written;
    const std::string conf = absl::StrCat(
        ::geteuid() == 0 ? "user root;\n" : "", "daemon off;\nworker_processes 1;\npid ", dir, "/nginx.pid;\n",
        "error_log ", error_log(), " notice;\n", "events { worker_connections 1024; }\n", "http {\n",
        "  access_log ", dir, "/access.log;\n", "  client_body_temp_path ", dir, "/client_body;\n", "  include ", dir,
        "/palmgate.conf;\n", "}\n");
    written = WriteFile(dir + "/nginx.conf", conf, 0644);
    if (!written.ok()) return written;

    const char* binary = std::getenv("PALMGATE_NGINX");
    const std::string nginx = binary != nullptr ? binary : "/usr/sbin/nginx";
    if (::access(nginx.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(nginx + " missing: scripts/setup installs Debian's nginx");
    }
    const std::vector<std::string> args = {nginx, "-p", dir, "-c", dir + "/nginx.conf", "-e", error_log()};
    pid_ = ::fork();
    if (pid_ < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const bool up = WaitUntil(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return true;  // exited: reported below
          }
          return Accepts(listen_port);
        },
        absl::Seconds(20));
    if (pid_ < 0) return absl::InternalError("nginx exited at start-up: " + ErrorLog());
    if (!up) return absl::DeadlineExceededError("nginx did not accept connections: " + ErrorLog());
    return absl::OkStatus();
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  std::string error_log() const { return dir_ + "/error.log"; }
  std::string ErrorLog() const {
    absl::StatusOr<std::string> log = ReadFile(error_log());
    return log.ok() ? *log : "(no error log)";
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

// Keeps `concurrency` GetAuthorization calls in flight (callback API; each
// completion starts the next) until Stop(); counts the outcomes.
class LoadGenerator {
 public:
  LoadGenerator(std::shared_ptr<grpc::Channel> channel, int concurrency)
      : stub_(palmgate::v1::PalmAuthorization::NewStub(std::move(channel))), slots_(concurrency) {}

  void Start() {
    for (size_t i = 0; i < slots_.size(); ++i) Issue(i);
  }

  // Stops issuing and waits for the calls in flight.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    mu_.Await(absl::Condition(+[](int* n) { return *n == 0; }, &in_flight_));
  }

  int64_t ok() {
    absl::MutexLock lock(&mu_);
    return ok_;
  }
  int64_t failed() {
    absl::MutexLock lock(&mu_);
    return failed_;
  }
  std::vector<std::string> failures() {
    absl::MutexLock lock(&mu_);
    return failures_;
  }

 private:
  struct Slot {
    std::unique_ptr<grpc::ClientContext> ctx;
    palmgate::v1::GetAuthorizationRequest request;
    palmgate::v1::Authorization response;
    int64_t sequence = 0;
  };

  void Issue(size_t i) {
    Slot& slot = slots_[i];
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      ++in_flight_;
    }
    slot.ctx = std::make_unique<grpc::ClientContext>();
    slot.ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    slot.request.set_openid(absl::StrCat("o-load-", (i + static_cast<size_t>(slot.sequence++)) % kUsers));
    slot.request.set_organization_id("1004");
    slot.response.Clear();
    stub_->async()->GetAuthorization(slot.ctx.get(), &slot.request, &slot.response,
                                     [this, i](grpc::Status status) { Done(i, std::move(status)); });
  }

  void Done(size_t i, grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (status.ok() && slots_[i].response.state() == palmgate::v1::AUTHORIZATION_STATE_ON) {
        ++ok_;
      } else {
        ++failed_;
        if (failures_.size() < 20) {
          failures_.push_back(absl::StrCat(absl::FormatTime(absl::Now()), " code ", status.error_code(), ": ",
                                           status.error_message(), " state ", slots_[i].response.state()));
        }
      }
    }
    Issue(i);
  }

  std::unique_ptr<palmgate::v1::PalmAuthorization::Stub> stub_;
  std::vector<Slot> slots_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t ok_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
};

// One gateway replica on a fixed port: started, stopped and restarted there.
struct Replica {
  Replica(std::string name, int port) : name(std::move(name)), port(port) {}

  std::string name;
  int port = 0;
  int generation = 0;
  std::unique_ptr<ListeningProcess> process;
  std::string metrics_address;
  std::string log_path;

  std::string address() const { return absl::StrCat("127.0.0.1:", port); }
};

class NginxDrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SandboxProcessOptions options;
    options.tls = true;
    options.threads = 4;
    std::string users;
    for (int i = 0; i < kUsers; ++i) {
      absl::StrAppend(&users, i == 0 ? "" : ",", R"({"openid":"o-load-)", i,
                      R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"})");
    }
    options.seed_json = absl::StrCat(R"({"users":[)", users, "]}");
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    sandbox_ = *std::move(sandbox);
    auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    env_ = testing::GatewayEnvironmentFor(*sandbox_, *merchant);
    auto dir = testing::MakeTempDir("palmgate-nginx");
    ASSERT_THAT(dir, IsOk());
    dir_ = *dir;
  }

  void StartReplica(Replica& r) {
    ++r.generation;
    r.log_path = absl::StrCat(dir_, "/", r.name, "-", r.generation, ".log");
    auto process = ListeningProcess::Start(
        {PALMGATE_GATEWAY_BINARY, "--listen=" + r.address(), "--metrics_listen=127.0.0.1:0",
         "--drain_refuse_connections", absl::StrCat("--drain_delay=", kDrainDelay), "--shutdown_grace=10s"},
        absl::Seconds(30), r.log_path, env_);
    ASSERT_THAT(process, IsOk());
    r.process = *std::move(process);
    r.metrics_address.clear();
    auto log = ReadFile(r.log_path);
    ASSERT_THAT(log, IsOk());
    for (absl::string_view line : absl::StrSplit(*log, '\n', absl::SkipEmpty())) {
      nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
      if (j.is_object() && j.value("message", "") == "metrics serving") r.metrics_address = j.value("address", "");
    }
    ASSERT_FALSE(r.metrics_address.empty()) << "no 'metrics serving' log line in " << r.log_path;
  }

  // GetAuthorization RPCs the replica's current process answered OK (its /metrics).
  static double Served(const Replica& r) {
    testing::TestHttpRequest request;
    request.target = "/metrics";
    auto scraped = testing::HttpFetch("http://" + r.metrics_address, request);
    if (!scraped.ok() || scraped->status != 200) return -1;
    const std::string series =
        "palmgate_rpc_requests_total{code=\"OK\",method=\"/palmgate.v1.PalmAuthorization/GetAuthorization\"} ";
    for (absl::string_view line : absl::StrSplit(scraped->body, '\n')) {
      if (absl::StartsWith(line, series)) return std::stod(std::string(line.substr(series.size())));
    }
    return 0;
  }

  // SIGTERM mid-load, exit 0, restart on the same port, serving again. Returns what
  // the stopped process had served.
  double Roll(Replica& r) {
    const double served = Served(r);
    r.process->Signal(SIGTERM);
    EXPECT_THAT(r.process->Wait(), IsOkAndHolds(0)) << r.name << " did not drain cleanly";
    r.process.reset();
    StartReplica(r);
    EXPECT_TRUE(WaitUntil([&] { return Served(r) >= kServedEnough; }, absl::Seconds(30)))
        << r.name << " restarted but served no traffic through nginx";
    return served;
  }

  std::unique_ptr<SandboxProcess> sandbox_;
  std::vector<std::string> env_;
  std::string dir_;
};

TEST_F(NginxDrainTest, RollingRestartBehindNginxFailsNoRpc) {
  Replica a("replica-a", PickPort());
  Replica b("replica-b", PickPort());
  ASSERT_TRUE(a.port > 0 && b.port > 0 && a.port != b.port);
  StartReplica(a);
  StartReplica(b);
  NginxProcess nginx;
  const int lb_port = PickPort();
  ASSERT_THAT(nginx.Start(dir_, lb_port, a.address(), b.address()), IsOk());

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", lb_port), grpc::InsecureChannelCredentials());
  LoadGenerator load(channel, kConcurrency);
  load.Start();
  ASSERT_TRUE(WaitUntil([&] { return Served(a) >= kServedEnough && Served(b) >= kServedEnough; }, absl::Seconds(60)))
      << "nginx did not spread the load over both replicas\n" << nginx.ErrorLog();

  const double a_before = Roll(a);
  const double b_before = Roll(b);
  const double a_after = Served(a);
  const double b_after = Served(b);
  load.Stop();
  channel.reset();

  const int64_t ok = load.ok();
  const int64_t failed = load.failed();
  std::cout << "[ figures  ] RPCs " << ok + failed << " (failed " << failed << "), rolls 2, served before/after restart: "
            << a.name << " " << a_before << "/" << a_after << ", " << b.name << " " << b_before << "/" << b_after
            << std::endl;
  EXPECT_EQ(failed, 0) << "failed RPCs:\n"
                       << absl::StrJoin(load.failures(), "\n") << "\nnginx error log:\n"
                       << nginx.ErrorLog();
  EXPECT_GE(a_before, kServedEnough);
  EXPECT_GE(b_before, kServedEnough);
  EXPECT_GE(a_after, kServedEnough);
  EXPECT_GE(b_after, kServedEnough);
  EXPECT_THAT(a.process->Stop(), IsOkAndHolds(0));
  EXPECT_THAT(b.process->Stop(), IsOkAndHolds(0));
  nginx.Stop();
}

}  // namespace
}  // namespace palmgate
