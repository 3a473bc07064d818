// The real `palmgate` binary as operators run it: configured through
// PALMGATE_* environment variables, logging one line per RPC without secrets
// or clear openids, and draining on SIGTERM (health NOT_SERVING, in-flight
// RPCs finish, exit 0).
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "server/crypto/rsa.h"
#include "tests/testing/child_process.h"
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
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOpenid[] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

class GatewayProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SandboxProcessOptions options;
    options.tls = true;
    options.faults = true;
    options.seed_json = absl::StrCat(R"({"users":[{"openid":")", kOpenid,
                                     R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
        {"openid":"o-slow","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF","fault":"latency=1500"}]})");
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    sandbox_ = *std::move(sandbox);
    auto dir = testing::MakeTempDir("palmgate-gateway");
    ASSERT_THAT(dir, IsOk());
    dir_ = *dir;
  }

  // Starts the gateway configured by environment variables only.
  void StartGateway(const std::vector<std::string>& flags = {}) {
    auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    std::vector<std::string> env = testing::GatewayEnvironmentFor(*sandbox_, *merchant);
    env.push_back("PALMGATE_MERCHANT_CERTIFICATE=" + sandbox_->keys_dir() + "/apiclient_cert.pem");
    std::vector<std::string> args = {PALMGATE_GATEWAY_BINARY};
    args.insert(args.end(), flags.begin(), flags.end());
    auto gateway = ListeningProcess::Start(args, absl::Seconds(30), log_path(), env);
    ASSERT_THAT(gateway, IsOk());
    gateway_ = *std::move(gateway);
    channel_ = grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials());
  }

  std::string log_path() const { return dir_ + "/palmgate.log"; }

  grpc::Status Call(const std::string& openid, palmgate::v1::Authorization* out) {
    auto stub = palmgate::v1::PalmAuthorization::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    palmgate::v1::GetAuthorizationRequest req;
    req.set_openid(openid);
    req.set_organization_id("1004");
    return stub->GetAuthorization(&ctx, req, out);
  }

  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health() {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&ctx, req, &resp);
    if (!s.ok()) return absl::UnavailableError(s.error_message());
    return resp.status();
  }

  // Number of requests the sandbox has received for `openid` so far.
  int SandboxSaw(const std::string& openid) {
    testing::TestHttpRequest request;
    request.target = "/_sandbox/requests";
    auto r = testing::HttpFetch(sandbox_->base_url(), request, sandbox_->ca_cert_path());
    EXPECT_THAT(r, IsOk());
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    const nlohmann::json& list = j.is_array() ? j : j["requests"];
    int n = 0;
    for (const auto& rec : list) n += rec.value("openid", "") == openid;
    return n;
  }

  std::unique_ptr<SandboxProcess> sandbox_;
  std::unique_ptr<ListeningProcess> gateway_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string dir_;
};

TEST_F(GatewayProcessTest, ServesAVerifiedAnswerConfiguredByEnvironment) {
  StartGateway();
  EXPECT_THAT(Health(), IsOkAndHolds(grpc::health::v1::HealthCheckResponse::SERVING));
  palmgate::v1::Authorization a;
  grpc::Status s = Call(kOpenid, &a);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_ON);
}

