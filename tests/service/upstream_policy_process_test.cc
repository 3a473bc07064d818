// The real `palmgate` binary in front of two real palmgate-sandbox processes
// (primary and backup, same keys), reproducing issue 13's observations of the
// upstream policy:
//  - 5 RPCs against a rate-limited upstream (429) make 5 upstream requests,
//    not 15, and each caller gets RESOURCE_EXHAUSTED with RetryInfo;
//  - 8 RPCs with a 150 ms deadline against a slow primary do not open the
//    circuit breaker: the next normal RPCs still go to the primary;
//  - a primary that accepts and never answers, with the default attempt
//    timeout (half of --upstream_timeout with a backup): every RPC fails over
//    to the backup within its own time and succeeds, and after 3 such attempts
//    the breaker sends RPCs straight to the backup.
// Upstream requests are counted by the sandboxes themselves (/_sandbox/requests).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::ListeningProcess;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;

constexpr char kOpenid[] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
constexpr char kSlow[] = "o-slow";
constexpr char kLimited[] = "o-limited";
constexpr char kHung[] = "o-hung";

std::string Seed(bool faults) {
  return absl::StrCat(R"({"users":[{"openid":")", kOpenid,
                      R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
      {"openid":")", kSlow, R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON")",
                      faults ? R"(,"fault":"latency=1500")" : "", R"(},
      {"openid":")", kLimited, R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON")",
                      faults ? R"(,"fault":"status=429:FREQUENCY_LIMITED")" : "", R"(},
      {"openid":")", kHung, R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON")",
                      faults ? R"(,"fault":"latency=600000")" : "", R"(}]})");
}

class UpstreamPolicyProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SandboxProcessOptions options;
    options.tls = true;
    options.faults = true;
    options.seed_json = Seed(/*faults=*/true);
    auto primary = SandboxProcess::Start(options);
    ASSERT_THAT(primary, IsOk());
    primary_ = *std::move(primary);
    SandboxProcessOptions backup_options;
    backup_options.tls = true;
    backup_options.keys_dir = primary_->keys_dir();
    backup_options.seed_json = Seed(/*faults=*/false);
    auto backup = SandboxProcess::Start(backup_options);
    ASSERT_THAT(backup, IsOk());
    backup_ = *std::move(backup);
    auto dir = testing::MakeTempDir("palmgate-upstream-policy");
    ASSERT_THAT(dir, IsOk());
    dir_ = *dir;

    auto merchant = SandboxMerchant::Load(primary_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    std::vector<std::string> env = testing::GatewayEnvironmentFor(*primary_, *merchant);
    // --upstream_attempt_timeout is left at its default: half of --upstream_timeout with a backup.
    std::vector<std::string> args = {PALMGATE_GATEWAY_BINARY, "--upstream_backup=" + backup_->base_url(),
                                     "--upstream_timeout=4s"};
    auto gateway = ListeningProcess::Start(args, absl::Seconds(30), dir_ + "/palmgate.log", env);
    ASSERT_THAT(gateway, IsOk());
    gateway_ = *std::move(gateway);
    channel_ = grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    channel_.reset();
    gateway_.reset();
    backup_.reset();
    primary_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  grpc::Status Call(const std::string& openid, absl::Duration timeout, palmgate::v1::Authorization* out) {
    auto stub = palmgate::v1::PalmAuthorization::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    palmgate::v1::GetAuthorizationRequest req;
    req.set_openid(openid);
    req.set_organization_id("1004");
    return stub->GetAuthorization(&ctx, req, out);
  }

  // Number of requests `sandbox` has received for `openid` so far.
  static int Saw(const SandboxProcess& sandbox, const std::string& openid) {
    testing::TestHttpRequest request;
    request.target = "/_sandbox/requests";
    auto r = testing::HttpFetch(sandbox.base_url(), request, sandbox.ca_cert_path());
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return -1;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    const nlohmann::json& list = j.is_array() ? j : j["requests"];
    int n = 0;
    for (const auto& rec : list) n += rec.value("openid", "") == openid;
    return n;
  }

  std::unique_ptr<SandboxProcess> primary_;
  std::unique_ptr<SandboxProcess> backup_;
  std::unique_ptr<ListeningProcess> gateway_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string dir_;
};

TEST_F(UpstreamPolicyProcessTest, RateLimitedUpstreamGetsOneRequestPerRpc) {
  for (int i = 0; i < 5; ++i) {
    palmgate::v1::Authorization out;
    grpc::Status s = Call(kLimited, absl::Seconds(10), &out);
    ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << i << ": " << s.error_message();
    google::rpc::Status rich;
    ASSERT_TRUE(rich.ParseFromString(s.error_details()));
    google::rpc::ErrorInfo info;
    google::rpc::RetryInfo retry;
    bool has_info = false;
    bool has_retry = false;
    for (const auto& any : rich.details()) {
      has_info = has_info || any.UnpackTo(&info);
      has_retry = has_retry || any.UnpackTo(&retry);
    }
    ASSERT_TRUE(has_info);
    EXPECT_EQ(info.reason(), "UPSTREAM_RATE_LIMITED");
    ASSERT_TRUE(has_retry);
    EXPECT_EQ(retry.retry_delay().seconds(), 1);  // the sandbox sends no Retry-After: the floor
  }
  EXPECT_EQ(Saw(*primary_, kLimited), 5);
  EXPECT_EQ(Saw(*backup_, kLimited), 0);
}

TEST_F(UpstreamPolicyProcessTest, CallersShortDeadlinesDoNotSendTrafficToTheBackup) {
  for (int i = 0; i < 8; ++i) {
    palmgate::v1::Authorization out;
    grpc::Status s = Call(kSlow, absl::Milliseconds(150), &out);
    // Had the breaker opened, the backup's quick answer would be an OK here.
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << i << ": " << s.error_message();
  }
  for (int i = 0; i < 10; ++i) {
    palmgate::v1::Authorization out;
    grpc::Status s = Call(kOpenid, absl::Seconds(10), &out);
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
  }
  EXPECT_EQ(Saw(*primary_, kOpenid), 10);
  EXPECT_EQ(Saw(*backup_, kOpenid), 0);
  EXPECT_EQ(Saw(*backup_, kSlow), 0);  // no short call was moved there either
}

// Issue 13 (breaker round) F3: primary hung, backup healthy, callers' deadline 30 s: all 16 RPCs ended
// DEADLINE_EXCEEDED at --upstream_timeout, 13 of 16 primary attempts were not counted against the site, and
// the breaker opened only after ~16 calls.
TEST_F(UpstreamPolicyProcessTest, HungPrimaryFailsOverWithinTheCallAndOpensTheBreaker) {
  constexpr int kCalls = 5;
  for (int i = 0; i < kCalls; ++i) {
    palmgate::v1::Authorization out;
    const absl::Time start = absl::Now();
    grpc::Status s = Call(kHung, absl::Seconds(30), &out);
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_code() << " " << s.error_message();
    EXPECT_EQ(out.state(), palmgate::v1::AUTHORIZATION_STATE_ON);
    EXPECT_LT(absl::Now() - start, absl::Seconds(4)) << i;  // within --upstream_timeout
  }
  EXPECT_EQ(Saw(*primary_, kHung), 3);  // breaker_failures attempts, then straight to the backup
  EXPECT_EQ(Saw(*backup_, kHung), kCalls);
}

}  // namespace
}  // namespace palmgate
