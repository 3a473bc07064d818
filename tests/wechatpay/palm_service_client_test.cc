// Unit tests of PalmServiceClient's upstream policy on a ScriptedTransport and
// a FakeClock: what is retried (429 never), whose fault a failure is (the
// caller's deadline and cancellation never count against the site), the
// circuit breaker's probe (ends on every outcome, has its own time limit), and
// coalesced calls outliving their first caller's short deadline. Keys are made
// at test time; answers are really signed and verified.
#include "server/wechatpay/palm_service_client.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"
#include "server/wechatpay/response_validator.h"
#include "server/wechatpay/rsa_signer.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/scripted_transport.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::ScriptedTransport;
using ::palmgate::testing::StatusIs;
using Result = absl::StatusOr<AuthorizationResult>;

constexpr char kPrimary[] = "https://primary.test";
constexpr char kBackup[] = "https://backup.test";
constexpr char kPublicKeyId[] = "PUB_KEY_ID_0114232025050200000000000000";
constexpr char kOrg[] = "1004";
const absl::Time kT0 = absl::FromUnixSeconds(1750000000);

class PalmServiceClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto merchant = crypto::RsaPrivateKey::Generate();
    auto wechat = crypto::RsaPrivateKey::Generate();
    ASSERT_THAT(merchant, IsOk());
    ASSERT_THAT(wechat, IsOk());
    merchant_key_ = new crypto::RsaPrivateKey(*std::move(merchant));
    wechat_key_ = new crypto::RsaPrivateKey(*std::move(wechat));
  }
  static void TearDownTestSuite() {
    delete merchant_key_;
    delete wechat_key_;
  }

  PalmServiceClientTest() : clock_(kT0), transport_(clock_) {
    KeyRing::Builder builder;
    EXPECT_THAT(builder.AddPublicKeyPem(kPublicKeyId, wechat_key_->PublicKey().ToPem()), IsOk());
    auto ring = std::move(builder).Build(kT0);
    EXPECT_THAT(ring, IsOk());
    keys_ = std::make_unique<SwappableKeyStore>(*ring);
    options_.base_url = kPrimary;
    options_.backup_url = kBackup;
    options_.max_timeout = absl::Seconds(10);
    options_.attempt_timeout = absl::Seconds(10);
    options_.probe_timeout = absl::Seconds(3);
    options_.breaker_failures = 3;
    options_.breaker_open = absl::Seconds(30);
  }

  PalmServiceClient& Client() {
    if (client_ == nullptr) {
      auto credential = std::make_shared<Credential>("1900000001", "ABCDEF0123",
                                                     std::make_shared<RsaSha256Signer>(*merchant_key_), clock_);
      client_ = std::make_unique<PalmServiceClient>(options_, credential, keys_.get(), &transport_, clock_);
    }
    return *client_;
  }

  // Starts a query ending `timeout` from now; its result lands in results_[slot].
  CallId Start(int slot, const std::string& openid, absl::Duration timeout) {
    return Client().GetAuthorization(openid, kOrg, clock_.Now() + timeout,
                                     [this, slot](Result r) { results_[slot] = std::move(r); });
  }

  // A correctly signed 200 answer for `openid`.
  HttpResponse Answer(const std::string& openid) {
    HttpResponse r;
    r.status = 200;
    r.body = absl::StrCat(R"({"openid":")", openid, R"(","organization_id":")", kOrg,
                          R"(","state":"AUTHORIZATION_STATE_ON"})");
    const std::string ts = absl::StrCat(absl::ToUnixSeconds(clock_.Now()));
    const std::string nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    auto sig = wechat_key_->SignSha256(BuildResponseVerifyMessage(ts, nonce, r.body));
    EXPECT_THAT(sig, IsOk());
    r.headers.Add("Request-ID", "req-ok");
    r.headers.Add("Wechatpay-Timestamp", ts);
    r.headers.Add("Wechatpay-Nonce", nonce);
    r.headers.Add("Wechatpay-Serial", kPublicKeyId);
    r.headers.Add("Wechatpay-Signature", crypto::Base64Encode(*sig));
    return r;
  }

  static HttpResponse ErrorAnswer(int status, std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpResponse r;
    r.status = status;
    r.body = status == 429 ? R"({"code":"FREQUENCY_LIMITED","message":"slow down"})" : R"({"code":"SYSTEM_ERROR"})";
    for (auto& [name, value] : headers) r.headers.Add(name, value);
    return r;
  }

  // The host transfer `id` went to.
  std::string HostOf(ScriptedTransport::TransferId id) const {
    const std::string url = transport_.request(id).url;
    if (absl::StartsWith(url, kPrimary)) return kPrimary;
    if (absl::StartsWith(url, kBackup)) return kBackup;
    return url;
  }

  // The single open transfer (fails the test when there is not exactly one).
  ScriptedTransport::TransferId OnlyOpen() const {
    std::vector<ScriptedTransport::TransferId> open = transport_.open();
    EXPECT_EQ(open.size(), 1u);
    return open.empty() ? 0 : open.front();
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    transport_.RunDue();
  }

  // Opens the breaker: `breaker_failures` calls whose primary attempt answers 503 and whose retry on the
  // backup answers 200.
  void OpenBreaker() {
    for (int i = 0; i < options_.breaker_failures; ++i) {
      Start(900 + i, "o-open", absl::Seconds(5));
      ASSERT_TRUE(transport_.Respond(OnlyOpen(), ErrorAnswer(503)));
      Advance(options_.backoff_max);  // the backoff before the retry
      const ScriptedTransport::TransferId retry = OnlyOpen();
      ASSERT_EQ(HostOf(retry), kBackup);
      ASSERT_TRUE(transport_.Respond(retry, Answer("o-open")));
      ASSERT_THAT(results_[900 + i], IsOk());
    }
    ASSERT_TRUE(Client().GetStats().breaker_open);
  }

  static crypto::RsaPrivateKey* merchant_key_;
  static crypto::RsaPrivateKey* wechat_key_;
  FakeClock clock_;
  ScriptedTransport transport_;
  std::unique_ptr<SwappableKeyStore> keys_;
  PalmServiceClient::Options options_;
  std::unique_ptr<PalmServiceClient> client_;
  std::map<int, Result> results_;
};

