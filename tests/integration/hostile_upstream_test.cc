// A hostile upstream: the in-process gateway (real gRPC server on
// 127.0.0.1:0, real PalmServiceClient over CurlTransport, real stubs) in front
// of a HostileHttpServer that speaks HTTPS with the test CA's certificate and
// misbehaves on purpose: bodies far larger than any real answer, endless
// chunked streams, bytes trickled one at a time, endless headers, correctly
// signed answers carrying invalid UTF-8 or JSON nesting bombs, header values
// that are not UTF-8, and TLS certificates for another host. Every case has
// its exact expected gRPC status and ErrorInfo reason, bounded elapsed time
// where a timeout must end it, and proof from the server side that reads were
// cut short. The gateway must never answer OK with any of it, never crash,
// and keep serving afterwards.
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "server/common/utf8.h"
#include "server/crypto/rsa.h"
#include "server/gateway.h"
#include "server/grpc_server.h"
#include "server/service/palmgate_service.h"
#include "server/wechatpay/curl_transport.h"
#include "server/wechatpay/error.h"
#include "tests/testing/child_process.h"
#include "tests/testing/hostile_http_server.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::HostileConnection;
using ::palmgate::testing::HostileHttpServer;
using ::palmgate::testing::HostileScript;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::SandboxMerchant;
using palmgate::v1::Authorization;
using palmgate::v1::GetAuthorizationRequest;
using palmgate::v1::PalmAuthorization;

constexpr char kOpenid[] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
constexpr char kOrg[] = "1004";
constexpr size_t kFiftyMegabytes = 50 * 1024 * 1024;
constexpr size_t kReadBound = 256 * 1024;  // CurlTransport::Options::max_response_bytes default

struct RichError {
  grpc::StatusCode code = grpc::StatusCode::OK;
  bool details_parsed = false;
  google::rpc::ErrorInfo info;
};

RichError Unpack(const grpc::Status& s) {
  RichError out;
  out.code = s.error_code();
  google::rpc::Status rich;
  out.details_parsed = rich.ParseFromString(s.error_details());
  for (const auto& any : rich.details()) {
    if (any.UnpackTo(&out.info)) break;
  }
  return out;
}

std::string Repeat(absl::string_view s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out.append(s.data(), s.size());
  return out;
}

class HostileUpstreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = testing::MakeTempDir("palmgate-hostile-keys");
    ASSERT_THAT(dir, IsOk());
    keys_dir_ = new std::string(*dir);
    ASSERT_THAT(testing::RunSandboxKeygen(*keys_dir_), IsOk());
  }
  static void TearDownTestSuite() {
    if (keys_dir_ != nullptr) std::filesystem::remove_all(*keys_dir_);
    delete keys_dir_;
    keys_dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(keys_dir_, nullptr);
    auto merchant = SandboxMerchant::Load(*keys_dir_);
    ASSERT_THAT(merchant, IsOk());
    merchant_ = std::make_unique<SandboxMerchant>(*std::move(merchant));
    signing_key_pem_ = *ReadFile(*keys_dir_ + "/pub_key_private.pem");
    HostileHttpServer::Options options;
    options.tls_cert_pem = *ReadFile(*keys_dir_ + "/tls_cert.pem");
    options.tls_key_pem = *ReadFile(*keys_dir_ + "/tls_key.pem");
    auto server = HostileHttpServer::Start(options);
    ASSERT_THAT(server, IsOk());
    upstream_ = *std::move(server);
  }

  void TearDown() override {
    stub_.reset();
    channel_.reset();
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    service_.reset();
    core_.reset();
    upstream_.reset();
  }

  void StartGateway(const std::string& upstream_url, absl::Duration upstream_timeout = absl::Seconds(5),
                    bool log_rpcs = false) {
    const std::string& dir = *keys_dir_;
    GatewayConfig config;
    config.mchid = merchant_->mchid();
    config.merchant_serial = merchant_->merchant_serial();
    config.merchant_private_key = dir + "/apiclient_key.pem";
    config.wechatpay_public_key = dir + "/pub_key.pem";
    config.wechatpay_public_key_id = merchant_->public_key_id();
    config.upstream = upstream_url;
    config.upstream_backup = "none";
    config.upstream_ca = dir + "/ca_cert.pem";
    config.upstream_timeout = upstream_timeout;
    config.coalesce = false;
    auto core = LoadGateway(config, SystemClock::Get());
    ASSERT_THAT(core, IsOk());
    core_ = *std::move(core);
    service::PalmAuthorizationService::Options sopts;
    sopts.log_rpcs = log_rpcs;
    service_ = std::make_unique<service::PalmAuthorizationService>(core_->client.get(), SystemClock::Get(), sopts);
    auto server = GrpcServer::Start("127.0.0.1:0", service_.get());
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials());
    stub_ = PalmAuthorization::NewStub(channel_);
  }

  grpc::Status Call(Authorization* out, absl::Duration deadline = absl::Seconds(10)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    GetAuthorizationRequest req;
    req.set_openid(kOpenid);
    req.set_organization_id(kOrg);
    return stub_->GetAuthorization(&ctx, req, out);
  }

  // A 200 answer whose body is `body`, correctly signed with the WeChat Pay
  // public key the gateway trusts: the body parser is really reached.
  HostileScript SignedAnswer(const std::string& body, int status = 200, absl::string_view request_id = "hostile-id",
                             const std::string& serial = "") {
    auto headers = testing::WechatpaySignatureHeaders(body, signing_key_pem_,
                                                      serial.empty() ? merchant_->public_key_id() : serial,
                                                      absl::Now(), request_id);
    EXPECT_THAT(headers, IsOk());
    HostileScript s;
    s.head = absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Type: application/json\r\nContent-Length: ",
                          body.size(), "\r\n", headers.value_or(""), "\r\n");
    s.body = body;
    return s;
  }

  void Answer(HostileScript script) {
    upstream_->SetScript([script](absl::string_view) { return script; });
  }

  // The gateway still answers a good, signed answer correctly.
  void ExpectStillServing() {
    const std::string good = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg,
                                          R"(","state":"AUTHORIZATION_STATE_ON"})");
    Answer(SignedAnswer(good));
    Authorization a;
    grpc::Status s = Call(&a);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_ON);
  }

  static std::string* keys_dir_;
  std::unique_ptr<SandboxMerchant> merchant_;
  std::string signing_key_pem_;
  std::unique_ptr<HostileHttpServer> upstream_;
  std::unique_ptr<GatewayCore> core_;
  std::unique_ptr<service::PalmAuthorizationService> service_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<PalmAuthorization::Stub> stub_;
};

std::string* HostileUpstreamTest::keys_dir_ = nullptr;

// --- Bodies far larger than any real answer: a bounded read and a clear error.

TEST_F(HostileUpstreamTest, FiftyMegabyteBodyIsCutAtTheReadBound) {
  StartGateway(upstream_->base_url());
  HostileScript s;
  s.head = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ", kFiftyMegabytes,
                        "\r\n\r\n");
  s.repeat = std::string(64 * 1024, '[');
  s.repeat_limit = kFiftyMegabytes;
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_RESPONSE_TOO_LARGE");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // The gateway hung up long before the 50 MB were out: what the kernel
  // buffers on loopback is a few MB at most.
  ASSERT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(10)));
  const std::vector<HostileConnection> conns = upstream_->Connections();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0].heads.size(), 1u);  // refused, not retried
  EXPECT_GT(conns[0].bytes_written, kReadBound);
  EXPECT_LT(conns[0].bytes_written, kFiftyMegabytes / 4);
  EXPECT_EQ(core_->transport->InFlight(), 0);
  ExpectStillServing();
}

TEST_F(HostileUpstreamTest, EndlessChunkedBodyIsCutAtTheReadBound) {
  StartGateway(upstream_->base_url());
  HostileScript s;
  s.head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  s.repeat = absl::StrCat("10000\r\n", std::string(0x10000, ' '), "\r\n");  // never the last chunk
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_RESPONSE_TOO_LARGE");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(10)));
  const std::vector<HostileConnection> conns = upstream_->Connections();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0].heads.size(), 1u);
  EXPECT_LT(conns[0].bytes_written, kFiftyMegabytes / 4);
  ExpectStillServing();
}

TEST_F(HostileUpstreamTest, HugeErrorBodyIsCutAtTheReadBoundAndNotRetried) {
  StartGateway(upstream_->base_url());
  HostileScript s;
  s.head = absl::StrCat("HTTP/1.1 500 Internal Server Error\r\nContent-Length: ", kFiftyMegabytes, "\r\n\r\n");
  s.repeat = std::string(64 * 1024, 'x');
  s.repeat_limit = kFiftyMegabytes;
  Answer(s);
  Authorization a;
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_RESPONSE_TOO_LARGE");
  ASSERT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(10)));
  EXPECT_EQ(upstream_->RequestCount(), 1u);
  for (const HostileConnection& c : upstream_->Connections()) EXPECT_LT(c.bytes_written, kFiftyMegabytes / 4);
}

