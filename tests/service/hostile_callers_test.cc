// Hostile callers: the in-process gateway (real gRPC server on 127.0.0.1:0,
// real PalmServiceClient, real palmgate-sandbox process upstream over HTTPS)
// against bad requests and misbehaving clients.
//
// - A table of bad requests, sent as raw bytes (the wire image with `bytes`
//   fields, through a generic stub, so invalid UTF-8 really goes on the wire):
//   each row has its gRPC status, ErrorInfo reason and BadRequest field
//   violations, and the sandbox's request counter proves nothing reached it.
// - Values that look like path tricks (`..`, `%2F`, `?`, `#`, spaces, unicode
//   lookalikes) are valid strings by the API's rules (string, max 128/64):
//   the gateway sends them percent-encoded as one path segment or query value
//   (server/wechatpay/request_target.h). Their table proves, from the
//   sandbox's request log, that each reached only the palmservice endpoint,
//   once, with its bytes intact, and that the answer is for exactly that value.
// - Requests over the receive limit (plain, or inflating from gzip/deflate)
//   are refused by the transport before the service parses them.
// - Huge metadata, a thousand concurrent streams on one connection, the
//   configured stream limit, and clients that cancel or drop their
//   connection mid-call: the gateway answers what it should, releases every
//   upstream transfer, stays healthy and keeps serving.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/gateway.h"
#include "server/grpc_server.h"
#include "server/service/palmgate_service.h"
#include "server/wechatpay/request_target.h"
#include "service/wire/get_authorization_request.pb.h"
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
using WireRequest = palmgate::internal::wire::GetAuthorizationRequest;

constexpr char kMethod[] = "/palmgate.v1.PalmAuthorization/GetAuthorization";
constexpr char kRealOpenid[] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
constexpr char kSeed[] = R"({"users":[
  {"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
  {"openid":"o-off","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF"},
  {"openid":"f-lag","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF","fault":"latency=100"},
  {"openid":"f-slow","organization_id":"1004","fault":"latency=3000"}
]})";

struct RichError {
  grpc::StatusCode code = grpc::StatusCode::OK;
  google::rpc::ErrorInfo info;
  std::vector<std::string> fields;  // BadRequest field violations, in order
};

RichError Unpack(const grpc::Status& s) {
  RichError out;
  out.code = s.error_code();
  google::rpc::Status rich;
  if (!rich.ParseFromString(s.error_details())) return out;
  for (const auto& any : rich.details()) {
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations()) out.fields.push_back(v.field());
    } else {
      any.UnpackTo(&out.info);
    }
  }
  return out;
}

