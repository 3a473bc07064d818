// The real `palmgate` binary as operators run it in a cluster: TLS and mTLS
// on the gRPC port (refusing strangers, picking up a rotated certificate),
// Prometheus metrics scraped from --metrics_listen, one JSON log object per
// line with correlation ids, the keepalive / connection-age settings, and the
// handshake timeout on a TLS port.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "server/crypto/rsa.h"
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
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOpenid[] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

// A raw TCP connection to `address` ("127.0.0.1:port"); -errno on failure.
int RawConnect(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) return -EINVAL;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr) != 1) return -EINVAL;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    const int error = errno;
    ::close(fd);
    return -error;
  }
  return fd;
}

// True when the peer closed or reset `fd` within `timeout` (bytes it sent first are skipped).
bool ClosedByPeer(int fd, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    pollfd p = {fd, POLLIN, 0};
    const int64_t left = std::max<int64_t>(0, absl::ToInt64Milliseconds(until - absl::Now()));
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
  }
}

// A test CA and the certificates it issues (keys made at test time).
class TestCa {
 public:
  static std::unique_ptr<TestCa> Create(const std::string& name) {
    auto key = crypto::RsaPrivateKey::Generate();
    if (!key.ok()) return nullptr;
    crypto::CertificateSpec spec;
    spec.common_name = name;
    spec.is_ca = true;
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    auto pem = crypto::IssueCertificate(spec, key->PublicKey(), *key, nullptr);
    if (!pem.ok()) return nullptr;
    auto cert = crypto::Certificate::FromPem(*pem);
    if (!cert.ok()) return nullptr;
    return std::unique_ptr<TestCa>(new TestCa(*std::move(key), *std::move(cert), *pem));
  }

  // Returns {certificate PEM, private key PEM}: a server certificate for
  // 127.0.0.1 and localhost, or a client certificate (no SAN: IssueCertificate
  // then sets no serverAuth-only extended key usage).
  std::pair<std::string, std::string> Issue(const std::string& common_name, bool server = true) const {
    auto key = crypto::RsaPrivateKey::Generate();
    EXPECT_THAT(key, IsOk());
    crypto::CertificateSpec spec;
    spec.common_name = common_name;
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    if (server) {
      spec.dns_name = "localhost";
      spec.ip_address = "127.0.0.1";
    }
    auto pem = crypto::IssueCertificate(spec, key->PublicKey(), key_, &cert_);
    EXPECT_THAT(pem, IsOk());
    return {*pem, key->ToPkcs8Pem()};
  }

  const std::string& pem() const { return pem_; }

 private:
  TestCa(crypto::RsaPrivateKey key, crypto::Certificate cert, std::string pem)
      : key_(std::move(key)), cert_(std::move(cert)), pem_(std::move(pem)) {}
  crypto::RsaPrivateKey key_;
  crypto::Certificate cert_;
  std::string pem_;
};

class OpsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SandboxProcessOptions options;
    options.tls = true;
    options.faults = true;
    options.seed_json = absl::StrCat(R"({"users":[{"openid":")", kOpenid,
                                     R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
        {"openid":"o-corrupt","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"corrupt_signature"},
        {"openid":"o-limited","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"status=429"},
        {"openid":"o-slow","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"latency=1500"}]})");
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    sandbox_ = *std::move(sandbox);
    auto dir = testing::MakeTempDir("palmgate-ops");
    ASSERT_THAT(dir, IsOk());
    dir_ = *dir;
  }

  // Starts the gateway configured by PALMGATE_* (plus `env` and `flags`).
  void StartGateway(const std::vector<std::string>& flags, std::vector<std::string> env = {}) {
    auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    std::vector<std::string> base = testing::GatewayEnvironmentFor(*sandbox_, *merchant);
    env.insert(env.begin(), base.begin(), base.end());
    std::vector<std::string> args = {PALMGATE_GATEWAY_BINARY};
    args.insert(args.end(), flags.begin(), flags.end());
    auto gateway = ListeningProcess::Start(args, absl::Seconds(30), log_path(), env);
    ASSERT_THAT(gateway, IsOk());
    gateway_ = *std::move(gateway);
  }

  std::string log_path() const { return dir_ + "/palmgate.log"; }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  void Write(const std::string& name, const std::string& contents) {
    // Replaced atomically, as Kubernetes secret volumes and careful operators do.
    ASSERT_THAT(WriteFile(Path(name) + ".tmp", contents, 0600), IsOk());
    ASSERT_EQ(::rename((Path(name) + ".tmp").c_str(), Path(name).c_str()), 0);
  }

  static std::shared_ptr<grpc::Channel> Channel(const std::string& address,
                                                std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a fresh connection per channel
    return grpc::CreateCustomChannel(address, std::move(creds), args);
  }

  static std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& root, const std::string& cert = "",
                                                       const std::string& key = "") {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = root;
    options.pem_cert_chain = cert;
    options.pem_private_key = key;
    return grpc::SslCredentials(options);
  }

  static grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel, const std::string& openid,
                           const std::vector<std::pair<std::string, std::string>>& metadata = {},
                           absl::Duration timeout = absl::Seconds(10)) {
    auto stub = palmgate::v1::PalmAuthorization::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    for (const auto& [k, v] : metadata) ctx.AddMetadata(k, v);
    palmgate::v1::GetAuthorizationRequest req;
    req.set_openid(openid);
    req.set_organization_id("1004");
    palmgate::v1::Authorization out;
    return stub->GetAuthorization(&ctx, req, &out);
  }

  // The JSON log objects written so far.
  std::vector<nlohmann::json> LogObjects() {
    std::vector<nlohmann::json> out;
    auto log = ReadFile(log_path());
    EXPECT_THAT(log, IsOk());
    if (!log.ok()) return out;
    for (absl::string_view line : absl::StrSplit(*log, '\n', absl::SkipEmpty())) {
      nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
      EXPECT_TRUE(j.is_object()) << "not a JSON object: " << line;
      if (j.is_object()) out.push_back(std::move(j));
    }
    return out;
  }

  std::unique_ptr<SandboxProcess> sandbox_;
  std::unique_ptr<ListeningProcess> gateway_;
  std::string dir_;
};

TEST_F(OpsProcessTest, MutualTlsRefusesClientsWithoutACertificateOrFromAnotherCa) {
  auto server_ca = TestCa::Create("palmgate test server CA");
  auto client_ca = TestCa::Create("palmgate test client CA");
  auto stranger_ca = TestCa::Create("some other CA");
  ASSERT_TRUE(server_ca && client_ca && stranger_ca);
  auto [server_cert, server_key] = server_ca->Issue("palmgate");
  Write("server.pem", server_cert);
  Write("server.key", server_key);
  Write("clients_ca.pem", client_ca->pem());
  StartGateway({}, {"PALMGATE_TLS_CERT=" + Path("server.pem"), "PALMGATE_TLS_KEY=" + Path("server.key"),
                    "PALMGATE_TLS_CLIENT_CA=" + Path("clients_ca.pem")});
  const std::string addr = gateway_->address();

  auto [good_cert, good_key] = client_ca->Issue("caller", /*server=*/false);
  grpc::Status s = Call(Channel(addr, Tls(server_ca->pem(), good_cert, good_key)), kOpenid);
  EXPECT_TRUE(s.ok()) << s.error_message();

  s = Call(Channel(addr, Tls(server_ca->pem())), kOpenid, {}, absl::Seconds(3));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << "no client certificate: " << s.error_message();

  auto [stranger_cert, stranger_key] = stranger_ca->Issue("stranger", /*server=*/false);
  s = Call(Channel(addr, Tls(server_ca->pem(), stranger_cert, stranger_key)), kOpenid, {}, absl::Seconds(3));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << "certificate from another CA: " << s.error_message();

  s = Call(Channel(addr, grpc::InsecureChannelCredentials()), kOpenid, {}, absl::Seconds(3));
  EXPECT_FALSE(s.ok()) << "plain text must be refused on a TLS port";
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
}