TEST_F(HostileUpstreamTest, TransportBodyBoundIsExact) {
  HostileHttpServer::Options plain;
  auto server = HostileHttpServer::Start(plain);
  ASSERT_THAT(server, IsOk());
  wechatpay::CurlTransport::Options options;
  options.max_response_bytes = 1000;
  auto transport = wechatpay::CurlTransport::Create(options);
  ASSERT_THAT(transport, IsOk());
  for (size_t size : {size_t{1000}, size_t{1001}}) {
    (*server)->SetScript([size](absl::string_view) {
      HostileScript s;
      s.head = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", size, "\r\n\r\n");
      s.body = std::string(size, 'b');
      return s;
    });
    wechatpay::HttpRequest request;
    request.url = absl::StrCat((*server)->base_url(), "/v3/x");
    request.timeout = absl::Seconds(5);
    std::promise<absl::StatusOr<wechatpay::HttpResponse>> done;
    (*transport)->Send(std::move(request),
                       [&done](absl::StatusOr<wechatpay::HttpResponse> r) { done.set_value(std::move(r)); });
    absl::StatusOr<wechatpay::HttpResponse> r = done.get_future().get();
    if (size == 1000) {
      ASSERT_THAT(r, IsOk());
      EXPECT_EQ(r->body.size(), 1000u);
    } else {
      EXPECT_THAT(r, testing::StatusIs(absl::StatusCode::kInternal));
      EXPECT_EQ(wechatpay::GetReason(r.status()), wechatpay::ErrorReason::kResponseTooLarge);
    }
  }
}