TEST_F(GatewayProcessTest, LogsOneLinePerRpcWithoutSecretsOrOpenids) {
  StartGateway();
  palmgate::v1::Authorization a;
  ASSERT_TRUE(Call(kOpenid, &a).ok());
  EXPECT_FALSE(Call("", &a).ok());
  EXPECT_FALSE(Call("o-missing-" + std::string(130, 'x'), &a).ok());
  channel_.reset();  // an idle C++ client answers the server's GOAWAY only on its 5 s backup poll
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
  auto log = ReadFile(log_path());
  ASSERT_THAT(log, IsOk());
  int rpc_lines = 0;
  for (absl::string_view line : absl::StrSplit(*log, '\n')) {
    // One JSON object per line (ops_process_test checks the fields in detail).
    if (absl::StrContains(line, R"("message":"rpc","method":"/palmgate.v1.PalmAuthorization/GetAuthorization")")) {
      ++rpc_lines;
    }
  }
  EXPECT_EQ(rpc_lines, 3);
  EXPECT_THAT(*log, HasSubstr(R"("code":0,)"));
  EXPECT_THAT(*log, HasSubstr(R"("code":3,)"));
  EXPECT_THAT(*log, HasSubstr(R"("openid":"sha256:)"));
  EXPECT_THAT(*log, HasSubstr(R"("wechatpay_request_id":")"));
  EXPECT_THAT(*log, Not(HasSubstr(kOpenid)));
  EXPECT_THAT(*log, Not(HasSubstr("o-missing-")));
  EXPECT_THAT(*log, Not(HasSubstr("WECHATPAY2-")));
  EXPECT_THAT(*log, Not(HasSubstr("signature=")));
  EXPECT_THAT(*log, Not(HasSubstr("PRIVATE KEY")));
  auto key = ReadFile(sandbox_->keys_dir() + "/apiclient_key.pem");
  ASSERT_THAT(key, IsOk());
  // No line of the private key's Base64 body appears.
  for (absl::string_view line : absl::StrSplit(*key, '\n')) {
    if (line.size() > 20 && !absl::StartsWith(line, "-----")) {
      EXPECT_THAT(*log, Not(HasSubstr(std::string(line))));
    }
  }
}

TEST_F(GatewayProcessTest, SigtermDrainsInFlightRpcsAndExitsZero) {
  StartGateway({"--drain_delay=1s", "--shutdown_grace=10s"});
  // A slow RPC (the sandbox answers after 1.5 s) is in flight when SIGTERM arrives.
  std::promise<std::pair<grpc::Status, palmgate::v1::Authorization>> slow;
  std::thread caller([&] {
    palmgate::v1::Authorization a;
    grpc::Status s = Call("o-slow", &a);
    slow.set_value({s, a});
  });
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (SandboxSaw("o-slow") == 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(SandboxSaw("o-slow"), 1) << "the slow call never reached the sandbox";
  gateway_->Signal(SIGTERM);
  // Health flips while the server still answers (drain delay).
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> health;
  const absl::Time health_until = absl::Now() + absl::Seconds(1);
  do {
    health = Health();
  } while (health.ok() && *health == grpc::health::v1::HealthCheckResponse::SERVING && absl::Now() < health_until);
  EXPECT_THAT(health, IsOkAndHolds(grpc::health::v1::HealthCheckResponse::NOT_SERVING));
  auto result = slow.get_future().get();
  caller.join();
  EXPECT_TRUE(result.first.ok()) << result.first.error_message();
  EXPECT_EQ(result.second.state(), palmgate::v1::AUTHORIZATION_STATE_OFF);
  EXPECT_THAT(gateway_->Wait(), IsOkAndHolds(0));
}

// Key files copied where a test may replace them (as an operator rotating secrets would).
class KeyReloadTest : public GatewayProcessTest {
 protected:
  void SetUp() override {
    GatewayProcessTest::SetUp();
    secrets_ = dir_ + "/secrets";
    ASSERT_EQ(::mkdir(secrets_.c_str(), 0700), 0);
    for (const char* f : {"apiclient_key.pem", "pub_key.pem"}) {
      auto contents = ReadFile(sandbox_->keys_dir() + "/" + f);
      ASSERT_THAT(contents, IsOk());
      ASSERT_THAT(WriteFile(secrets_ + "/" + f, *contents, 0600), IsOk());
    }
    auto stranger = crypto::RsaPrivateKey::Generate();
    ASSERT_THAT(stranger, IsOk());
    stranger_ = std::make_unique<crypto::RsaPrivateKey>(*std::move(stranger));
  }

  std::vector<std::string> SecretFlags() const {
    return {"--merchant_private_key=" + secrets_ + "/apiclient_key.pem",
            "--merchant_certificate=",  // the environment's certificate would pin the original key
            "--platform_certificates=", "--wechatpay_public_key=" + secrets_ + "/pub_key.pem"};
  }

  // Calls until `want` (OK or not) or the deadline; returns the last status.
  grpc::Status CallUntil(bool want_ok, absl::Duration within) {
    const absl::Time until = absl::Now() + within;
    grpc::Status s;
    do {
      palmgate::v1::Authorization a;
      s = Call(kOpenid, &a);
      if (s.ok() == want_ok) break;
      absl::SleepFor(absl::Milliseconds(50));  // polling a condition with a deadline
    } while (absl::Now() < until);
    return s;
  }

  std::string secrets_;
  std::unique_ptr<crypto::RsaPrivateKey> stranger_;
};

TEST_F(KeyReloadTest, SighupReloadsTheMerchantPrivateKey) {
  // Start with a key WeChat Pay (the sandbox) does not know: our signatures are rejected.
  ASSERT_THAT(WriteFile(secrets_ + "/apiclient_key.pem", stranger_->ToPkcs8Pem(), 0600), IsOk());
  auto flags = SecretFlags();
  flags.push_back("--key_reload_interval=0");
  StartGateway(flags);
  palmgate::v1::Authorization a;
  grpc::Status rejected = Call(kOpenid, &a);
  EXPECT_EQ(rejected.error_code(), grpc::StatusCode::INTERNAL);
  // The operator installs the right key and sends SIGHUP: no restart.
  auto right = ReadFile(sandbox_->keys_dir() + "/apiclient_key.pem");
  ASSERT_THAT(right, IsOk());
  ASSERT_THAT(WriteFile(secrets_ + "/apiclient_key.pem", *right, 0600), IsOk());
  const pid_t pid = gateway_->pid();
  gateway_->Signal(SIGHUP);
  grpc::Status s = CallUntil(/*want_ok=*/true, absl::Seconds(10));
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(gateway_->pid(), pid);
}

TEST_F(KeyReloadTest, ChangedVerificationKeyFileIsPickedUpWithoutASignal) {
  // A wrong WeChat Pay public key: every answer fails verification.
  ASSERT_THAT(WriteFile(secrets_ + "/pub_key.pem", stranger_->PublicKey().ToPem(), 0600), IsOk());
  auto flags = SecretFlags();
  flags.push_back("--key_reload_interval=100ms");
  StartGateway(flags);
  palmgate::v1::Authorization a;
  EXPECT_EQ(Call(kOpenid, &a).error_code(), grpc::StatusCode::INTERNAL);
  auto right = ReadFile(sandbox_->keys_dir() + "/pub_key.pem");
  ASSERT_THAT(right, IsOk());
  ASSERT_THAT(WriteFile(secrets_ + "/pub_key.pem", *right, 0600), IsOk());
  grpc::Status s = CallUntil(/*want_ok=*/true, absl::Seconds(10));
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(KeyReloadTest, FailedReloadKeepsTheRunningKeysAndSaysWhy) {
  auto flags = SecretFlags();
  flags.push_back("--key_reload_interval=0");
  StartGateway(flags);
  palmgate::v1::Authorization a;
  ASSERT_TRUE(Call(kOpenid, &a).ok());
  ASSERT_THAT(WriteFile(secrets_ + "/apiclient_key.pem", "not a key", 0600), IsOk());
  gateway_->Signal(SIGHUP);
  // Wait (bounded) for the reload's verdict in the log.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  std::string log;
  while (absl::Now() < until) {
    log = ReadFile(log_path()).value_or("");
    if (absl::StrContains(log, "key reload failed")) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(log, HasSubstr("key reload failed, keeping the running keys: --merchant_private_key:"));
  EXPECT_THAT(log, Not(HasSubstr("not a key")));
  grpc::Status s = Call(kOpenid, &a);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(GatewayProcessTest, MisconfigurationStopsStartUpWithOneLineNamingTheSetting) {
  const std::string keys = sandbox_->keys_dir();
  struct Case {
    std::vector<std::string> args;
    const char* flag;
  };
  const Case cases[] = {
      {{"--merchant_serial=AB", "--merchant_private_key=" + keys + "/apiclient_key.pem"}, "--mchid"},
      {{"--mchid=1", "--merchant_serial=AB", "--merchant_private_key=" + keys + "/apiclient_key.pem",
        "--platform_certificates=" + keys + "/apiclient_cert.pem"},
       "--platform_certificates"},
      {{"--mchid=1", "--merchant_serial=AB", "--merchant_private_key=" + keys + "/apiclient_key.pem"},
       "--wechatpay_public_key"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {PALMGATE_GATEWAY_BINARY};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto gateway = ListeningProcess::Start(args, absl::Seconds(30), log_path());
    ASSERT_FALSE(gateway.ok());
    EXPECT_THAT(std::string(gateway.status().message()), HasSubstr("exit 2")) << c.flag;
    auto log = ReadFile(log_path());
    ASSERT_THAT(log, IsOk());
    EXPECT_EQ(std::count(log->begin(), log->end(), '\n'), 1) << *log;
    EXPECT_THAT(*log, HasSubstr(absl::StrCat("palmgate: ", c.flag, ":"))) << *log;
  }
}


// Issue 13's insecure settings, as an operator meets them: exit 2 with one
// line naming the setting, and a secret given by mistake is not repeated.
TEST_F(GatewayProcessTest, InsecureSettingsStopStartUpWithOneLineNamingTheSetting) {
  auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
  ASSERT_THAT(merchant, IsOk());
  const std::vector<std::string> env = testing::GatewayEnvironmentFor(*sandbox_, *merchant);
  struct Case {
    std::string arg;
    const char* flag;
  };
  const Case cases[] = {
      {"--upstream=http://wechatpay.invalid:8080", "--upstream"},
      {"--upstream_backup=http://backup.wechatpay.invalid", "--upstream_backup"},
      {"--proxy=http://proxyuser:s3cr3t-pw@127.0.0.1:3128", "--proxy"},
      {"--metrics_listen=9090", "--metrics_listen"},
      {"--metrics_listen=:0", "--metrics_listen"},
      {"--metrics_listen=127.0.0.1:0,0", "--metrics_listen"},
  };
  for (const Case& c : cases) {
    auto gateway = ListeningProcess::Start({PALMGATE_GATEWAY_BINARY, c.arg}, absl::Seconds(30), log_path(), env);
    ASSERT_FALSE(gateway.ok()) << c.arg;
    EXPECT_THAT(std::string(gateway.status().message()), HasSubstr("exit 2")) << c.arg;
    auto log = ReadFile(log_path());
    ASSERT_THAT(log, IsOk());
    EXPECT_EQ(std::count(log->begin(), log->end(), '\n'), 1) << *log;
    EXPECT_THAT(*log, HasSubstr(absl::StrCat("palmgate: ", c.flag, ":"))) << *log;
    EXPECT_THAT(*log, Not(HasSubstr("s3cr3t"))) << *log;
  }
  // Allowed explicitly, here through the environment (PALMGATE_ALLOW_INSECURE_UPSTREAM).
  std::vector<std::string> allowed = env;
  allowed.push_back("PALMGATE_ALLOW_INSECURE_UPSTREAM=true");
  auto gateway = ListeningProcess::Start({PALMGATE_GATEWAY_BINARY, "--upstream=http://wechatpay.invalid:8080"},
                                         absl::Seconds(30), log_path(), allowed);
  ASSERT_THAT(gateway, IsOk());
  EXPECT_THAT((*gateway)->Stop(), IsOkAndHolds(0));
  EXPECT_THAT(ReadFile(log_path()).value_or(""), HasSubstr("--allow_insecure_upstream"));
}

// The gateway holds the merchant private key and the APIv3 key: by default
// it writes no core file (RLIMIT_CORE 0, not dumpable), and --allow_core_dumps
// leaves both as inherited. Not dumpable shows as /proc/PID/* owned by root
// instead of the process's user, so the gateway runs as another user (nobody)
// when the test runs as root.
class CoreDumpTest : public GatewayProcessTest {
 protected:
  // Starts the gateway (as nobody when we are root, with its files copied
  // where nobody reads them); sets uid_.
  void StartAsOrdinaryUser(std::vector<std::string> flags) {
    std::vector<std::string> args;
    uid_ = ::geteuid();
    if (uid_ == 0) {
      if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/setpriv to drop root";
      uid_ = 65534;
      // In /tmp (the build tree and $TEST_TMPDIR may sit below a directory
      // nobody cannot enter), with its own copy of the binary for the same reason.
      std::string pattern = "/tmp/palmgate-nobody-XXXXXX";
      ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
      files_ = pattern;
      ASSERT_EQ(::chown(files_.c_str(), uid_, uid_), 0);
      const std::string binary = files_ + "/palmgate";
      std::error_code ec;
      ASSERT_TRUE(std::filesystem::copy_file(PALMGATE_GATEWAY_BINARY, binary, ec)) << ec.message();
      ASSERT_EQ(::chmod(binary.c_str(), 0755), 0);
      for (const char* f : {"apiclient_key.pem", "apiclient_cert.pem", "pub_key.pem", "platform_cert.pem",
                            "ca_cert.pem"}) {
        auto contents = ReadFile(sandbox_->keys_dir() + "/" + f);
        ASSERT_THAT(contents, IsOk());
        const std::string path = files_ + "/" + f;
        ASSERT_THAT(WriteFile(path, *contents, 0600), IsOk());
        ASSERT_EQ(::chown(path.c_str(), uid_, uid_), 0);
      }
      args = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary,
              "--merchant_private_key=" + files_ + "/apiclient_key.pem",
              "--merchant_certificate=" + files_ + "/apiclient_cert.pem",
              "--wechatpay_public_key=" + files_ + "/pub_key.pem",
              "--platform_certificates=" + files_ + "/platform_cert.pem", "--upstream_ca=" + files_ + "/ca_cert.pem"};
    } else {
      args = {PALMGATE_GATEWAY_BINARY};
    }
    args.insert(args.end(), flags.begin(), flags.end());
    auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    std::vector<std::string> env = testing::GatewayEnvironmentFor(*sandbox_, *merchant);
    if (uid_ != ::geteuid()) RedirectSanitizerLogs(env);
    auto gateway = ListeningProcess::Start(args, absl::Seconds(30), log_path(), env);
    ASSERT_THAT(gateway, IsOk());
    gateway_ = *std::move(gateway);
    channel_ = grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials());
  }

  // Sanitizer builds (scripts/test --asan) send reports to a root-owned
  // directory that nobody cannot write: such a gateway's reports go to a
  // directory of its own instead, which TearDown checks is empty.
  void RedirectSanitizerLogs(std::vector<std::string>& env) {
    for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS"}) {
      const char* value = std::getenv(name);
      if (value == nullptr || !absl::StrContains(value, "log_path=")) continue;
      sanitizer_logs_ = files_ + "/sanitizer-logs";
      ::mkdir(sanitizer_logs_.c_str(), 0700);
      ASSERT_EQ(::chown(sanitizer_logs_.c_str(), uid_, uid_), 0);
      std::vector<std::string> options = absl::StrSplit(value, ':');
      for (std::string& option : options) {
        if (absl::StartsWith(option, "log_path=")) option = "log_path=" + sanitizer_logs_ + "/" + name;
      }
      env.push_back(absl::StrCat(name, "=", absl::StrJoin(options, ":")));
    }
  }

  void TearDown() override {
    if (gateway_ != nullptr) {
      EXPECT_THAT(gateway_->Stop(), IsOk());
    }
    gateway_.reset();
    std::error_code ec;
    if (!sanitizer_logs_.empty()) {
      for (const auto& entry : std::filesystem::directory_iterator(sanitizer_logs_, ec)) {
        ADD_FAILURE() << "sanitizer report from the gateway: " << entry.path() << "\n"
                      << ReadFile(entry.path().string()).value_or("");
      }
    }
    if (!files_.empty()) std::filesystem::remove_all(files_, ec);
  }

  // The owner of /proc/PID/status: the process's user, or root when it is not
  // dumpable (the /proc/PID directory itself keeps the process's user).
  uid_t ProcOwner() const {
    struct stat st;
    EXPECT_EQ(::stat(absl::StrCat("/proc/", gateway_->pid(), "/status").c_str(), &st), 0);
    return st.st_uid;
  }

  // "Max core file size" soft and hard limits from /proc/PID/limits.
  std::pair<std::string, std::string> CoreLimits() const {
    auto limits = ReadFile(absl::StrCat("/proc/", gateway_->pid(), "/limits"));
    EXPECT_THAT(limits, IsOk());
    for (absl::string_view line : absl::StrSplit(limits.value_or(""), '\n')) {
      if (!absl::ConsumePrefix(&line, "Max core file size")) continue;
      std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (fields.size() >= 2) return {fields[0], fields[1]};
    }
    ADD_FAILURE() << "no core file size in /proc/PID/limits";
    return {};
  }

  uid_t uid_ = 0;
  std::string files_;  // the gateway's files when it runs as nobody
  std::string sanitizer_logs_;
};

TEST_F(CoreDumpTest, CoreDumpsAreOffByDefault) {
  StartAsOrdinaryUser({});
  if (HasFatalFailure() || IsSkipped()) return;
  EXPECT_EQ(CoreLimits(), std::make_pair(std::string("0"), std::string("0")));
  EXPECT_EQ(ProcOwner(), 0u) << "dumpable: /proc/PID belongs to uid " << uid_;
  palmgate::v1::Authorization a;
  grpc::Status s = Call(kOpenid, &a);  // and it serves as before
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(CoreDumpTest, AllowCoreDumpsLeavesTheInheritedSettings) {
  struct rlimit ours;
  ASSERT_EQ(::getrlimit(RLIMIT_CORE, &ours), 0);
  StartAsOrdinaryUser({"--allow_core_dumps"});
  if (HasFatalFailure() || IsSkipped()) return;
  auto [soft, hard] = CoreLimits();
  EXPECT_EQ(hard, ours.rlim_max == RLIM_INFINITY ? "unlimited" : absl::StrCat(ours.rlim_max));
  EXPECT_EQ(ProcOwner(), uid_);
}

}  // namespace
}  // namespace palmgate
