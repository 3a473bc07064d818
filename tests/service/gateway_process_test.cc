// The real `palmgate` binary as operators run it: configured through
// PALMGATE_* environment variables, logging one line per RPC without secrets
// or clear openids, and draining on SIGTERM (health NOT_SERVING, in-flight
// RPCs finish, exit 0).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <thread>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
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
        {"openid":"o-slow","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF","fault":"latency=1500"},
        {"openid":"o-unknown-serial","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"unknown_serial"}]})");
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

// Issue 13 finding 11: messages to callers revealed configuration (the
// unknown-serial error listed every key id the gateway holds; proxy and DNS
// failures named hosts and addresses). Callers get a short, stable message
// (the ErrorInfo reason says what happened); the RPC's log line has the rest.
class CallerMessageTest : public GatewayProcessTest {
 protected:
  struct Outcome {
    grpc::Status status;
    std::string rpc_log_line;  // the GetAuthorization line
  };

  // Starts the gateway with `flags`, makes one call for `openid`, stops the
  // gateway and returns the status and the RPC's log line.
  Outcome CallOnce(const std::vector<std::string>& flags, const std::string& openid) {
    Outcome out;
    StartGateway(flags);
    if (gateway_ == nullptr) return out;
    palmgate::v1::Authorization a;
    out.status = Call(openid, &a);
    channel_.reset();
    EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
    auto log = ReadFile(log_path());
    EXPECT_THAT(log, IsOk());
    for (absl::string_view line : absl::StrSplit(log.value_or(""), '\n')) {
      if (absl::StrContains(line, R"("message":"rpc","method":"/palmgate.v1.PalmAuthorization/GetAuthorization")")) {
        out.rpc_log_line = std::string(line);
      }
    }
    return out;
  }

  // Everything a caller receives: the message and the google.rpc.Status details.
  static std::string CallerVisible(const grpc::Status& s) { return s.error_message() + "\n" + s.error_details(); }

  static std::string ReasonOf(const grpc::Status& s) {
    google::rpc::Status rich;
    google::rpc::ErrorInfo info;
    if (!rich.ParseFromString(s.error_details())) return "";
    for (const auto& any : rich.details()) {
      if (any.UnpackTo(&info)) return info.reason();
    }
    return "";
  }
};

TEST_F(CallerMessageTest, UnknownSerialNamesNoKeyIdToTheCaller) {
  auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
  ASSERT_THAT(merchant, IsOk());
  auto platform = crypto::Certificate::FromPem(*ReadFile(sandbox_->keys_dir() + "/platform_cert.pem"));
  ASSERT_THAT(platform, IsOk());
  Outcome o = CallOnce({}, "o-unknown-serial");
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(ReasonOf(o.status), "UNKNOWN_WECHATPAY_SERIAL");
  EXPECT_EQ(o.status.error_message(), "wechatpay answer is signed with a key the gateway does not hold");
  for (const std::string& serial : {merchant->public_key_id(), platform->serial()}) {
    EXPECT_THAT(CallerVisible(o.status), Not(HasSubstr(serial)));
    EXPECT_THAT(o.rpc_log_line, HasSubstr(serial));  // the operator still learns which keys were tried
  }
  EXPECT_THAT(o.rpc_log_line, HasSubstr(R"("wechatpay_serial":")"));
  EXPECT_THAT(o.rpc_log_line, HasSubstr(R"("reason":"UNKNOWN_WECHATPAY_SERIAL")"));
}

TEST_F(CallerMessageTest, RefusingProxyNamesNoAddressToTheCaller) {
  // Bound, never listening: every connect to it is refused.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  Outcome o = CallOnce({"--proxy=http://127.0.0.1:" + port, "--upstream_attempts=1"}, kOpenid);
  ::close(fd);
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ReasonOf(o.status), "UPSTREAM_UNAVAILABLE");
  EXPECT_EQ(o.status.error_message(), "wechatpay is unavailable");
  EXPECT_THAT(CallerVisible(o.status), Not(HasSubstr("127.0.0.1")));
  EXPECT_THAT(CallerVisible(o.status), Not(HasSubstr(port)));
  EXPECT_THAT(o.rpc_log_line, HasSubstr("127.0.0.1 port " + port));
}

TEST_F(CallerMessageTest, UnresolvableHostIsNotNamedToTheCaller) {
  Outcome o = CallOnce({"--upstream=https://nonexistent.invalid", "--upstream_attempts=1"}, kOpenid);
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ReasonOf(o.status), "UPSTREAM_UNAVAILABLE");
  EXPECT_EQ(o.status.error_message(), "wechatpay is unavailable");
  EXPECT_THAT(CallerVisible(o.status), Not(HasSubstr("nonexistent")));
  EXPECT_THAT(CallerVisible(o.status), Not(HasSubstr("resolve")));
  EXPECT_THAT(o.rpc_log_line, HasSubstr("Could not resolve host: nonexistent.invalid"));
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

}  // namespace
}  // namespace palmgate