// Plain http:// to a loopback upstream never goes through a proxy, given by
// flag or by the environment (issue 13, edge F3: libcurl sent the signed
// Authorization header and the openid to the proxy in clear text). A
// non-loopback host still goes through it (the proxy is really in use).
TEST_F(HostileUpstreamTest, PlainHttpLoopbackUpstreamNeverGoesThroughAProxy) {
  HostileHttpServer::Options plain;
  auto upstream = HostileHttpServer::Start(plain);
  ASSERT_THAT(upstream, IsOk());
  auto proxy = HostileHttpServer::Start(plain);
  ASSERT_THAT(proxy, IsOk());
  for (HostileHttpServer* server : {upstream->get(), proxy->get()}) {
    server->SetScript([](absl::string_view) {
      HostileScript s;
      s.head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
      s.body = "{}";
      return s;
    });
  }
  auto send = [](wechatpay::HttpTransport& transport, const std::string& url) {
    wechatpay::HttpRequest request;
    request.url = url;
    request.timeout = absl::Seconds(10);
    request.headers.Add("Authorization", "WECHATPAY2-SHA256-RSA2048 signature=\"s3cr3t\"");
    std::promise<absl::StatusOr<wechatpay::HttpResponse>> done;
    transport.Send(std::move(request),
                   [&done](absl::StatusOr<wechatpay::HttpResponse> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  };
  for (bool by_environment : {false, true}) {
    SCOPED_TRACE(by_environment ? "http_proxy" : "--proxy");
    wechatpay::CurlTransport::Options options;
    if (by_environment) {
      ::setenv("http_proxy", (*proxy)->base_url().c_str(), 1);
    } else {
      options.proxy = (*proxy)->base_url();
    }
    ::unsetenv("no_proxy");
    ::unsetenv("NO_PROXY");
    auto transport = wechatpay::CurlTransport::Create(options);
    ASSERT_THAT(transport, IsOk());
    const size_t upstream_before = (*upstream)->RequestCount();
    const size_t proxy_before = (*proxy)->RequestCount();
    EXPECT_THAT(send(**transport, absl::StrCat((*upstream)->base_url(), "/v3/x")), IsOk());
    EXPECT_EQ((*upstream)->RequestCount(), upstream_before + 1);
    EXPECT_EQ((*proxy)->RequestCount(), proxy_before) << "the loopback request went through the proxy";
    // Control: another host goes through the proxy (which answers itself).
    EXPECT_THAT(send(**transport, "http://wechatpay.invalid/v3/x"), IsOk());
    EXPECT_EQ((*proxy)->RequestCount(), proxy_before + 1);
    transport->reset();
    ::unsetenv("http_proxy");
  }
}

// --- The transport's own line for a connection (max_connections): local congestion, not the site's fault.

// A server answering "/slow" in about `slow` (the answer trickled byte by byte) and anything else at once.
std::unique_ptr<HostileHttpServer> SlowAndFastServer(absl::Duration slow) {
  auto server = HostileHttpServer::Start(HostileHttpServer::Options{});
  EXPECT_THAT(server, IsOk());
  if (!server.ok()) return nullptr;
  (*server)->SetScript([slow](absl::string_view head) {
    HostileScript s;
    const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    if (absl::StrContains(head, "/slow")) {
      s.body = answer;
      s.byte_interval = slow / static_cast<int64_t>(answer.size());
    } else {
      s.head = answer;
    }
    return s;
  });
  return *std::move(server);
}

std::future<absl::StatusOr<wechatpay::HttpResponse>> SendTo(wechatpay::HttpTransport& transport, std::string url,
                                                            absl::Duration timeout, absl::Duration budget) {
  auto done = std::make_shared<std::promise<absl::StatusOr<wechatpay::HttpResponse>>>();
  wechatpay::HttpRequest request;
  request.url = std::move(url);
  request.timeout = timeout;
  request.budget = budget;
  transport.Send(std::move(request), [done](absl::StatusOr<wechatpay::HttpResponse> r) { done->set_value(std::move(r)); });
  return done->get_future();
}

// Issue 13 (breaker round) F2: with --upstream_max_connections 4 and 40 callers, the time queued transfers
// spent in line counted against their own timeout ("Connection timed out after 2 milliseconds"), as the
// site's failure. The own timeout starts when the transfer leaves the line.
TEST_F(HostileUpstreamTest, TransferTimeoutStartsWhenItLeavesTheConnectionLine) {
  std::unique_ptr<HostileHttpServer> server = SlowAndFastServer(absl::Seconds(3));
  ASSERT_NE(server, nullptr);
  wechatpay::CurlTransport::Options options;
  options.max_connections = 1;
  auto transport = wechatpay::CurlTransport::Create(options);
  ASSERT_THAT(transport, IsOk());
  auto slow = SendTo(**transport, server->base_url() + "/slow", absl::Seconds(20), absl::Seconds(20));
  // Waits about 3 s in line, far beyond its own 1 s, then is answered at once.
  auto queued = SendTo(**transport, server->base_url() + "/fast", absl::Seconds(1), absl::Seconds(20));
  absl::StatusOr<wechatpay::HttpResponse> q = queued.get();
  ASSERT_THAT(q, IsOk());
  EXPECT_EQ(q->body, "ok");
  ASSERT_EQ(slow.wait_for(std::chrono::seconds(0)), std::future_status::ready);  // it did wait for the slow one
  EXPECT_THAT(slow.get(), IsOk());
}

TEST_F(HostileUpstreamTest, TransferWhoseBudgetEndsInTheLineIsBusyAndNeverSent) {
  std::unique_ptr<HostileHttpServer> server = SlowAndFastServer(absl::Seconds(3));
  ASSERT_NE(server, nullptr);
  wechatpay::CurlTransport::Options options;
  options.max_connections = 1;
  auto transport = wechatpay::CurlTransport::Create(options);
  ASSERT_THAT(transport, IsOk());
  auto slow = SendTo(**transport, server->base_url() + "/slow", absl::Seconds(20), absl::Seconds(20));
  const absl::Time start = absl::Now();
  auto queued = SendTo(**transport, server->base_url() + "/fast", absl::Seconds(5), absl::Milliseconds(500));
  absl::StatusOr<wechatpay::HttpResponse> q = queued.get();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(2500));  // at its budget, not when the slow one ends
  EXPECT_THAT(q, testing::StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_TRUE(wechatpay::GetUpstreamError(q.status()).has_value());
  EXPECT_EQ(wechatpay::GetReason(q.status()), wechatpay::ErrorReason::kUpstreamConnectionsBusy) << q.status();
  EXPECT_EQ(wechatpay::GetUpstreamError(q.status())->retry_after, absl::Seconds(1));
  EXPECT_THAT(slow.get(), IsOk());
  EXPECT_EQ(server->RequestCount(), 1u);  // only the slow one reached the server
}

// --- A server that trickles bytes: only the gateway's timeouts end the call.

TEST_F(HostileUpstreamTest, TrickledHeadersEndAtTheUpstreamTimeout) {
  const absl::Duration timeout = absl::Milliseconds(800);
  StartGateway(upstream_->base_url(), timeout);
  HostileScript s;
  s.body = absl::StrCat("HTTP/1.1 200 OK\r\nX-Slow: ", std::string(10000, 'a'));  // one byte per 20 ms, no end
  s.byte_interval = absl::Milliseconds(20);
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call(&a, absl::Seconds(20)));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(e.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_TIMEOUT");
  EXPECT_GE(elapsed, timeout - absl::Milliseconds(50));
  EXPECT_LT(elapsed, timeout + absl::Seconds(1));
  // The gateway stopped reading: the connection ends soon after.
  EXPECT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(5)));
  EXPECT_EQ(core_->transport->InFlight(), 0);
}