TEST_F(OpsProcessTest, TlsPicksUpARotatedServerCertificateWithoutARestart) {
  auto old_ca = TestCa::Create("palmgate old CA");
  auto new_ca = TestCa::Create("palmgate new CA");
  ASSERT_TRUE(old_ca && new_ca);
  auto [cert1, key1] = old_ca->Issue("palmgate");
  Write("server.pem", cert1);
  Write("server.key", key1);
  StartGateway({"--tls_cert=" + Path("server.pem"), "--tls_key=" + Path("server.key"), "--tls_reload_interval=1s"});
  const std::string addr = gateway_->address();
  grpc::Status s = Call(Channel(addr, Tls(old_ca->pem())), kOpenid);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(Call(Channel(addr, Tls(new_ca->pem())), kOpenid, {}, absl::Seconds(3)).ok());

  // Rotate: key first, then the certificate (the provider skips a pair that does not match).
  auto [cert2, key2] = new_ca->Issue("palmgate");
  const int pid_before = gateway_->pid();
  Write("server.key", key2);
  Write("server.pem", cert2);
  const absl::Time until = absl::Now() + absl::Seconds(20);
  do {
    s = Call(Channel(addr, Tls(new_ca->pem())), kOpenid, {}, absl::Seconds(3));
  } while (!s.ok() && absl::Now() < until);
  EXPECT_TRUE(s.ok()) << "the rotated certificate was not served: " << s.error_message();
  EXPECT_EQ(gateway_->pid(), pid_before);
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
}

TEST_F(OpsProcessTest, TlsSettingsAreCheckedAtStartUp) {
  auto ca = TestCa::Create("palmgate CA");
  ASSERT_TRUE(ca);
  auto [cert, key] = ca->Issue("palmgate");
  auto [other_cert, other_key] = ca->Issue("other");
  Write("server.pem", cert);
  Write("other.key", other_key);
  auto started = ListeningProcess::Start(
      {PALMGATE_GATEWAY_BINARY, "--tls_cert=" + Path("server.pem"), "--tls_key=" + Path("other.key"),
       "--mchid=1", "--merchant_serial=1", "--merchant_private_key=/nonexistent"},
      absl::Seconds(30), log_path());
  EXPECT_FALSE(started.ok());
  auto log = ReadFile(log_path());
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(*log, HasSubstr("--tls_key: does not belong to the certificate in --tls_cert"));
}

// With TLS, --handshake_timeout bounds the TLS handshake and then the client's
// HTTP/2 preface and SETTINGS (gRPC's chttp2 server applies one deadline to both).
TEST_F(OpsProcessTest, TlsConnectionsThatSendNoHttp2SettingsAreClosedAtTheHandshakeTimeout) {
  auto ca = TestCa::Create("palmgate CA");
  ASSERT_TRUE(ca);
  auto [cert, key] = ca->Issue("palmgate");
  Write("server.pem", cert);
  Write("server.key", key);
  StartGateway({"--tls_cert=" + Path("server.pem"), "--tls_key=" + Path("server.key"), "--handshake_timeout=1s"});
  const std::string addr = gateway_->address();

  const int silent = RawConnect(addr);  // never starts TLS
  ASSERT_GE(silent, 0);
  const int after_tls = RawConnect(addr);  // completes TLS, then sends nothing
  ASSERT_GE(after_tls, 0);
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  ASSERT_NE(ctx, nullptr);
  static constexpr unsigned char kAlpn[] = {2, 'h', '2'};
  ASSERT_EQ(SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn)), 0);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  ASSERT_NE(ssl, nullptr);
  SSL_set_fd(ssl.get(), after_tls);
  ASSERT_EQ(SSL_connect(ssl.get()), 1) << "the TLS handshake with the gateway failed";

  EXPECT_TRUE(ClosedByPeer(silent, absl::Seconds(30))) << "silent TCP connection still open";
  EXPECT_TRUE(ClosedByPeer(after_tls, absl::Seconds(30))) << "TLS connection without HTTP/2 still open";
  ::close(silent);
  ssl.reset();
  ::close(after_tls);
  grpc::Status s = Call(Channel(addr, Tls(ca->pem())), kOpenid);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
}