// Waits (bounded) until `condition` holds; polls every 2 ms.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// A TCP relay between callers and the gateway whose DropAll() resets every
// relayed connection at once, as when a client host vanishes: the gateway
// sees its connections die with calls in flight (no RST_STREAM, no GOAWAY).
class DroppingRelay {
 public:
  explicit DroppingRelay(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(listen_fd_, 64);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    [[maybe_unused]] int rc = ::pipe2(drop_pipe_, O_CLOEXEC);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~DroppingRelay() {
    DropAll();
    accept_thread_.join();
    for (std::thread& t : pumps_) t.join();
    ::close(listen_fd_);
    ::close(drop_pipe_[0]);
    ::close(drop_pipe_[1]);
  }
  int port() const { return port_; }

  // Resets every connection (now and later); never drained, so every poller wakes.
  void DropAll() {
    if (!dropped_.exchange(true)) {
      [[maybe_unused]] ssize_t n = ::write(drop_pipe_[1], "x", 1);
    }
  }

 private:
  void AcceptLoop() {
    for (;;) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {drop_pipe_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents != 0) return;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(client);
        ::close(upstream);
        continue;
      }
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  void Pump(int a, int b) {
    char buf[16384];
    for (;;) {
      pollfd fds[3] = {{a, POLLIN, 0}, {b, POLLIN, 0}, {drop_pipe_[0], POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) continue;
      if (fds[2].revents != 0) break;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof(buf), 0);
        if (n <= 0) {
          closed = true;
          break;
        }
        const int to = i == 0 ? b : a;
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) {
            closed = true;
            break;
          }
          off += w;
        }
      }
      if (closed) break;
    }
    // An abortive close (RST), as when the host is gone.
    const linger hard{1, 0};
    ::setsockopt(a, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    ::setsockopt(b, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    ::close(a);
    ::close(b);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int drop_pipe_[2] = {-1, -1};
  std::atomic<bool> dropped_{false};
  std::thread accept_thread_;
  std::vector<std::thread> pumps_;  // touched by the accept thread, then by the destructor after its join
};

class HostileCallersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SandboxProcessOptions options;
    options.tls = true;
    options.faults = true;
    options.seed_json = kSeed;
    options.threads = 4;
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    sandbox_ = sandbox->release();
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
  }

  void StartGateway(std::function<void(GatewayConfig&)> tweak = nullptr, GrpcServerOptions server_options = {}) {
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
    service::PalmAuthorizationService::Options sopts;
    sopts.log_rpcs = false;
    service_ = std::make_unique<service::PalmAuthorizationService>(core_->client.get(), SystemClock::Get(), sopts);
    auto server = GrpcServer::Start("127.0.0.1:0", service_.get(), std::move(server_options));
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    channel_ = NewChannel(server_->port());
    stub_ = PalmAuthorization::NewStub(channel_);
  }

  static std::shared_ptr<grpc::Channel> NewChannel(int port) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection, not a shared one
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args);
  }

  void TearDown() override {
    stub_.reset();
    channel_.reset();
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    service_.reset();
    core_.reset();
  }

  // Sends the request bytes as they are (invalid UTF-8 included).
  grpc::Status RawCall(const std::string& openid, const std::string& org, Authorization* out,
                       const std::vector<std::pair<std::string, std::string>>& metadata = {},
                       std::shared_ptr<grpc::Channel> channel = nullptr) {
    grpc::TemplatedGenericStub<WireRequest, Authorization> generic(channel != nullptr ? channel : channel_);
    WireRequest req;
    req.set_openid(openid);
    req.set_organization_id(org);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    for (const auto& [k, v] : metadata) ctx.AddMetadata(k, v);
    std::promise<grpc::Status> done;
    generic.UnaryCall(&ctx, kMethod, grpc::StubOptions(), &req, out,
                      [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  grpc::Status Call(const std::string& openid, Authorization* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    GetAuthorizationRequest req;
    req.set_openid(openid);
    req.set_organization_id("1004");
    return stub_->GetAuthorization(&ctx, req, out);
  }

  static nlohmann::json SandboxJson(const std::string& path) {
    testing::TestHttpRequest request;
    request.target = path;
    auto r = testing::HttpFetch(sandbox_->base_url(), request, sandbox_->ca_cert_path());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
  }

  // API requests the sandbox has received so far (admin requests not counted).
  static int64_t SandboxRequestsTotal() {
    nlohmann::json stats = SandboxJson("/_sandbox/stats");
    return stats.is_object() ? stats.value("requests_total", int64_t{-1}) : -1;
  }

  // The gateway is healthy and answers a real query.
  void ExpectHealthyAndServing() {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    Authorization a;
    grpc::Status s = Call(kRealOpenid, &a);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_ON);
  }

  static SandboxProcess* sandbox_;
  std::unique_ptr<GatewayCore> core_;
  std::unique_ptr<service::PalmAuthorizationService> service_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<PalmAuthorization::Stub> stub_;
};

SandboxProcess* HostileCallersTest::sandbox_ = nullptr;

TEST_F(HostileCallersTest, BadRequestsAreRefusedBeforeAnythingIsSent) {
  StartGateway();
  struct Row {
    const char* name;
    std::string openid;
    std::string org;
    const char* reason;
    std::vector<std::string> fields;
  };
  const std::string kOpenidField = "openid";
  const std::string kOrgField = "organization_id";
  std::string cjk_129;  // 43 three-byte characters: 129 bytes, over the limit by one byte
  for (int i = 0; i < 43; ++i) cjk_129 += "\xe4\xb8\xad";
  const Row rows[] = {
      // Empty.
      {"empty openid", "", "1004", "INVALID_OPENID", {kOpenidField}},
      {"empty organization_id", kRealOpenid, "", "INVALID_ORGANIZATION_ID", {kOrgField}},
      {"every field empty", "", "", "INVALID_OPENID", {kOpenidField, kOrgField}},
      // Too long.
      {"openid 129 bytes", std::string(129, 'o'), "1004", "INVALID_OPENID", {kOpenidField}},
      {"openid 129 bytes of CJK", cjk_129, "1004", "INVALID_OPENID", {kOpenidField}},
      {"openid 3 KiB", std::string(3 * 1024, 'o'), "1004", "INVALID_OPENID", {kOpenidField}},
      {"organization_id 65 bytes", kRealOpenid, std::string(65, '1'), "INVALID_ORGANIZATION_ID", {kOrgField}},
      {"both 1.5 KiB", std::string(1536, 'o'), std::string(1536, '1'), "INVALID_OPENID", {kOpenidField, kOrgField}},
      // NUL and other control characters.
      {"NUL inside openid", std::string("oUpF8\0uMu", 9), "1004", "INVALID_OPENID", {kOpenidField}},
      {"openid only NUL", std::string(1, '\0'), "1004", "INVALID_OPENID", {kOpenidField}},
      {"NUL after organization_id", kRealOpenid, std::string("1004\0", 5), "INVALID_ORGANIZATION_ID", {kOrgField}},
      {"newline in openid", "o\n1", "1004", "INVALID_OPENID", {kOpenidField}},
      {"CRLF header injection in organization_id", kRealOpenid, "1004\r\nX-Injected: 1", "INVALID_ORGANIZATION_ID",
       {kOrgField}},
      {"tab in openid", "o\t1", "1004", "INVALID_OPENID", {kOpenidField}},
      {"ANSI escape in openid", "\x1b[31mo1", "1004", "INVALID_OPENID", {kOpenidField}},
      {"DEL in openid", "o1\x7f", "1004", "INVALID_OPENID", {kOpenidField}},
      // Invalid UTF-8.
      {"byte 0xFF", "o\xff", "1004", "INVALID_OPENID", {kOpenidField}},
      {"overlong slash", "a\xc0\xaf" "b", "1004", "INVALID_OPENID", {kOpenidField}},
      {"overlong dot dot", "\xc0\xae\xc0\xae", "1004", "INVALID_OPENID", {kOpenidField}},
      {"UTF-16 surrogate", "o\xed\xa0\x80", "1004", "INVALID_OPENID", {kOpenidField}},
      {"truncated sequence", "o\xe4\xb8", "1004", "INVALID_OPENID", {kOpenidField}},
      {"above U+10FFFF", "o\xf4\x90\x80\x80", "1004", "INVALID_OPENID", {kOpenidField}},
      {"lone continuation byte", "\x80o", "1004", "INVALID_OPENID", {kOpenidField}},
      {"Latin-1 organization_id", kRealOpenid, "Z\xfcrich", "INVALID_ORGANIZATION_ID", {kOrgField}},
      // Dot-segments (the only path-traversal values that are not one segment once encoded).
      {"openid dot", ".", "1004", "INVALID_OPENID", {kOpenidField}},
      {"openid dot dot", "..", "1004", "INVALID_OPENID", {kOpenidField}},
      // Bad in both fields: one violation each, the first field's reason.
      {"invalid UTF-8 and control", "\xff", "\n", "INVALID_OPENID", {kOpenidField, kOrgField}},
  };
  const int64_t before = SandboxRequestsTotal();
  ASSERT_GE(before, 0);
  for (const Row& row : rows) {
    Authorization a;
    grpc::Status s = RawCall(row.openid, row.org, &a);
    RichError e = Unpack(s);
    EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT) << row.name << ": " << s.error_message();
    EXPECT_EQ(e.info.reason(), row.reason) << row.name;
    EXPECT_EQ(e.info.domain(), "palmgate.dev") << row.name;
    EXPECT_EQ(e.fields, row.fields) << row.name;
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED) << row.name;
  }
  // Not one of them reached the upstream.
  EXPECT_EQ(SandboxRequestsTotal(), before);
  ExpectHealthyAndServing();
}