TEST_F(HostileUpstreamTest, TrickledBodyEndsAtTheUpstreamTimeout) {
  const absl::Duration timeout = absl::Milliseconds(800);
  StartGateway(upstream_->base_url(), timeout);
  const std::string body = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg,
                                        R"(","state":"AUTHORIZATION_STATE_ON"})");
  HostileScript s = SignedAnswer(body);  // a good answer, sent one byte per 50 ms
  s.byte_interval = absl::Milliseconds(50);
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call(&a, absl::Seconds(20)));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(e.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_TIMEOUT");
  EXPECT_GE(elapsed, timeout - absl::Milliseconds(50));
  EXPECT_LT(elapsed, timeout + absl::Seconds(1));
  EXPECT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(5)));
}

TEST_F(HostileUpstreamTest, TrickleIsBoundedByTheCallerDeadlineToo) {
  StartGateway(upstream_->base_url(), absl::Seconds(30));
  HostileScript s;
  s.body = absl::StrCat("HTTP/1.1 200 OK\r\nX-Slow: ", std::string(10000, 'a'));
  s.byte_interval = absl::Milliseconds(20);
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  grpc::Status status = Call(&a, absl::Milliseconds(600));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1600));
  EXPECT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(5)));
  EXPECT_EQ(core_->transport->InFlight(), 0);
}

// --- Endless headers.

TEST_F(HostileUpstreamTest, EndlessHeaderLinesAreRefused) {
  StartGateway(upstream_->base_url());
  HostileScript s;
  s.head = "HTTP/1.1 200 OK\r\n";
  s.repeat = absl::StrCat("X-Filler: ", std::string(100, 'f'), "\r\n");
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_RESPONSE_TOO_LARGE");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(10)));
  EXPECT_EQ(upstream_->RequestCount(), 1u);
  for (const HostileConnection& c : upstream_->Connections()) EXPECT_LT(c.bytes_written, kFiftyMegabytes / 4);
  ExpectStillServing();
}

TEST_F(HostileUpstreamTest, OneEndlessHeaderLineIsRefused) {
  StartGateway(upstream_->base_url());
  HostileScript s;
  s.head = "HTTP/1.1 200 OK\r\nX-Endless: ";
  s.repeat = std::string(4096, 'e');  // never a line end
  Answer(s);
  Authorization a;
  const absl::Time start = absl::Now();
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_RESPONSE_TOO_LARGE");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_TRUE(upstream_->WaitAllClosed(1, absl::Seconds(10)));
  EXPECT_EQ(upstream_->RequestCount(), 1u);
  for (const HostileConnection& c : upstream_->Connections()) EXPECT_LT(c.bytes_written, kFiftyMegabytes / 4);
  ExpectStillServing();
}

// --- Correctly signed answers that are not what they should be.

TEST_F(HostileUpstreamTest, SignedBodiesWithInvalidUtf8AreMalformed) {
  StartGateway(upstream_->base_url());
  const std::string prefix = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg, R"(","state":")");
  const std::vector<std::string> bodies = {
      prefix + "AUTHORIZATION_STATE_\xff\"}",         // not UTF-8 at all
      prefix + "AUTHORIZATION_STATE_\xc0\xaf\"}",     // overlong "/"
      prefix + "AUTHORIZATION_STATE_\xed\xa0\x80\"}", // surrogate
      prefix + "AUTHORIZATION_STATE_\xe4\xb8\"}",     // truncated sequence
      "\xef\xbb\xbf\xff{}",                           // garbage around the object
  };
  for (const std::string& body : bodies) {
    Answer(SignedAnswer(body));
    Authorization a;
    RichError e = Unpack(Call(&a));
    EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL) << body;
    EXPECT_TRUE(e.details_parsed) << body;
    EXPECT_EQ(e.info.reason(), "UPSTREAM_MALFORMED_RESPONSE") << body;
    EXPECT_EQ(e.info.metadata().at("requestId"), "hostile-id");
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  }
  ExpectStillServing();
}