// The value of the sample `series` (name with labels, exactly as exposed), or -1.
double Sample(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) return std::stod(std::string(line.substr(series.size() + 1)));
  }
  return -1;
}

TEST_F(OpsProcessTest, MetricsScrapeShowsRpcsUpstreamVerificationAndKeysWithoutUserData) {
  StartGateway({"--metrics_listen=127.0.0.1:0"});
  std::string metrics_address;
  for (const nlohmann::json& j : LogObjects()) {
    if (j.value("message", "") == "metrics serving") metrics_address = j.value("address", "");
  }
  ASSERT_FALSE(metrics_address.empty()) << "no 'metrics serving' log line";
  auto channel = Channel(gateway_->address(), grpc::InsecureChannelCredentials());
  EXPECT_TRUE(Call(channel, kOpenid).ok());
  EXPECT_EQ(Call(channel, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Call(channel, "o-corrupt").error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Call(channel, "o-limited").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  testing::TestHttpRequest request;
  request.target = "/metrics";
  auto scraped = testing::HttpFetch("http://" + metrics_address, request);
  ASSERT_THAT(scraped, IsOk());
  ASSERT_EQ(scraped->status, 200);
  const std::string& text = scraped->body;
  const std::string method = "method=\"/palmgate.v1.PalmAuthorization/GetAuthorization\"";
  EXPECT_EQ(Sample(text, "palmgate_rpc_requests_total{code=\"OK\"," + method + "}"), 1) << text;
  EXPECT_EQ(Sample(text, "palmgate_rpc_requests_total{code=\"INVALID_ARGUMENT\"," + method + "}"), 1);
  EXPECT_EQ(Sample(text, "palmgate_rpc_requests_total{code=\"INTERNAL\"," + method + "}"), 1);
  EXPECT_EQ(Sample(text, "palmgate_rpc_duration_seconds_count{" + method + "}"), 4);
  EXPECT_EQ(Sample(text, "palmgate_rpc_in_flight"), 0);
  const std::string host = "host=\"" + sandbox_->base_url() + "\"";
  EXPECT_EQ(Sample(text, "palmgate_upstream_requests_total{" + host + ",status=\"200\",wechatpay_code=\"none\"}"), 2);
  // A 429 is answered as RESOURCE_EXHAUSTED at once: one upstream request, no retry.
  EXPECT_EQ(Sample(text, "palmgate_upstream_requests_total{" + host +
                             ",status=\"429\",wechatpay_code=\"RATELIMIT_EXCEEDED\"}"), 1);
  EXPECT_GE(Sample(text, "palmgate_upstream_duration_seconds_count{" + host + "}"), 3);
  EXPECT_EQ(Sample(text, "palmgate_verification_failures_total{reason=\"RESPONSE_SIGNATURE_INVALID\"}"), 1);
  EXPECT_EQ(Sample(text, "palmgate_upstream_attempts_total"), 3);
  EXPECT_EQ(Sample(text, "palmgate_upstream_retries_total"), 0);
  EXPECT_EQ(Sample(text, "palmgate_upstream_failovers_total"), 0);
  // Every attempt is signed anew (plus any certificate download); signing costs CPU.
  EXPECT_GE(Sample(text, "palmgate_signatures_total"), Sample(text, "palmgate_upstream_attempts_total"));
  EXPECT_GT(Sample(text, "palmgate_signing_cpu_seconds_total"), 0);
  EXPECT_EQ(Sample(text, "palmgate_coalesced_calls_total"), 0);
  EXPECT_EQ(Sample(text, "palmgate_verification_keys"), 2);  // public key + platform certificate
  EXPECT_GT(Sample(text, "palmgate_certificate_expiry_seconds"), 86400);
  EXPECT_GT(Sample(text, "palmgate_last_key_refresh_timestamp_seconds"), absl::ToUnixSeconds(absl::Now()) - 600);
  EXPECT_THAT(text, HasSubstr("palmgate_clock_skew_seconds "));
  EXPECT_EQ(Sample(text, "palmgate_serving"), 1);
  EXPECT_THAT(text, Not(HasSubstr(kOpenid)));
  EXPECT_THAT(text, Not(HasSubstr("o-corrupt")));
  EXPECT_THAT(text, Not(HasSubstr("o-limited")));
  channel.reset();
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
}

TEST_F(OpsProcessTest, MetricsCountCallsThatJoinAnIdenticalCallInFlight) {
  StartGateway({"--metrics_listen=127.0.0.1:0", "--coalesce=true"});
  std::string metrics_address;
  for (const nlohmann::json& j : LogObjects()) {
    if (j.value("message", "") == "metrics serving") metrics_address = j.value("address", "");
  }
  ASSERT_FALSE(metrics_address.empty()) << "no 'metrics serving' log line";
  auto scrape = [&]() -> std::string {
    testing::TestHttpRequest request;
    request.target = "/metrics";
    auto scraped = testing::HttpFetch("http://" + metrics_address, request);
    EXPECT_THAT(scraped, IsOk());
    return scraped.ok() ? scraped->body : "";
  };
  EXPECT_EQ(Sample(scrape(), "palmgate_coalesced_calls_total"), 0);

  // Four identical queries at once; the sandbox answers this user after 1.5 s,
  // so the first one's upstream call is still in flight when the others arrive.
  constexpr int kCalls = 4;
  auto channel = Channel(gateway_->address(), grpc::InsecureChannelCredentials());
  auto stub = palmgate::v1::PalmAuthorization::NewStub(channel);
  struct Pending {
    grpc::ClientContext ctx;
    palmgate::v1::GetAuthorizationRequest request;
    palmgate::v1::Authorization response;
    grpc::Status status;
  };
  std::vector<Pending> calls(kCalls);
  absl::Mutex mu;
  int done = 0;
  for (Pending& call : calls) {
    call.ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    call.request.set_openid("o-slow");
    call.request.set_organization_id("1004");
    stub->async()->GetAuthorization(&call.ctx, &call.request, &call.response, [&mu, &done, &call](grpc::Status s) {
      absl::MutexLock lock(&mu);
      call.status = std::move(s);
      ++done;
    });
  }
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* d) { return *d == kCalls; }, &done));
  }
  for (const Pending& call : calls) EXPECT_TRUE(call.status.ok()) << call.status.error_message();

  const std::string text = scrape();
  const double coalesced = Sample(text, "palmgate_coalesced_calls_total");
  const double upstream_ok = Sample(
      text, "palmgate_upstream_requests_total{host=\"" + sandbox_->base_url() + "\",status=\"200\",wechatpay_code=\"none\"}");
  EXPECT_GE(coalesced, 1) << text;
  // Every call either made the upstream request or joined one: nothing is counted twice or lost.
  EXPECT_EQ(coalesced + upstream_ok, kCalls) << text;
  EXPECT_THAT(text, Not(HasSubstr("o-slow")));
  channel.reset();
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
}