crypto::RsaPrivateKey* PalmServiceClientTest::merchant_key_ = nullptr;
crypto::RsaPrivateKey* PalmServiceClientTest::wechat_key_ = nullptr;

// Issue 13 finding 5: 5 RPCs against a rate-limited upstream made 15 upstream requests.
TEST_F(PalmServiceClientTest, RateLimitMakesExactlyOneUpstreamRequestPerCall) {
  for (int i = 0; i < 5; ++i) Start(i, "o-limited", absl::Seconds(10));
  for (ScriptedTransport::TransferId id : transport_.open()) {
    ASSERT_TRUE(transport_.Respond(id, ErrorAnswer(429, {{"Retry-After", "2"}})));
  }
  // Whatever a retry would wait for has passed; nothing more is sent.
  for (int i = 0; i < 10; ++i) Advance(absl::Seconds(1));
  EXPECT_EQ(transport_.sent().size(), 5u);
  EXPECT_TRUE(transport_.open().empty());
  ASSERT_EQ(results_.size(), 5u);
  for (auto& [slot, r] : results_) {
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kResourceExhausted)) << slot;
    EXPECT_EQ(GetReason(r.status()), ErrorReason::kUpstreamRateLimited);
    ASSERT_TRUE(GetUpstreamError(r.status()).has_value());
    EXPECT_EQ(GetUpstreamError(r.status())->retry_after, absl::Seconds(2));
    EXPECT_EQ(GetUpstreamError(r.status())->http_status, 429);
  }
  EXPECT_EQ(Client().GetStats().retries, 0);
}