TEST_F(HostileUpstreamTest, SignedJsonNestingBombsAreMalformedNotACrash) {
  StartGateway(upstream_->base_url());
  const size_t depth = 100000;  // 200 KB of brackets: under the read bound
  const std::vector<std::string> bodies = {
      Repeat("[", depth) + Repeat("]", depth),
      absl::StrCat(R"({"state":)", Repeat("{\"a\":", depth / 3), "1", Repeat("}", depth / 3), "}"),
      Repeat("[", 2 * depth),  // never closed
      absl::StrCat(R"({"openid":")", kOpenid, R"(","state":)", Repeat("[", depth), Repeat("]", depth), "}"),
  };
  for (const std::string& body : bodies) {
    ASSERT_LT(body.size(), kReadBound);
    Answer(SignedAnswer(body));
    Authorization a;
    RichError e = Unpack(Call(&a));
    EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL) << body.substr(0, 20);
    EXPECT_EQ(e.info.reason(), "UPSTREAM_MALFORMED_RESPONSE") << body.substr(0, 20);
  }
  ExpectStillServing();
}

TEST_F(HostileUpstreamTest, JsonNestingBombInAnErrorBodyIsNotACrash) {
  StartGateway(upstream_->base_url());
  const size_t depth = 100000;
  HostileScript s;
  const std::string body = absl::StrCat(R"({"code":"PARAM_ERROR","message":"bad","detail":)", Repeat("[", depth),
                                        Repeat("]", depth), "}");
  s.head = absl::StrCat("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nRequest-ID: r-400\r\n"
                        "Content-Length: ", body.size(), "\r\n\r\n");
  s.body = body;
  Answer(s);
  Authorization a;
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(e.details_parsed);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_PARAM_ERROR");
  EXPECT_EQ(e.info.metadata().at("wechatpayCode"), "PARAM_ERROR");
  ExpectStillServing();
}

// Header values are not signed and not UTF-8 by any rule: what the gateway
// passes on from them must still be a valid gRPC answer (proto3 strings are UTF-8).
TEST_F(HostileUpstreamTest, InvalidUtf8RequestIdStillGivesAParsableAnswer) {
  StartGateway(upstream_->base_url());
  const std::string body = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg,
                                        R"(","state":"AUTHORIZATION_STATE_OFF"})");
  Answer(SignedAnswer(body, 200, "req-\xff\xfe\xc0\xaf-id"));
  Authorization a;
  grpc::Status s = Call(&a);
  ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_OFF);
  EXPECT_EQ(a.wechatpay_request_id(), "");  // not of WeChat Pay's form: dropped
}

TEST_F(HostileUpstreamTest, InvalidUtf8InErrorHeadersStillGivesParsableDetails) {
  StartGateway(upstream_->base_url());
  const std::string body = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg,
                                        R"(","state":"AUTHORIZATION_STATE_OFF"})");
  // An unknown serial that is not UTF-8 (named in the log line, not to the caller).
  Answer(SignedAnswer(body, 200, "req-\xff-id", "SERIAL-\xff\xfe-\xe4\xb8"));
  Authorization a;
  grpc::Status s = Call(&a);
  RichError e = Unpack(s);
  EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
  EXPECT_TRUE(e.details_parsed);
  EXPECT_EQ(e.info.reason(), "UNKNOWN_WECHATPAY_SERIAL");
  EXPECT_TRUE(IsValidUtf8(s.error_message()));
  for (const auto& [k, v] : e.info.metadata()) EXPECT_TRUE(IsValidUtf8(v)) << k;

  // A 503 with the same kind of Request-ID (retried, then reported).
  HostileScript unavailable;
  unavailable.head = "HTTP/1.1 503 Service Unavailable\r\nRequest-ID: r-\xff\xfe\r\nContent-Length: 0\r\n\r\n";
  Answer(unavailable);
  e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(e.details_parsed);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_UNAVAILABLE");
  for (const auto& [k, v] : e.info.metadata()) EXPECT_TRUE(IsValidUtf8(v)) << k;
}