TEST_F(HostileCallersTest, PathTricksStayOneEncodedSegmentAndReachOnlyThePalmEndpoint) {
  StartGateway();
  struct Row {
    const char* name;
    std::string openid;
    std::string org;
  };
  const Row rows[] = {
      {"path traversal", "../../v3/certificates", "1004"},
      {"dot dot slash", "../", "1004"},
      {"three dots", "...", "1004"},
      {"encoded traversal", "..%2F..%2Fv3%2Fcertificates", "1004"},
      {"encoded slash upper", "a%2Fb", "1004"},
      {"encoded slash lower", "a%2fb", "1004"},
      {"encoded backslash", "a%5Cb", "1004"},
      {"encoded dots", "%2e%2e", "1004"},
      {"double-encoded slash", "%252F", "1004"},
      {"slash", "a/b", "1004"},
      {"backslash", "a\\b", "1004"},
      {"query in openid", "a?organization_id=evil", "1004"},
      {"fragment in openid", "a#frag", "1004"},
      {"semicolon parameter", "a;jsessionid=1", "1004"},
      {"spaces around", " oUpF8uMuAJO_M2pxb1Q9zNjWeS6o ", "1004"},
      {"plus", "a+b", "1004"},
      {"ideographic space", "o\xe3\x80\x80" "1", "1004"},
      {"Greek omicron lookalike of a real openid", "\xce\xbfUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "1004"},
      {"fullwidth solidus", "a\xef\xbc\x8f" "b", "1004"},
      {"right-to-left override", "o\xe2\x80\xae" "1", "1004"},
      {"second organization_id in the query", "o1", "1004&organization_id=1"},
      {"fragment in organization_id", "o1", "1004#x"},
      {"traversal in organization_id", "o1", "../1004"},
  };
  const nlohmann::json log_before = SandboxJson("/_sandbox/requests");
  ASSERT_TRUE(log_before.is_array());
  const size_t before = log_before.size();
  const int64_t total_before = SandboxRequestsTotal();
  for (const Row& row : rows) {
    Authorization a;
    grpc::Status s = RawCall(row.openid, row.org, &a);
    ASSERT_TRUE(s.ok()) << row.name << ": " << s.error_code() << " " << s.error_message();
    // The verified answer is about exactly the value asked for, and nobody else.
    EXPECT_EQ(a.openid(), row.openid) << row.name;
    EXPECT_EQ(a.organization_id(), row.org) << row.name;
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_NONE) << row.name;  // unknown to the sandbox
  }
  const nlohmann::json log = SandboxJson("/_sandbox/requests");
  ASSERT_TRUE(log.is_array());
  ASSERT_EQ(log.size(), before + std::size(rows));  // one request per row, no more
  EXPECT_EQ(SandboxRequestsTotal(), total_before + static_cast<int64_t>(std::size(rows)));
  for (size_t i = 0; i < std::size(rows); ++i) {
    const nlohmann::json& rec = log[before + i];
    const Row& row = rows[i];
    EXPECT_EQ(rec.value("endpoint", ""), "palm_authorization") << row.name;
    EXPECT_EQ(rec.value("status", 0), 200) << row.name;
    EXPECT_EQ(rec.value("target", ""),
              absl::StrCat("/v3/palmservice/authorization/openid/", wechatpay::PercentEncode(row.openid),
                           "?organization_id=", wechatpay::PercentEncode(row.org)))
        << row.name;
    EXPECT_EQ(rec.value("openid", ""), row.openid) << row.name;
    EXPECT_EQ(rec.value("organization_id", ""), row.org) << row.name;
  }
}