TEST_F(PalmServiceClientTest, RateLimitRetryHintComesFromAnHttpDateAndIsBounded) {
  Start(1, "o-limited", absl::Seconds(10));
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), ErrorAnswer(429, {{"Date", "Sun, 15 Jun 2025 15:06:40 GMT"},
                                                          {"Retry-After", "Sun, 15 Jun 2025 15:07:10 GMT"}})));
  ASSERT_THAT(results_[1], StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(GetUpstreamError(results_[1].status())->retry_after, absl::Seconds(30));
  Start(2, "o-limited", absl::Seconds(10));
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), ErrorAnswer(429, {{"Retry-After", "31536000"}})));  // a year
  EXPECT_EQ(GetUpstreamError(results_[2].status())->retry_after, kMaxRetryAfter);
  Start(3, "o-limited", absl::Seconds(10));
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), ErrorAnswer(429)));
  EXPECT_EQ(GetUpstreamError(results_[3].status())->retry_after, kMinRetryAfter);
  EXPECT_EQ(transport_.sent().size(), 3u);
}

TEST_F(PalmServiceClientTest, AcceptedNotProcessedIsAskedAgainAfterItsRetryAfter) {
  Start(1, "o-busy", absl::Seconds(10));
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), ErrorAnswer(202, {{"Retry-After", "2"}})));
  Advance(absl::Milliseconds(1999));
  EXPECT_TRUE(transport_.open().empty());  // not before the hint
  Advance(absl::Milliseconds(1));
  const ScriptedTransport::TransferId again = OnlyOpen();
  EXPECT_EQ(HostOf(again), kPrimary);  // the site is up: no failover
  ASSERT_TRUE(transport_.Respond(again, Answer("o-busy")));
  ASSERT_THAT(results_[1], IsOk());
  EXPECT_EQ(results_[1]->attempts, 2);
  // A hint beyond the deadline ends the call at once, with the hint for the caller.
  Start(2, "o-busy", absl::Seconds(10));
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), ErrorAnswer(202, {{"Retry-After", "30"}})));
  EXPECT_THAT(results_[2], StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(GetUpstreamError(results_[2].status())->retry_after, absl::Seconds(30));
}

// Issue 13 finding 6a: 8 calls with a 150 ms deadline against a slow primary sent the next 10 to the backup.
TEST_F(PalmServiceClientTest, CallersShortDeadlinesDoNotOpenTheBreaker) {
  for (int i = 0; i < 8; ++i) Start(i, "o-slow", absl::Milliseconds(150));
  Advance(absl::Milliseconds(150));
  for (int i = 0; i < 8; ++i) {
    EXPECT_THAT(results_[i], StatusIs(absl::StatusCode::kDeadlineExceeded)) << i;
    EXPECT_EQ(GetReason(results_[i].status()), ErrorReason::kUpstreamTimeout);
  }
  EXPECT_TRUE(transport_.open().empty());  // cancelled, not left running
  EXPECT_EQ(transport_.sent().size(), 8u);
  EXPECT_FALSE(Client().GetStats().breaker_open);
  for (int i = 0; i < 10; ++i) {
    Start(100 + i, "o-fast", absl::Seconds(2));
    const ScriptedTransport::TransferId id = OnlyOpen();
    EXPECT_EQ(HostOf(id), kPrimary) << i;
    ASSERT_TRUE(transport_.Respond(id, Answer("o-fast")));
    ASSERT_THAT(results_[100 + i], IsOk());
    EXPECT_EQ(results_[100 + i]->host, kPrimary);
  }
  EXPECT_EQ(Client().GetStats().failovers, 0);
}

TEST_F(PalmServiceClientTest, TransferRunsWithTheGatewaysOwnLimitNotTheCallersDeadline) {
  options_.attempt_timeout = absl::Seconds(4);
  Start(1, "o-slow", absl::Milliseconds(150));
  EXPECT_EQ(transport_.request(OnlyOpen()).timeout, absl::Seconds(4));
  Start(2, "o-slow2", absl::Seconds(30));  // capped by max_timeout, then by attempt_timeout
  EXPECT_EQ(transport_.request(transport_.open().back()).timeout, absl::Seconds(4));
}

TEST_F(PalmServiceClientTest, TheGatewaysOwnAttemptTimeoutStillOpensTheBreaker) {
  options_.attempt_timeout = absl::Seconds(1);
  options_.max_attempts = 1;
  for (int i = 0; i < 3; ++i) {
    Start(i, "o-slow", absl::Seconds(5));
    EXPECT_EQ(HostOf(OnlyOpen()), kPrimary);
    Advance(absl::Seconds(1));
    EXPECT_THAT(results_[i], StatusIs(absl::StatusCode::kDeadlineExceeded));
  }
  EXPECT_TRUE(Client().GetStats().breaker_open);
  Start(10, "o-fast", absl::Seconds(5));
  EXPECT_EQ(HostOf(OnlyOpen()), kBackup);
}

