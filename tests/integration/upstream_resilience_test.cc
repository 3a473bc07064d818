// The upstream link under failure, against real sandboxes over loopback:
// retries (re-signed, backoff, deadline-bounded, never on 4xx, 429 included),
// failover to the backup host and the circuit breaker, an egress CONNECT
// proxy, idle connections closed by the server, and refresh-on-unknown-serial.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "server/wechatpay/curl_transport.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/palm_service_client.h"
#include "server/wechatpay/rsa_signer.h"
#include "tests/testing/child_process.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::ListeningProcess;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;
using ::palmgate::testing::StatusIs;

constexpr char kFaultySeed[] = R"({"users":[
  {"openid":"u-ok","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
  {"openid":"u-503","organization_id":"1004","fault":"status=503:SERVICE_UNAVAILABLE"},
  {"openid":"u-500","organization_id":"1004","fault":"status=500:SYSTEM_ERROR"},
  {"openid":"u-429","organization_id":"1004","fault":"status=429:FREQUENCY_LIMITED"},
  {"openid":"u-400","organization_id":"1004","fault":"status=400:PARAM_ERROR"},
  {"openid":"u-probe","organization_id":"1004","fault":"probe_signature"},
  {"openid":"u-slow","organization_id":"1004","fault":"latency=2000"},
  {"openid":"u-serial","organization_id":"1004","fault":"unknown_serial"}
]})";
constexpr char kHealthySeed[] = R"({"users":[
  {"openid":"u-ok","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
  {"openid":"u-503","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF"},
  {"openid":"u-slow","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF"}
]})";

// A free loopback port with nothing listening (connections are refused).
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class CountingRefresher final : public KeyRefresher {
 public:
  void RefreshForUnknownSerial(absl::string_view, Callback done) override {
    calls.fetch_add(1);
    std::move(done)(absl::OkStatus());
  }
  std::atomic<int> calls{0};
};

class ResilienceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SandboxProcessOptions options;
    options.faults = true;
    options.seed_json = kFaultySeed;
    auto primary = SandboxProcess::Start(options);
    ASSERT_THAT(primary, IsOk());
    primary_ = *std::move(primary);
    auto merchant = SandboxMerchant::Load(primary_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    merchant_ = std::make_unique<SandboxMerchant>(*std::move(merchant));
    KeyRing::Builder b;
    ASSERT_THAT(b.AddPublicKeyPem(merchant_->public_key_id(), *ReadFile(primary_->keys_dir() + "/pub_key.pem")),
                IsOk());
    keys_ = std::make_unique<SwappableKeyStore>(*std::move(b).Build(absl::Now()));
    auto transport = CurlTransport::Create({});
    ASSERT_THAT(transport, IsOk());
    transport_ = *std::move(transport);
  }

  std::unique_ptr<SandboxProcess> StartBackup(const std::vector<std::string>& extra = {}) {
    SandboxProcessOptions options;
    options.keys_dir = primary_->keys_dir();  // same merchant, same WeChat Pay keys
    options.seed_json = kHealthySeed;
    options.extra_flags = extra;
    auto backup = SandboxProcess::Start(options);
    EXPECT_THAT(backup, IsOk());
    return backup.ok() ? *std::move(backup) : nullptr;
  }

  std::unique_ptr<PalmServiceClient> Client(PalmServiceClient::Options options, const Clock& clock = SystemClock::Get()) {
    auto signer = RsaSha256Signer::FromPemFile(primary_->keys_dir() + "/apiclient_key.pem");
    EXPECT_THAT(signer, IsOk());
    auto cred = std::make_shared<Credential>(merchant_->mchid(), merchant_->merchant_serial(),
                                             std::shared_ptr<const Signer>(*std::move(signer)), clock);
    if (options.base_url == std::string(kProductionBaseUrl)) options.base_url = primary_->base_url();
    options.backoff_base = absl::Milliseconds(5);
    options.backoff_max = absl::Milliseconds(20);
    return std::make_unique<PalmServiceClient>(options, cred, keys_.get(), transport_.get(), clock);
  }

  static absl::StatusOr<AuthorizationResult> Query(PalmServiceClient& client, const std::string& openid,
                                                   absl::Duration timeout = absl::Seconds(10),
                                                   const Clock& clock = SystemClock::Get()) {
    std::promise<absl::StatusOr<AuthorizationResult>> p;
    client.GetAuthorization(openid, "1004", clock.Now() + timeout,
                            [&p](absl::StatusOr<AuthorizationResult> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  // How many requests for `openid` the sandbox received, and their statuses.
  std::vector<int> Seen(SandboxProcess& sandbox, const std::string& openid) {
    testing::TestHttpRequest request;
    request.target = "/_sandbox/requests";
    auto r = testing::HttpFetch(sandbox.base_url(), request);
    EXPECT_THAT(r, IsOk());
    std::vector<int> statuses;
    if (!r.ok()) return statuses;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    const nlohmann::json& list = j.is_array() ? j : j["requests"];
    for (const auto& rec : list) {
      if (rec.value("openid", "") == openid) statuses.push_back(rec.value("status", 0));
    }
    return statuses;
  }

  std::unique_ptr<SandboxProcess> primary_;
  std::unique_ptr<SandboxMerchant> merchant_;
  std::unique_ptr<SwappableKeyStore> keys_;
  std::unique_ptr<CurlTransport> transport_;
};

TEST_F(ResilienceTest, RetriesFiveHundredsReSignedUpToMaxAttempts) {
  auto client = Client({});
  auto r = Query(*client, "u-500");
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(GetUpstreamError(r.status())->wechatpay_code, "SYSTEM_ERROR");
  // Three attempts, each accepted by the sandbox's signature and nonce-replay
  // check (a reused nonce would have been a 401), each answered 500.
  EXPECT_THAT(Seen(*primary_, "u-500"), ::testing::ElementsAre(500, 500, 500));
  EXPECT_EQ(client->GetStats().retries, 2);
}

TEST_F(ResilienceTest, NeverRetriesRateLimitOtherClientErrorsOrBadSignatures) {
  auto client = Client({});
  // 429: retrying would multiply what WeChat Pay asks to reduce; the caller gets the retry hint.
  auto limited = Query(*client, "u-429");
  EXPECT_THAT(limited, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(GetUpstreamError(limited.status())->retry_after, absl::Seconds(1));  // no Retry-After: the floor
  EXPECT_EQ(Seen(*primary_, "u-429").size(), 1u);
  EXPECT_THAT(Query(*client, "u-400"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Seen(*primary_, "u-400").size(), 1u);
  auto probe = Query(*client, "u-probe");
  EXPECT_EQ(GetReason(probe.status()), ErrorReason::kResponseSignatureProbe);
  EXPECT_EQ(Seen(*primary_, "u-probe").size(), 1u);
}

TEST_F(ResilienceTest, NeverRetriesPastTheDeadline) {
  PalmServiceClient::Options options;
  auto client = Client(options);
  // Backoff far longer than the caller's budget: one attempt, then the error.
  auto slow_backoff = std::make_unique<PalmServiceClient>(
      [&] {
        PalmServiceClient::Options o;
        o.base_url = primary_->base_url();
        o.backoff_base = absl::Seconds(5);
        o.backoff_max = absl::Seconds(5);
        return o;
      }(),
      std::make_shared<Credential>(merchant_->mchid(), merchant_->merchant_serial(),
                                   std::shared_ptr<const Signer>(*RsaSha256Signer::FromPemFile(
                                       primary_->keys_dir() + "/apiclient_key.pem")),
                                   SystemClock::Get()),
      keys_.get(), transport_.get(), SystemClock::Get());
  // Full jitter can draw a short wait: repeat so that a long draw must occur, and every call
  // must still end within its 400 ms budget.
  for (int i = 0; i < 5; ++i) {
    const absl::Time start = absl::Now();
    auto r = Query(*slow_backoff, "u-503", absl::Milliseconds(400));
    EXPECT_FALSE(r.ok());
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  }
}

TEST_F(ResilienceTest, FailsOverToTheBackupOnFiveHundreds) {
  auto backup = StartBackup();
  ASSERT_NE(backup, nullptr);
  PalmServiceClient::Options options;
  options.backup_url = backup->base_url();
  auto client = Client(options);
  auto r = Query(*client, "u-503");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->state, "AUTHORIZATION_STATE_OFF");
  EXPECT_EQ(r->host, backup->base_url());
  EXPECT_EQ(r->attempts, 2);
  EXPECT_EQ(client->GetStats().failovers, 1);
}

TEST_F(ResilienceTest, TimeoutBeforeAnswerIsRetriedOnTheBackupWithinBudget) {
  auto backup = StartBackup();
  ASSERT_NE(backup, nullptr);
  PalmServiceClient::Options options;
  options.backup_url = backup->base_url();
  options.attempt_timeout = absl::Milliseconds(300);
  auto client = Client(options);
  const absl::Time start = absl::Now();
  auto r = Query(*client, "u-slow", absl::Seconds(5));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->host, backup->base_url());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));  // the primary would have answered after 2 s
}