TEST_F(OpsProcessTest, LogsOneJsonObjectPerLineWithRequestAndTraceIds) {
  StartGateway({"--log_level=info"});
  auto channel = Channel(gateway_->address(), grpc::InsecureChannelCredentials());
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  ASSERT_TRUE(Call(channel, kOpenid,
                   {{"x-request-id", "req-42"}, {"traceparent", "00-" + trace_id + "-00f067aa0ba902b7-01"}})
                  .ok());
  EXPECT_EQ(Call(channel, "o-limited").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  channel.reset();
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
  std::vector<nlohmann::json> rpcs;
  for (const nlohmann::json& j : LogObjects()) {
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("message")) << j.dump();
    if (j.value("message", "") == "rpc") rpcs.push_back(j);
  }
  ASSERT_EQ(rpcs.size(), 2u);
  const nlohmann::json& ok = rpcs[0];
  EXPECT_EQ(ok.value("method", ""), "/palmgate.v1.PalmAuthorization/GetAuthorization");
  EXPECT_EQ(ok.value("code", -1), 0);
  EXPECT_TRUE(ok.contains("latency_ms"));
  EXPECT_EQ(ok.value("x_request_id", ""), "req-42");
  EXPECT_EQ(ok.value("trace_id", ""), trace_id);
  EXPECT_THAT(ok.value("wechatpay_request_id", ""), ::testing::MatchesRegex("[0-9A-Fa-f]+"));
  EXPECT_EQ(ok.value("upstream_host", ""), sandbox_->base_url());
  EXPECT_EQ(ok.value("attempts", 0), 1);
  EXPECT_THAT(ok.value("openid", ""), ::testing::StartsWith("sha256:"));
  const nlohmann::json& limited = rpcs[1];
  EXPECT_EQ(limited.value("code", -1), 8);
  EXPECT_EQ(limited.value("x_request_id", "").size(), 32u) << "generated when the caller sends none";
  EXPECT_FALSE(limited.contains("trace_id"));
  EXPECT_EQ(limited.value("http_status", 0), 429);
  EXPECT_EQ(limited.value("wechatpay_code", ""), "RATELIMIT_EXCEEDED");
  EXPECT_EQ(limited.value("reason", ""), "UPSTREAM_RATE_LIMITED");
  auto log = ReadFile(log_path());
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(*log, Not(HasSubstr(kOpenid)));
  EXPECT_THAT(*log, Not(HasSubstr("o-limited")));
  EXPECT_THAT(*log, Not(HasSubstr("WECHATPAY2-")));
  EXPECT_THAT(*log, Not(HasSubstr("PRIVATE KEY")));
}