TEST_F(PalmServiceClientTest, CancelledCallsDoNotCountAgainstTheSite) {
  for (int i = 0; i < 5; ++i) Client().Cancel(Start(i, "o-slow", absl::Seconds(5)));
  for (int i = 0; i < 5; ++i) EXPECT_THAT(results_[i], StatusIs(absl::StatusCode::kCancelled));
  EXPECT_FALSE(Client().GetStats().breaker_open);
  Start(10, "o-fast", absl::Seconds(5));
  EXPECT_EQ(HostOf(OnlyOpen()), kPrimary);
}

// Issue 13 finding 6b: a cancelled probe left the breaker probing for good.
TEST_F(PalmServiceClientTest, CancelledProbeEndsProbingAndTrafficReturnsToThePrimary) {
  OpenBreaker();
  Start(1, "o-fast", absl::Seconds(5));
  EXPECT_EQ(HostOf(OnlyOpen()), kBackup);  // open
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), Answer("o-fast")));
  Advance(options_.breaker_open);
  const CallId probe = Start(2, "o-fast", absl::Seconds(5));
  ASSERT_EQ(HostOf(OnlyOpen()), kPrimary);  // the probe
  Client().Cancel(probe);
  EXPECT_THAT(results_[2], StatusIs(absl::StatusCode::kCancelled));
  // The next call probes again, finds the primary healthy, and traffic stays there.
  Start(3, "o-fast", absl::Seconds(5));
  ASSERT_EQ(HostOf(OnlyOpen()), kPrimary);
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), Answer("o-fast")));
  ASSERT_THAT(results_[3], IsOk());
  EXPECT_FALSE(Client().GetStats().breaker_open);
  for (int i = 0; i < 3; ++i) {
    Start(10 + i, "o-fast", absl::Seconds(5));
    EXPECT_EQ(HostOf(OnlyOpen()), kPrimary);
    ASSERT_TRUE(transport_.Respond(OnlyOpen(), Answer("o-fast")));
  }
}