// Requests above GrpcServerOptions::max_receive_message_bytes (4 KiB) are
// refused by gRPC's transport before any of our code parses them; compressed
// ones by their decompressed size.
TEST_F(HostileCallersTest, OversizedRequestsAreRefusedByTheTransport) {
  StartGateway();
  const int64_t before = SandboxRequestsTotal();
  struct Row {
    const char* name;
    std::string openid;
    std::string org;
    grpc_compression_algorithm compression;
  };
  const Row rows[] = {
      {"openid 1 MiB", std::string(1 << 20, 'o'), "1004", GRPC_COMPRESS_NONE},
      {"both 1 MiB", std::string(1 << 20, 'o'), std::string(1 << 20, '1'), GRPC_COMPRESS_NONE},
      {"openid 5 KiB", std::string(5 * 1024, 'o'), "1004", GRPC_COMPRESS_NONE},
      // A few KiB on the wire, 1 MiB once inflated.
      {"openid 1 MiB gzip", std::string(1 << 20, 'o'), "1004", GRPC_COMPRESS_GZIP},
      {"openid 1 MiB deflate", std::string(1 << 20, 'o'), "1004", GRPC_COMPRESS_DEFLATE},
  };
  for (const Row& row : rows) {
    grpc::TemplatedGenericStub<WireRequest, Authorization> generic(NewChannel(server_->port()));
    WireRequest req;
    req.set_openid(row.openid);
    req.set_organization_id(row.org);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    ctx.set_compression_algorithm(row.compression);
    Authorization a;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&ctx, kMethod, grpc::StubOptions(), &req, &a,
                      [&done](grpc::Status s) { done.set_value(std::move(s)); });
    grpc::Status s = done.get_future().get();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << row.name << ": " << s.error_message();
    EXPECT_TRUE(s.error_details().empty()) << row.name << ": answered by our service, not the transport";
  }
  EXPECT_EQ(SandboxRequestsTotal(), before);
  ExpectHealthyAndServing();
}

