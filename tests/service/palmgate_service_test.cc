// The gateway end to end over loopback: a real gRPC server (in-process,
// 127.0.0.1:0) with the real palmservice client, a real palmgate-sandbox
// process upstream (HTTPS, its own test CA) and real gRPC stubs as callers.
#include <functional>
#include <future>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/gateway.h"
#include "server/grpc_server.h"
#include "server/service/palmgate_service.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;
using palmgate::v1::Authorization;
using palmgate::v1::GetAuthorizationRequest;
using palmgate::v1::PalmAuthorization;

constexpr char kSeed[] = R"({"users":[
  {"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2018-06-08T10:34:56+08:00"},
  {"openid":"o-none","organization_id":"1004","state":"AUTHORIZATION_STATE_NONE"},
  {"openid":"o-off","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF","authorize_time":"2023-01-02T03:04:05Z"},
  {"openid":"o-future","organization_id":"1004","state":"AUTHORIZATION_STATE_PAUSED"},
  {"openid":"f-corrupt","organization_id":"1004","fault":"corrupt_signature"},
  {"openid":"f-probe","organization_id":"1004","fault":"probe_signature"},
  {"openid":"f-unsigned","organization_id":"1004","fault":"missing_signature_headers"},
  {"openid":"f-skew","organization_id":"1004","fault":"skew_timestamp=-900"},
  {"openid":"f-serial","organization_id":"1004","fault":"unknown_serial"},
  {"openid":"f-json","organization_id":"1004","fault":"malformed_json"},
  {"openid":"f-400","organization_id":"1004","fault":"status=400:PARAM_ERROR"},
  {"openid":"f-invalid","organization_id":"1004","fault":"status=400:INVALID_REQUEST"},
  {"openid":"f-401","organization_id":"1004","fault":"status=401:SIGN_ERROR"},
  {"openid":"f-403","organization_id":"1004","fault":"status=403:NO_AUTH"},
  {"openid":"f-404","organization_id":"1004","fault":"status=404:NOT_FOUND"},
  {"openid":"f-429","organization_id":"1004","fault":"status=429:RATELIMIT_EXCEEDED"},
  {"openid":"f-500","organization_id":"1004","fault":"status=500:SYSTEM_ERROR"},
  {"openid":"f-slow","organization_id":"1004","fault":"latency=3000"}
]})";

struct RichError {
  grpc::StatusCode code;
  google::rpc::ErrorInfo info;
  int error_infos = 0;
  std::optional<google::rpc::BadRequest> bad_request;
  std::optional<google::rpc::RetryInfo> retry;
};

RichError Unpack(const grpc::Status& s) {
  RichError out;
  out.code = s.error_code();
  google::rpc::Status rich;
  EXPECT_TRUE(rich.ParseFromString(s.error_details())) << "no grpc-status-details-bin";
  for (const auto& any : rich.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad;
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&info)) {
      out.info = info;
      ++out.error_infos;
    } else if (any.UnpackTo(&bad)) {
      out.bad_request = bad;
    } else if (any.UnpackTo(&retry)) {
      out.retry = retry;
    }
  }
  return out;
}

class GatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SandboxProcessOptions options;
    options.tls = true;
    options.faults = true;
    options.seed_json = kSeed;
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    sandbox_ = sandbox->release();
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
  }

  void StartGateway(std::function<void(GatewayConfig&)> tweak = nullptr,
                    service::PalmAuthorizationService::Options sopts = {}) {
    ASSERT_NE(sandbox_, nullptr);
    auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    const std::string dir = sandbox_->keys_dir();
    GatewayConfig config;
    config.mchid = merchant->mchid();
    config.merchant_serial = merchant->merchant_serial();
    config.merchant_private_key = dir + "/apiclient_key.pem";
    config.wechatpay_public_key = dir + "/pub_key.pem";
    config.wechatpay_public_key_id = merchant->public_key_id();
    config.upstream = sandbox_->base_url();
    config.upstream_ca = sandbox_->ca_cert_path();
    if (tweak) tweak(config);
    auto core = LoadGateway(config, SystemClock::Get());
    ASSERT_THAT(core, IsOk());
    core_ = *std::move(core);
    sopts.log_rpcs = false;
    service_ = std::make_unique<service::PalmAuthorizationService>(core_->client.get(), SystemClock::Get(), sopts);
    auto server = GrpcServer::Start("127.0.0.1:0", service_.get());
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials());
    stub_ = PalmAuthorization::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    service_.reset();
    core_.reset();
  }

  grpc::Status Call(const std::string& openid, const std::string& org, Authorization* out,
                    absl::Duration deadline = absl::Seconds(5)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    GetAuthorizationRequest req;
    req.set_openid(openid);
    req.set_organization_id(org);
    return stub_->GetAuthorization(&ctx, req, out);
  }

  size_t SandboxRequests() {
    testing::TestHttpRequest request;
    request.target = "/_sandbox/requests";
    auto r = testing::HttpFetch(sandbox_->base_url(), request, sandbox_->ca_cert_path());
    EXPECT_THAT(r, IsOk());
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_array()) return j.size();
    return j.contains("requests") ? j["requests"].size() : 0;
  }

  static SandboxProcess* sandbox_;
  std::unique_ptr<GatewayCore> core_;
  std::unique_ptr<service::PalmAuthorizationService> service_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<PalmAuthorization::Stub> stub_;
};