TEST_F(PalmServiceClientTest, ProbeCutByItsCallersDeadlineEndsProbing) {
  OpenBreaker();
  Advance(options_.breaker_open);
  Start(1, "o-fast", absl::Milliseconds(200));
  ASSERT_EQ(HostOf(OnlyOpen()), kPrimary);  // the probe
  Advance(absl::Milliseconds(200));
  EXPECT_THAT(results_[1], StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(transport_.open().empty());
  Start(2, "o-fast", absl::Seconds(5));
  EXPECT_EQ(HostOf(OnlyOpen()), kPrimary);  // probing again, not stuck
}

TEST_F(PalmServiceClientTest, ProbeHasItsOwnTimeLimit) {
  OpenBreaker();
  Advance(options_.breaker_open);
  Start(1, "o-fast", absl::Seconds(10));
  const ScriptedTransport::TransferId probe = OnlyOpen();
  ASSERT_EQ(HostOf(probe), kPrimary);
  EXPECT_EQ(transport_.request(probe).timeout, options_.probe_timeout);
  Advance(options_.probe_timeout);  // the primary never answers: the probe fails, the call retries on the backup
  Advance(options_.backoff_max);
  const ScriptedTransport::TransferId retry = OnlyOpen();
  EXPECT_EQ(HostOf(retry), kBackup);
  ASSERT_TRUE(transport_.Respond(retry, Answer("o-fast")));
  ASSERT_THAT(results_[1], IsOk());
  EXPECT_TRUE(Client().GetStats().breaker_open);  // open again for breaker_open
  Start(2, "o-fast", absl::Seconds(5));
  EXPECT_EQ(HostOf(OnlyOpen()), kBackup);
}

TEST_F(PalmServiceClientTest, ProbeThatNeverReportsIsReleasedAfterItsLimit) {
  OpenBreaker();
  Advance(options_.breaker_open);
  Start(1, "o-fast", absl::Seconds(10));
  ASSERT_EQ(HostOf(OnlyOpen()), kPrimary);  // the probe; its outcome never arrives (no RunDue below)
  clock_.Advance(options_.probe_timeout);
  Start(2, "o-fast", absl::Seconds(10));
  EXPECT_EQ(HostOf(transport_.open().back()), kBackup);  // still within the probe's limit and grace
  clock_.Advance(absl::Seconds(1));
  Start(3, "o-fast", absl::Seconds(10));
  EXPECT_EQ(HostOf(transport_.open().back()), kPrimary);  // lost probe released: a new probe
}

// Issue 13 (breaker round) F2: --upstream_max_connections 4, --upstream_timeout 2s, a healthy primary answering
// in 0.6 s and 40 concurrent callers opened the breaker: time in the gateway's own line for a connection was
// counted against the site. Each attempt's own limit starts when it leaves the line, the call's cap is its
// budget, and a call whose time runs out in (or because of) the line is UPSTREAM_CONNECTIONS_BUSY: not the
// site's fault, no failover, a retry hint for the caller.
TEST_F(PalmServiceClientTest, GatewaysOwnConnectionLineNeverCountsAgainstTheSite) {
  options_.max_timeout = absl::Seconds(2);
  options_.attempt_timeout = absl::Seconds(1);
  transport_.set_max_running(4);
  constexpr int kCalls = 40;
  std::map<ScriptedTransport::TransferId, std::string> openid_of;
  for (int i = 0; i < kCalls; ++i) {
    const std::string openid = absl::StrCat("o-flood-", i);
    Start(i, openid, absl::Seconds(8));
    openid_of[transport_.sent().back().id] = openid;
  }
  ASSERT_EQ(transport_.sent().size(), static_cast<size_t>(kCalls));
  const ScriptedTransport::Sent first = transport_.sent().front();  // sent() returns a copy
  EXPECT_EQ(first.request.timeout, absl::Seconds(1));  // the attempt's own limit, from leaving the line
  EXPECT_EQ(first.request.budget, absl::Seconds(2));   // the call's cap, time in line included
  // The primary answers every running transfer 0.6 s after it left the line.
  for (int round = 0; round < 3; ++round) {
    std::vector<ScriptedTransport::TransferId> running = transport_.running();
    ASSERT_EQ(running.size(), 4u) << round;
    Advance(absl::Milliseconds(600));
    for (ScriptedTransport::TransferId id : running) ASSERT_TRUE(transport_.Respond(id, Answer(openid_of[id])));
  }
  Advance(absl::Milliseconds(200));  // the cap: the rest ran out of time in (or because of) the line
  EXPECT_TRUE(transport_.open().empty());
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    if (results_[i].ok()) {
      ++ok;
      continue;
    }
    EXPECT_THAT(results_[i], StatusIs(absl::StatusCode::kUnavailable)) << i;
    EXPECT_EQ(GetReason(results_[i].status()), ErrorReason::kUpstreamConnectionsBusy) << i;
    EXPECT_EQ(GetUpstreamError(results_[i].status())->retry_after, absl::Seconds(1)) << i;
  }
  EXPECT_EQ(ok, 12);
  EXPECT_EQ(transport_.sent().size(), static_cast<size_t>(kCalls));  // no retry, no failover
  EXPECT_EQ(Client().GetStats().failovers, 0);
  EXPECT_FALSE(Client().GetStats().breaker_open);
  Start(100, "o-next", absl::Seconds(8));
  EXPECT_EQ(HostOf(transport_.sent().back().id), kPrimary);
}