TEST_F(ResilienceTest, CircuitBreakerKeepsTrafficOnBackupThenProbesThePrimary) {
  auto backup = StartBackup();
  ASSERT_NE(backup, nullptr);
  const int port = UnusedPort();
  FakeClock clock(absl::Now());  // drives the breaker; kept near real time for signatures
  PalmServiceClient::Options options;
  options.base_url = absl::StrCat("http://127.0.0.1:", port);  // down: connection refused
  options.backup_url = backup->base_url();
  options.breaker_failures = 3;
  options.breaker_open = absl::Seconds(30);
  auto client = Client(options, clock);
  for (int i = 0; i < 3; ++i) {
    auto r = Query(*client, "u-ok", absl::Seconds(10), clock);
    ASSERT_THAT(r, IsOk()) << i;
    EXPECT_EQ(r->attempts, 2) << i;  // primary refused, backup answered
  }
  EXPECT_TRUE(client->GetStats().breaker_open);
  auto while_open = Query(*client, "u-ok", absl::Seconds(10), clock);
  ASSERT_THAT(while_open, IsOk());
  EXPECT_EQ(while_open->attempts, 1);  // straight to the backup
  EXPECT_EQ(while_open->host, backup->base_url());

  // The primary comes back on its port; after the open period one probe finds it.
  SandboxProcessOptions revived;
  revived.keys_dir = primary_->keys_dir();
  revived.seed_json = kHealthySeed;
  revived.extra_flags = {absl::StrCat("--listen=127.0.0.1:", port)};
  auto primary = SandboxProcess::Start(revived);
  ASSERT_THAT(primary, IsOk());
  auto still_open = Query(*client, "u-ok", absl::Seconds(10), clock);
  ASSERT_THAT(still_open, IsOk());
  EXPECT_EQ(still_open->host, backup->base_url());
  clock.Advance(absl::Seconds(31));
  auto probe = Query(*client, "u-ok", absl::Seconds(10), clock);
  ASSERT_THAT(probe, IsOk());
  EXPECT_EQ(probe->host, options.base_url);
  EXPECT_FALSE(client->GetStats().breaker_open);
}