SandboxProcess* GatewayTest::sandbox_ = nullptr;

TEST_F(GatewayTest, AnswersEveryStateVerified) {
  StartGateway();
  Authorization a;
  ASSERT_TRUE(Call("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "1004", &a).ok());
  EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_ON);
  EXPECT_EQ(a.wechatpay_state(), "AUTHORIZATION_STATE_ON");
  EXPECT_EQ(a.openid(), "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
  EXPECT_EQ(a.organization_id(), "1004");
  EXPECT_EQ(a.authorize_time().seconds(), 1528425296);  // 2018-06-08T02:34:56Z
  EXPECT_FALSE(a.wechatpay_request_id().empty());

  Authorization none;
  ASSERT_TRUE(Call("o-none", "1004", &none).ok());
  EXPECT_EQ(none.state(), palmgate::v1::AUTHORIZATION_STATE_NONE);
  EXPECT_FALSE(none.has_authorize_time());
  Authorization off;
  ASSERT_TRUE(Call("o-off", "1004", &off).ok());
  EXPECT_EQ(off.state(), palmgate::v1::AUTHORIZATION_STATE_OFF);
  EXPECT_EQ(off.authorize_time().seconds(), 1672628645);
  Authorization future;
  ASSERT_TRUE(Call("o-future", "1004", &future).ok());
  EXPECT_EQ(future.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  EXPECT_EQ(future.wechatpay_state(), "AUTHORIZATION_STATE_PAUSED");
}

TEST_F(GatewayTest, WorksInPlatformCertificateMode) {
  StartGateway([&](GatewayConfig& c) {
    c.wechatpay_public_key.clear();
    c.wechatpay_public_key_id.clear();
    c.platform_certificates = {sandbox_->keys_dir() + "/platform_cert.pem"};
  });
  Authorization a;
  ASSERT_TRUE(Call("o-off", "1004", &a).ok());
  EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_OFF);
}

TEST_F(GatewayTest, EveryErrorClassHasItsCodeAndReason) {
  StartGateway();
  struct Case {
    const char* openid;
    grpc::StatusCode code;
    const char* reason;
    const char* wechatpay_code;  // "" when none
    bool retry;
  };
  const Case cases[] = {
      {"f-corrupt", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_INVALID", "", false},
      {"f-probe", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_PROBE", "", false},
      {"f-unsigned", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_MISSING", "", false},
      {"f-skew", grpc::StatusCode::INTERNAL, "RESPONSE_TIMESTAMP_SKEW", "", false},
      {"f-serial", grpc::StatusCode::INTERNAL, "UNKNOWN_WECHATPAY_SERIAL", "", false},
      {"f-json", grpc::StatusCode::INTERNAL, "UPSTREAM_MALFORMED_RESPONSE", "", false},
      {"f-400", grpc::StatusCode::INVALID_ARGUMENT, "UPSTREAM_PARAM_ERROR", "PARAM_ERROR", false},
      {"f-invalid", grpc::StatusCode::FAILED_PRECONDITION, "UPSTREAM_INVALID_REQUEST", "INVALID_REQUEST", false},
      {"f-401", grpc::StatusCode::INTERNAL, "UPSTREAM_SIGNATURE_REJECTED", "SIGN_ERROR", false},
      {"f-403", grpc::StatusCode::PERMISSION_DENIED, "MERCHANT_NOT_AUTHORIZED", "NO_AUTH", false},
      {"f-404", grpc::StatusCode::NOT_FOUND, "UPSTREAM_NOT_FOUND", "NOT_FOUND", false},
      {"f-429", grpc::StatusCode::RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED", "RATELIMIT_EXCEEDED", true},
      {"f-500", grpc::StatusCode::UNAVAILABLE, "UPSTREAM_UNAVAILABLE", "SYSTEM_ERROR", true},
  };
  for (const Case& c : cases) {
    Authorization a;
    grpc::Status s = Call(c.openid, "1004", &a);
    RichError e = Unpack(s);
    EXPECT_EQ(e.code, c.code) << c.openid << ": " << s.error_message();
    EXPECT_EQ(e.error_infos, 1) << c.openid;
    EXPECT_EQ(e.info.reason(), c.reason) << c.openid;
    EXPECT_EQ(e.info.domain(), "palmgate.dev");
    EXPECT_FALSE(e.info.metadata().at("requestId").empty()) << c.openid;
    EXPECT_FALSE(e.info.metadata().at("httpStatus").empty()) << c.openid;
    if (*c.wechatpay_code != '\0') {
      EXPECT_EQ(e.info.metadata().at("wechatpayCode"), c.wechatpay_code) << c.openid;
    }
    EXPECT_EQ(e.retry.has_value(), c.retry) << c.openid;
    // Never a partial answer with an error.
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED) << c.openid;
  }
}

TEST_F(GatewayTest, BadInputIsRefusedWithFieldViolationsAndNothingSent) {
  StartGateway();
  const size_t before = SandboxRequests();
  struct Case {
    std::string openid;
    std::string org;
    std::vector<std::string> fields;
    const char* reason;
  };
  const Case cases[] = {
      {"", "1004", {"openid"}, "INVALID_OPENID"},
      {std::string(129, 'a'), "1004", {"openid"}, "INVALID_OPENID"},
      {"o\xff", "1004", {"openid"}, "INVALID_OPENID"},
      {"o\n1", "1004", {"openid"}, "INVALID_OPENID"},
      {"..", "1004", {"openid"}, "INVALID_OPENID"},
      {"o1", "", {"organization_id"}, "INVALID_ORGANIZATION_ID"},
      {"o1", std::string(65, '9'), {"organization_id"}, "INVALID_ORGANIZATION_ID"},
      {"", "", {"openid", "organization_id"}, "INVALID_OPENID"},
  };
  for (const Case& c : cases) {
    Authorization a;
    RichError e = Unpack(Call(c.openid, c.org, &a));
    EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(e.info.reason(), c.reason);
    ASSERT_TRUE(e.bad_request.has_value());
    ASSERT_EQ(e.bad_request->field_violations_size(), static_cast<int>(c.fields.size()));
    for (size_t i = 0; i < c.fields.size(); ++i) {
      EXPECT_EQ(e.bad_request->field_violations(static_cast<int>(i)).field(), c.fields[i]);
    }
  }
  EXPECT_EQ(SandboxRequests(), before);
}

TEST_F(GatewayTest, UpstreamTimeoutIsBoundedByConfiguration) {
  StartGateway([](GatewayConfig& c) { c.upstream_timeout = absl::Milliseconds(300); });
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call("f-slow", "1004", &a, absl::Seconds(10)));
  EXPECT_EQ(e.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_TIMEOUT");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(GatewayTest, CallerDeadlineBoundsTheUpstreamCall) {
  StartGateway();
  Authorization a;
  const absl::Time start = absl::Now();
  grpc::Status s = Call("f-slow", "1004", &a, absl::Milliseconds(400));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // The gateway gave up upstream too (it does not wait for the 3 s answer).
  const absl::Time wait_until = absl::Now() + absl::Seconds(2);
  while (core_->transport->InFlight() != 0 && absl::Now() < wait_until) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(core_->transport->InFlight(), 0);
}

TEST_F(GatewayTest, ExpiredDeadlineIsAnsweredWithoutCallingUpstream) {
  service::PalmAuthorizationService::Options sopts;
  sopts.deadline_margin = absl::Seconds(30);  // any caller deadline under 30 s is already spent
  StartGateway(nullptr, sopts);
  const size_t before = SandboxRequests();
  Authorization a;
  RichError e = Unpack(Call("o-none", "1004", &a, absl::Seconds(5)));
  EXPECT_EQ(e.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_TIMEOUT");
  EXPECT_EQ(SandboxRequests(), before);
}

TEST_F(GatewayTest, CancelledRpcCancelsItsUpstreamTransfer) {
  StartGateway();
  grpc::ClientContext ctx;
  GetAuthorizationRequest req;
  req.set_openid("f-slow");
  req.set_organization_id("1004");
  Authorization a;
  std::promise<grpc::Status> done;
  stub_->async()->GetAuthorization(&ctx, &req, &a, [&done](grpc::Status s) { done.set_value(s); });
  // Wait (bounded) until the upstream transfer has started, then cancel the RPC.
  absl::Time until = absl::Now() + absl::Seconds(2);
  while (core_->transport->InFlight() == 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_EQ(core_->transport->InFlight(), 1);
  const absl::Time cancelled_at = absl::Now();
  ctx.TryCancel();
  EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::CANCELLED);
  until = absl::Now() + absl::Seconds(2);
  while (core_->transport->InFlight() != 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(core_->transport->InFlight(), 0);
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(2));  // well before the sandbox's 3 s answer
}

TEST_F(GatewayTest, HealthIsServingAndFlipsOnDrain) {
  StartGateway();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const char* service : {"", "palmgate.v1.PalmAuthorization"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  server_->SetNotServing();
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST_F(GatewayTest, ConcurrentCallsAllSucceed) {
  StartGateway();
  constexpr int kCalls = 300;
  std::vector<grpc::ClientContext> ctx(kCalls);
  std::vector<GetAuthorizationRequest> req(kCalls);
  std::vector<Authorization> resp(kCalls);
  std::vector<std::promise<grpc::Status>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    req[i].set_openid(i % 2 ? "o-off" : "o-none");
    req[i].set_organization_id("1004");
    ctx[i].set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    stub_->async()->GetAuthorization(&ctx[i], &req[i], &resp[i], [&done, i](grpc::Status s) { done[i].set_value(s); });
  }
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status s = done[i].get_future().get();
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
    EXPECT_EQ(resp[i].state(), i % 2 ? palmgate::v1::AUTHORIZATION_STATE_OFF : palmgate::v1::AUTHORIZATION_STATE_NONE);
  }
}

}  // namespace
}  // namespace palmgate