TEST_F(HostileUpstreamTest, LongMultibyteErrorMessageIsCutOnACharacterBoundary) {
  StartGateway(upstream_->base_url());
  const std::string message = Repeat("\xe4\xb8\xad", 1000);  // 3000 bytes of U+4E2D
  const std::string body = absl::StrCat(R"({"code":"INVALID_REQUEST","message":")", message, R"("})");
  HostileScript s;
  s.head = absl::StrCat("HTTP/1.1 400 Bad Request\r\nContent-Length: ", body.size(), "\r\n\r\n");
  s.body = body;
  Answer(s);
  Authorization a;
  RichError e = Unpack(Call(&a));
  EXPECT_EQ(e.code, grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(e.details_parsed);
  EXPECT_EQ(e.info.reason(), "UPSTREAM_INVALID_REQUEST");
  const std::string& kept = e.info.metadata().at("wechatpayMessage");
  EXPECT_TRUE(IsValidUtf8(kept));
  EXPECT_LE(kept.size(), 512u);
  EXPECT_GT(kept.size(), 0u);
}

// --- Answers bound to the question, and the unsigned Request-ID.

// Issue 13 finding 3: a correctly signed 200 naming no openid was returned as
// OK, so one captured answer could be replayed for any openid within the
// 300 s timestamp window.
TEST_F(HostileUpstreamTest, SignedAnswerNamingNoOpenidIsRefused) {
  StartGateway(upstream_->base_url());
  for (const std::string& body : {std::string(R"({"state":"AUTHORIZATION_STATE_ON"})"),
                                  absl::StrCat(R"({"organization_id":")", kOrg, R"(","state":"AUTHORIZATION_STATE_ON"})"),
                                  absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg, R"("})")}) {
    Answer(SignedAnswer(body));
    Authorization a;
    RichError e = Unpack(Call(&a));
    EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL) << body;
    EXPECT_EQ(e.info.reason(), "UPSTREAM_MALFORMED_RESPONSE") << body;
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  }
  ExpectStillServing();
}