// Issue 13 (breaker round) F3: with the attempt timeout equal to max_timeout (the old default), the call's
// deadline timer, armed at the gateway's own cap because a real clock moved between GetAuthorization and the
// attempt, fired just before the transfer's timeout: a hung primary's attempts counted as cut by the caller
// and the breaker never opened. The cap is the gateway's own limit and counts against the site.
TEST_F(PalmServiceClientTest, GatewaysOwnCapCountsAgainstAHungSite) {
  options_.max_timeout = absl::Seconds(10);
  options_.attempt_timeout = absl::Seconds(10);
  clock_.set_tick(absl::Microseconds(3));  // a real clock moves between reads
  for (int i = 0; i < options_.breaker_failures; ++i) {
    Start(i, "o-hung", absl::Seconds(30));  // the caller's deadline is far beyond the cap
    ASSERT_EQ(HostOf(OnlyOpen()), kPrimary) << i;
    Advance(absl::Seconds(10));
    EXPECT_THAT(results_[i], StatusIs(absl::StatusCode::kDeadlineExceeded)) << i;
    EXPECT_TRUE(transport_.open().empty());
  }
  EXPECT_EQ(transport_.cancels(), 0);  // ended by their own limit, not cut by a deadline timer
  EXPECT_TRUE(Client().GetStats().breaker_open);
  Start(10, "o-next", absl::Seconds(30));
  EXPECT_EQ(HostOf(OnlyOpen()), kBackup);
}

// With an attempt limit under the call's cap (the gateway's default with a backup: half of it), a hung
// primary fails over within the same call.
TEST_F(PalmServiceClientTest, HungPrimaryFailsOverWithinTheCall) {
  options_.max_timeout = absl::Seconds(10);
  options_.attempt_timeout = absl::Seconds(5);
  clock_.set_tick(absl::Microseconds(3));
  for (int i = 0; i < options_.breaker_failures + 2; ++i) {
    Start(i, "o-hung", absl::Seconds(30));
    if (HostOf(OnlyOpen()) == kPrimary) {
      Advance(absl::Seconds(5));  // the primary never answers
      Advance(options_.backoff_max);
    }
    const ScriptedTransport::TransferId backup = OnlyOpen();
    ASSERT_EQ(HostOf(backup), kBackup) << i;
    ASSERT_TRUE(transport_.Respond(backup, Answer("o-hung")));
    ASSERT_THAT(results_[i], IsOk()) << i;
  }
  int primary = 0;
  for (const ScriptedTransport::Sent& s : transport_.sent()) primary += HostOf(s.id) == kPrimary;
  EXPECT_EQ(primary, options_.breaker_failures);  // then the breaker sends calls straight to the backup
  EXPECT_TRUE(Client().GetStats().breaker_open);
}