TEST_F(HostileCallersTest, HugeMetadataIsRefusedAndTheGatewayKeepsServing) {
  StartGateway();
  const int64_t before = SandboxRequestsTotal();
  struct Row {
    const char* name;
    std::vector<std::pair<std::string, std::string>> metadata;
    bool or_dropped;
  };
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 2000; ++i) many.emplace_back(absl::StrCat("x-h", i), "v");
  // Beyond gRPC's 8 KiB metadata limit: an oversized value is refused on its
  // stream with RESOURCE_EXHAUSTED. Hundreds of small entries get either that
  // or, from gRPC 1.51 itself, the whole connection dropped (UNAVAILABLE
  // "Socket closed"), depending on how the header frames fall: `or_dropped`.
  // Each row has its own connection.
  const Row rows[] = {
      {"one 64 KiB value", {{"x-big", std::string(64 * 1024, 'm')}}, false},
      {"one 1 MiB value", {{"x-big", std::string(1 << 20, 'm')}}, false},
      {"1 MiB x-request-id", {{"x-request-id", std::string(1 << 20, 'r')}}, false},
      {"300 small entries", {many.begin(), many.begin() + 300}, true},
      {"2000 small entries", many, true},
  };
  for (const Row& row : rows) {
    Authorization a;
    grpc::Status s = RawCall(kRealOpenid, "1004", &a, row.metadata, NewChannel(server_->port()));
    if (row.or_dropped && s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      EXPECT_EQ(s.error_message(), "Socket closed") << row.name;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << row.name << ": " << s.error_message();
    }
    EXPECT_EQ(a.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED) << row.name;
  }
  EXPECT_EQ(SandboxRequestsTotal(), before);
  // Under the limit, an unusable x-request-id is replaced, not echoed.
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-request-id", std::string(4000, 'r'));
  GetAuthorizationRequest req;
  req.set_openid(kRealOpenid);
  req.set_organization_id("1004");
  Authorization a;
  grpc::Status s = stub_->GetAuthorization(&ctx, req, &a);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  auto echoed = ctx.GetServerInitialMetadata().find("x-request-id");
  ASSERT_NE(echoed, ctx.GetServerInitialMetadata().end());
  EXPECT_EQ(echoed->second.size(), 32u);
  ExpectHealthyAndServing();
}

TEST_F(HostileCallersTest, ThousandConcurrentStreamsOnOneConnectionAreAllAnswered) {
  StartGateway();
  constexpr int kCalls = 1000;
  std::vector<grpc::ClientContext> ctx(kCalls);
  std::vector<GetAuthorizationRequest> req(kCalls);
  std::vector<Authorization> resp(kCalls);
  std::vector<std::promise<grpc::Status>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    req[i].set_openid(i % 2 ? "o-off" : kRealOpenid);
    req[i].set_organization_id("1004");
    ctx[i].set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stub_->async()->GetAuthorization(&ctx[i], &req[i], &resp[i], [&done, i](grpc::Status s) { done[i].set_value(s); });
  }
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status s = done[i].get_future().get();
    EXPECT_TRUE(s.ok()) << i << ": " << s.error_message();
    if (!s.ok()) continue;
    ++ok;
    EXPECT_EQ(resp[i].state(), i % 2 ? palmgate::v1::AUTHORIZATION_STATE_OFF : palmgate::v1::AUTHORIZATION_STATE_ON);
    EXPECT_EQ(resp[i].openid(), req[i].openid());
  }
  EXPECT_EQ(ok, kCalls);
  EXPECT_TRUE(WaitFor([&] { return core_->transport->InFlight() == 0; }, absl::Seconds(5)));
  ExpectHealthyAndServing();
}