// Issue 13 finding 4: the Request-ID header is not signed; a hostile one came
// back verbatim in wechatpay_request_id. Now it is dropped (answer and error
// alike) and the RPC's log line says why, escaped and bounded.
TEST_F(HostileUpstreamTest, HostileRequestIdIsNotPassedOnAndTheLogSaysWhy) {
  const std::string hostile = "CALL-SUPPORT-AT +86 400 <script>alert(1)</script>";
  StartGateway(upstream_->base_url(), absl::Seconds(5), /*log_rpcs=*/true);
  const std::string good = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg,
                                        R"(","state":"AUTHORIZATION_STATE_ON"})");
  ::testing::internal::CaptureStderr();
  Answer(SignedAnswer(good, 200, hostile));
  Authorization a;
  grpc::Status s = Call(&a);
  // An error answer with the same header: no requestId in ErrorInfo.
  HostileScript refused;
  refused.body = R"({"code":"NO_AUTH"})";
  refused.head = absl::StrCat("HTTP/1.1 403 Forbidden\r\nRequest-ID: ", hostile,
                              "\r\nContent-Type: application/json\r\nContent-Length: ", refused.body.size(),
                              "\r\n\r\n");
  Answer(refused);
  Authorization b;
  RichError e = Unpack(Call(&b));
  const std::string log = ::testing::internal::GetCapturedStderr();

  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_ON);
  EXPECT_EQ(a.wechatpay_request_id(), "");
  EXPECT_EQ(e.code, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(e.info.reason(), "MERCHANT_NOT_AUTHORIZED");
  EXPECT_EQ(e.info.metadata().count("requestId"), 0u);
  for (const auto& [k, v] : e.info.metadata()) EXPECT_EQ(v.find("CALL-SUPPORT"), std::string::npos) << k;

  EXPECT_THAT(log, ::testing::HasSubstr(R"("wechatpay_request_id_dropped":"not 1-64 characters of [0-9A-Za-z_-]: 49 bytes, starting \"CALL-SUPPORT-AT +86 400 <script>\"")"));
  EXPECT_EQ(log.find("alert(1)"), std::string::npos) << log;  // bounded: not the whole text
  EXPECT_EQ(log.find(R"("wechatpay_request_id":")"), std::string::npos) << log;
}

// --- TLS certificates that do not prove the host: refused before any request.

class HostileTlsTest : public HostileUpstreamTest {
 protected:
  // A server presenting a certificate for `dns_name`, issued by the test CA
  // the gateway trusts (`self_signed`: by nobody it trusts).
  std::unique_ptr<HostileHttpServer> ServerWithCertificate(const std::string& dns_name, const std::string& ip,
                                                           bool self_signed) {
    auto key = crypto::RsaPrivateKey::Generate();
    EXPECT_THAT(key, IsOk());
    auto ca_cert = crypto::Certificate::FromPem(*ReadFile(*keys_dir_ + "/ca_cert.pem"));
    auto ca_key = crypto::RsaPrivateKey::FromPem(*ReadFile(*keys_dir_ + "/ca_key.pem"));
    EXPECT_THAT(ca_cert, IsOk());
    EXPECT_THAT(ca_key, IsOk());
    crypto::CertificateSpec spec;
    spec.common_name = dns_name.empty() ? ip : dns_name;
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.dns_name = dns_name;
    spec.ip_address = ip;
    auto pem = self_signed ? crypto::IssueCertificate(spec, key->PublicKey(), *key, nullptr)
                           : crypto::IssueCertificate(spec, key->PublicKey(), *ca_key, &*ca_cert);
    EXPECT_THAT(pem, IsOk());
    HostileHttpServer::Options options;
    options.tls_cert_pem = *pem;
    options.tls_key_pem = key->ToPkcs8Pem();
    auto server = HostileHttpServer::Start(options);
    EXPECT_THAT(server, IsOk());
    return server.ok() ? *std::move(server) : nullptr;
  }

  void ExpectRefused(HostileHttpServer& server, bool expect_handshake_failure) {
    // Would be a perfectly good answer, if any request ever came.
    const std::string body = absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":")", kOrg,
                                          R"(","state":"AUTHORIZATION_STATE_ON"})");
    HostileScript s = SignedAnswer(body);
    server.SetScript([s](absl::string_view) { return s; });
    StartGateway(server.base_url());
    Authorization a;
    RichError e = Unpack(Call(&a));
    EXPECT_EQ(e.code, grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(e.info.reason(), "UPSTREAM_TLS_ERROR");
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
    ASSERT_TRUE(server.WaitAllClosed(1, absl::Seconds(5)));
    EXPECT_EQ(server.RequestCount(), 0u);  // not one HTTP byte was sent
    const std::vector<HostileConnection> conns = server.Connections();
    EXPECT_EQ(conns.size(), 1u);  // not retried: another attempt would meet the same certificate
    for (const HostileConnection& c : conns) {
      EXPECT_TRUE(c.heads.empty());
      // An untrusted chain fails inside the handshake; a name mismatch is
      // found by libcurl right after it, before any request is written.
      if (expect_handshake_failure) {
        EXPECT_TRUE(c.tls_failed);
      }
    }
  }
};

TEST_F(HostileTlsTest, CertificateForAnotherHostIsRefused) {
  std::unique_ptr<HostileHttpServer> server = ServerWithCertificate("api.other.example", "", /*self_signed=*/false);
  ASSERT_NE(server, nullptr);
  ExpectRefused(*server, /*expect_handshake_failure=*/false);
}

TEST_F(HostileTlsTest, CertificateForAnotherAddressIsRefused) {
  std::unique_ptr<HostileHttpServer> server = ServerWithCertificate("", "127.0.0.2", /*self_signed=*/false);
  ASSERT_NE(server, nullptr);
  ExpectRefused(*server, /*expect_handshake_failure=*/false);
}

// The sandbox CA's name constraints (localhost, 127.0.0.1, ::1) already refuse
// the two certificates above in the chain check; this one passes them (it
// names localhost) and is refused by libcurl's host name check alone, the
// gateway having connected to 127.0.0.1.
TEST_F(HostileTlsTest, CertificateForAPermittedButDifferentNameIsRefused) {
  std::unique_ptr<HostileHttpServer> server = ServerWithCertificate("localhost", "", /*self_signed=*/false);
  ASSERT_NE(server, nullptr);
  ExpectRefused(*server, /*expect_handshake_failure=*/false);
}

TEST_F(HostileTlsTest, SelfSignedCertificateIsRefused) {
  std::unique_ptr<HostileHttpServer> server = ServerWithCertificate("localhost", "127.0.0.1", /*self_signed=*/true);
  ASSERT_NE(server, nullptr);
  ExpectRefused(*server, /*expect_handshake_failure=*/true);
}

}  // namespace
}  // namespace palmgate