// Coalescing: the shared call is not cut short by its first caller's short deadline while others wait.
TEST_F(PalmServiceClientTest, CoalescedCallOutlivesTheFirstCallersShortDeadline) {
  options_.coalesce = true;
  Start(1, "o-shared", absl::Milliseconds(150));
  Start(2, "o-shared", absl::Seconds(2));
  const ScriptedTransport::TransferId id = OnlyOpen();
  Advance(absl::Milliseconds(150));
  EXPECT_THAT(results_[1], StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(results_.count(2), 0u);
  EXPECT_THAT(transport_.open(), ::testing::ElementsAre(id));  // still the same transfer
  Advance(absl::Milliseconds(850));
  ASSERT_TRUE(transport_.Respond(id, Answer("o-shared")));
  ASSERT_THAT(results_[2], IsOk());
  EXPECT_EQ(transport_.sent().size(), 1u);
  EXPECT_EQ(transport_.cancels(), 0);
  EXPECT_FALSE(Client().GetStats().breaker_open);
}

TEST_F(PalmServiceClientTest, CoalescedCallEndsAtTheLatestDeadlineOfTheCallersStillWaiting) {
  options_.coalesce = true;
  Start(1, "o-shared", absl::Milliseconds(150));
  const CallId late = Start(2, "o-shared", absl::Seconds(2));
  Client().Cancel(late);  // the caller with the latest deadline leaves
  EXPECT_THAT(results_[2], StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(transport_.open().size(), 1u);  // the first caller still waits
  Advance(absl::Milliseconds(150));
  EXPECT_THAT(results_[1], StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(transport_.open().empty());  // nobody left: the upstream call is cancelled
  EXPECT_EQ(transport_.sent().size(), 1u);
  EXPECT_FALSE(Client().GetStats().breaker_open);
}

TEST_F(PalmServiceClientTest, CoalescedCallIsCancelledOnlyWhenNoCallerIsLeft) {
  options_.coalesce = true;
  const CallId a = Start(1, "o-shared", absl::Seconds(2));
  const CallId b = Start(2, "o-shared", absl::Seconds(2));
  Client().Cancel(a);
  EXPECT_EQ(transport_.cancels(), 0);
  EXPECT_EQ(transport_.open().size(), 1u);
  Client().Cancel(b);
  EXPECT_TRUE(transport_.open().empty());
  EXPECT_THAT(results_[2], StatusIs(absl::StatusCode::kCancelled));
}

// A 200 answer for `openid` with Wechatpay-Timestamp `ts`, signed by `key` and naming `serial`.
HttpResponse AnswerSignedBy(const crypto::RsaPrivateKey& key, absl::string_view serial, const std::string& openid,
                            absl::Time ts) {
  HttpResponse r;
  r.status = 200;
  r.body = absl::StrCat(R"({"openid":")", openid, R"(","organization_id":")", kOrg,
                        R"(","state":"AUTHORIZATION_STATE_ON"})");
  const std::string timestamp = absl::StrCat(absl::ToUnixSeconds(ts));
  const std::string nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
  auto sig = key.SignSha256(BuildResponseVerifyMessage(timestamp, nonce, r.body));
  EXPECT_THAT(sig, IsOk());
  r.headers.Add("Wechatpay-Timestamp", timestamp);
  r.headers.Add("Wechatpay-Nonce", nonce);
  r.headers.Add("Wechatpay-Serial", std::string(serial));
  r.headers.Add("Wechatpay-Signature", crypto::Base64Encode(sig.ok() ? *sig : std::string()));
  return r;
}

// Issue 13 finding 6: an answer signed by a key the gateway does not hold, its
// timestamp 100000 s ahead, set palmgate_clock_skew_seconds to 99999.948 and
// logged "the local clock is probably wrong: check NTP" (the window was judged
// before the signature). Only a verified timestamp may move the measured skew.
TEST_F(PalmServiceClientTest, UnverifiedAnswersNeverMoveTheMeasuredClockSkew) {
  Start(1, "o-skew", absl::Seconds(5));
  ASSERT_TRUE(transport_.Respond(OnlyOpen(), Answer("o-skew")));
  ASSERT_THAT(results_[1], IsOk());
  ASSERT_EQ(Client().GetStats().last_clock_skew, absl::ZeroDuration());

  const absl::Time shifted = clock_.Now() + absl::Seconds(100000);
  struct Forgery {
    const char* what;
    HttpResponse answer;
    ErrorReason reason;
  };
  const Forgery forgeries[] = {
      {"unknown serial", AnswerSignedBy(*wechat_key_, "PUB_KEY_ID_0114232025050200000000000099", "o-skew", shifted),
       ErrorReason::kUnknownWechatpaySerial},
      {"another key", AnswerSignedBy(*merchant_key_, kPublicKeyId, "o-skew", shifted),
       ErrorReason::kResponseSignatureInvalid},
  };
  ::testing::internal::CaptureStderr();
  int slot = 10;
  for (const Forgery& f : forgeries) {
    Start(slot, "o-skew", absl::Seconds(5));
    ASSERT_TRUE(transport_.Respond(OnlyOpen(), f.answer)) << f.what;
    EXPECT_EQ(GetReason(results_[slot].status()), f.reason) << f.what;
    EXPECT_EQ(Client().GetStats().last_clock_skew, absl::ZeroDuration()) << f.what;
    ++slot;
  }
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), ::testing::Not(::testing::HasSubstr("check NTP")));

  // A genuinely signed but old answer is still refused (the replay window), and
  // its verified timestamp is what the skew and the NTP warning report.
  ::testing::internal::CaptureStderr();
  Start(20, "o-skew", absl::Seconds(5));
  ASSERT_TRUE(transport_.Respond(
      OnlyOpen(), AnswerSignedBy(*wechat_key_, kPublicKeyId, "o-skew", clock_.Now() - absl::Seconds(100000))));
  EXPECT_EQ(GetReason(results_[20].status()), ErrorReason::kResponseTimestampSkew);
  EXPECT_EQ(Client().GetStats().last_clock_skew, absl::Seconds(-100000));
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), ::testing::HasSubstr("check NTP"));
}

}  // namespace
}  // namespace palmgate::wechatpay