TEST_F(HostileCallersTest, StreamLimitQueuesTheRestOfTheStreamsOnOneConnection) {
  constexpr int kLimit = 16;
  GrpcServerOptions options;
  options.max_concurrent_streams = kLimit;
  StartGateway([](GatewayConfig& c) { c.coalesce = false; }, std::move(options));
  constexpr int kCalls = 200;  // each held ~100 ms upstream by the sandbox
  std::atomic<bool> sampling{true};
  std::atomic<int64_t> peak{0};
  std::thread sampler([&] {
    while (sampling.load()) {
      const int64_t n = core_->transport->InFlight();
      if (n > peak.load()) peak.store(n);
      absl::SleepFor(absl::Milliseconds(1));  // a measurement, not a synchronisation
    }
  });
  std::vector<grpc::ClientContext> ctx(kCalls);
  std::vector<GetAuthorizationRequest> req(kCalls);
  std::vector<Authorization> resp(kCalls);
  std::vector<std::promise<grpc::Status>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    req[i].set_openid("f-lag");
    req[i].set_organization_id("1004");
    ctx[i].set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stub_->async()->GetAuthorization(&ctx[i], &req[i], &resp[i], [&done, i](grpc::Status s) { done[i].set_value(s); });
  }
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status s = done[i].get_future().get();
    EXPECT_TRUE(s.ok()) << i << ": " << s.error_message();
    if (s.ok() && resp[i].state() == palmgate::v1::AUTHORIZATION_STATE_OFF) ++ok;
  }
  sampling.store(false);
  sampler.join();
  EXPECT_EQ(ok, kCalls);  // the excess streams wait; none is refused
  EXPECT_LE(peak.load(), kLimit);
  EXPECT_GT(peak.load(), 1);
  ExpectHealthyAndServing();
}

TEST_F(HostileCallersTest, CallsCancelledMidFlightReleaseEveryUpstreamTransfer) {
  StartGateway([](GatewayConfig& c) { c.coalesce = false; });
  constexpr int kCalls = 50;
  std::vector<grpc::ClientContext> ctx(kCalls);
  std::vector<GetAuthorizationRequest> req(kCalls);
  std::vector<Authorization> resp(kCalls);
  std::vector<std::promise<grpc::Status>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    req[i].set_openid("f-slow");
    req[i].set_organization_id("1004");
    stub_->async()->GetAuthorization(&ctx[i], &req[i], &resp[i], [&done, i](grpc::Status s) { done[i].set_value(s); });
  }
  ASSERT_TRUE(WaitFor([&] { return core_->transport->InFlight() == kCalls; }, absl::Seconds(5)));
  const absl::Time cancelled_at = absl::Now();
  for (auto& c : ctx) c.TryCancel();
  for (auto& d : done) EXPECT_EQ(d.get_future().get().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] { return core_->transport->InFlight() == 0; }, absl::Seconds(2)));
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(2));  // well before the sandbox's 3 s answers
  ExpectHealthyAndServing();
}

TEST_F(HostileCallersTest, ClientsThatVanishMidCallReleaseEveryUpstreamTransfer) {
  StartGateway([](GatewayConfig& c) { c.coalesce = false; });
  DroppingRelay relay(server_->port());
  constexpr int kChannels = 5;
  constexpr int kCallsPerChannel = 10;
  constexpr int kCalls = kChannels * kCallsPerChannel;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<PalmAuthorization::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    channels.push_back(NewChannel(relay.port()));
    stubs.push_back(PalmAuthorization::NewStub(channels.back()));
  }
  std::vector<grpc::ClientContext> ctx(kCalls);
  std::vector<GetAuthorizationRequest> req(kCalls);
  std::vector<Authorization> resp(kCalls);
  std::vector<std::promise<grpc::Status>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    req[i].set_openid("f-slow");
    req[i].set_organization_id("1004");
    ctx[i].set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    stubs[i % kChannels]->async()->GetAuthorization(&ctx[i], &req[i], &resp[i],
                                                     [&done, i](grpc::Status s) { done[i].set_value(s); });
  }
  ASSERT_TRUE(WaitFor([&] { return core_->transport->InFlight() == kCalls; }, absl::Seconds(5)));
  const absl::Time dropped_at = absl::Now();
  relay.DropAll();
  // The gateway notices the dead connections and cancels their upstream transfers.
  EXPECT_TRUE(WaitFor([&] { return core_->transport->InFlight() == 0; }, absl::Seconds(2)));
  EXPECT_LT(absl::Now() - dropped_at, absl::Seconds(2));  // well before the sandbox's 3 s answers
  for (auto& d : done) EXPECT_NE(d.get_future().get().error_code(), grpc::StatusCode::OK);
  stubs.clear();
  channels.clear();
  ExpectHealthyAndServing();
}

}  // namespace
}  // namespace palmgate