TEST_F(ResilienceTest, EveryCallGoesThroughTheEgressProxy) {
  SandboxProcessOptions options;
  options.keys_dir = primary_->keys_dir();
  options.tls = true;
  options.seed_json = kHealthySeed;
  auto tls = SandboxProcess::Start(options);
  ASSERT_THAT(tls, IsOk());
  auto dir = testing::MakeTempDir("palmgate-proxy");
  ASSERT_THAT(dir, IsOk());
  const std::string proxy_log = *dir + "/proxy.log";
  auto proxy = ListeningProcess::Start({"/usr/bin/python3", PALMGATE_CONNECT_PROXY}, absl::Seconds(30), proxy_log);
  ASSERT_THAT(proxy, IsOk());
  CurlTransport::Options topts;
  topts.proxy = "http://" + (*proxy)->address();
  topts.ca_file = (*tls)->ca_cert_path();
  auto proxied = CurlTransport::Create(topts);
  ASSERT_THAT(proxied, IsOk());
  PalmServiceClient::Options copts;
  copts.base_url = (*tls)->base_url();
  auto signer = RsaSha256Signer::FromPemFile(primary_->keys_dir() + "/apiclient_key.pem");
  ASSERT_THAT(signer, IsOk());
  PalmServiceClient client(copts,
                           std::make_shared<Credential>(merchant_->mchid(), merchant_->merchant_serial(),
                                                        std::shared_ptr<const Signer>(*std::move(signer)),
                                                        SystemClock::Get()),
                           keys_.get(), proxied->get(), SystemClock::Get());
  auto r = Query(client, "u-ok");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->state, "AUTHORIZATION_STATE_ON");
  proxied->reset();  // close the tunnel before reading the log
  EXPECT_THAT((*proxy)->Stop(), IsOk());
  auto log = ReadFile(proxy_log);
  ASSERT_THAT(log, IsOk());
  const std::string hostport((*tls)->base_url().substr(std::string("https://").size()));
  EXPECT_THAT(*log, ::testing::HasSubstr("CONNECT " + hostport));
}

TEST_F(ResilienceTest, ServerClosedIdleConnectionsNeverFailARequest) {
  // WeChat Pay closes idle connections after 8 s; this sandbox after 300 ms.
  auto closing = StartBackup({"--idle_timeout_ms=300"});
  ASSERT_NE(closing, nullptr);
  PalmServiceClient::Options options;
  options.base_url = closing->base_url();
  options.max_attempts = 1;  // a failure must not be hidden by a retry
  auto client = Client(options);
  // Gaps before, around and after the server's idle timeout: each request either reuses a live
  // connection or finds the closed one discarded, never fails. (The gaps are the scenario.)
  for (absl::Duration gap : {absl::Milliseconds(0), absl::Milliseconds(250), absl::Milliseconds(300),
                             absl::Milliseconds(350), absl::Milliseconds(600)}) {
    absl::SleepFor(gap);
    auto r = Query(*client, "u-ok");
    EXPECT_THAT(r, IsOk()) << absl::FormatDuration(gap);
  }
}

TEST_F(ResilienceTest, UnknownSerialRefreshesOnceAndNeverTrustsTheAnswer) {
  CountingRefresher refresher;
  auto client = Client({});
  client->SetKeyRefresher(&refresher);
  auto r = Query(*client, "u-serial");
  EXPECT_EQ(GetReason(r.status()), ErrorReason::kUnknownWechatpaySerial);
  EXPECT_EQ(refresher.calls.load(), 1);  // one refresh, one re-validation, then the error
  EXPECT_EQ(client->GetStats().key_refreshes, 1);
  EXPECT_THAT(Query(*client, "u-ok"), IsOk());
  EXPECT_EQ(refresher.calls.load(), 1);
}

TEST_F(ResilienceTest, MeasuredClockSkewIsKept) {
  SandboxProcessOptions options;
  options.keys_dir = primary_->keys_dir();
  options.seed_json = kHealthySeed;
  options.extra_flags = {"--clock_offset_s=120"};
  auto ahead = SandboxProcess::Start(options);
  ASSERT_THAT(ahead, IsOk());
  PalmServiceClient::Options copts;
  copts.base_url = (*ahead)->base_url();
  auto client = Client(copts);
  auto r = Query(*client, "u-ok");
  ASSERT_THAT(r, IsOk());
  EXPECT_NEAR(absl::ToDoubleSeconds(client->GetStats().last_clock_skew), 120, 3);
  EXPECT_NEAR(absl::ToDoubleSeconds(r->clock_skew), 120, 3);
}

}  // namespace
}  // namespace palmgate::wechatpay