TEST_F(OpsProcessTest, LogLevelErrorDropsInfoLines) {
  StartGateway({}, {"PALMGATE_LOG_LEVEL=error"});
  auto channel = Channel(gateway_->address(), grpc::InsecureChannelCredentials());
  ASSERT_TRUE(Call(channel, kOpenid).ok());
  channel.reset();
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
  for (const nlohmann::json& j : LogObjects()) EXPECT_EQ(j.value("level", ""), "error") << j.dump();
}

TEST_F(OpsProcessTest, ConnectionAgeAndKeepaliveRecycleConnectionsWithoutFailingRpcs) {
  StartGateway({"--keepalive_time=1s", "--keepalive_timeout=5s", "--max_concurrent_streams=8"},
               {"PALMGATE_MAX_CONNECTION_AGE=1s", "PALMGATE_MAX_CONNECTION_AGE_GRACE=5s"});
  auto channel = Channel(gateway_->address(), grpc::InsecureChannelCredentials());
  // Calls over three connection ages on one channel: GOAWAYs make the client reconnect, no call fails.
  int calls = 0;
  const absl::Time until = absl::Now() + absl::Seconds(3.5);
  while (absl::Now() < until) {
    grpc::Status s = Call(channel, kOpenid);
    ASSERT_TRUE(s.ok()) << "call " << calls << ": " << s.error_message();
    ++calls;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GT(calls, 10);
  channel.reset();
  EXPECT_THAT(gateway_->Stop(), IsOkAndHolds(0));
}

}  // namespace
}  // namespace palmgate
