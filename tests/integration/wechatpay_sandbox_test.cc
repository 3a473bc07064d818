// The protocol library against the real sandbox over loopback: our signer →
// sandbox accepts; sandbox responses → our verifier accepts in platform
// certificate, public key and mixed mode; every injected fault gives its own
// error and never a success; hostile inputs reach exactly the intended path
// or nothing at all.
#include <future>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "server/wechatpay/certificates.h"
#include "server/wechatpay/credential.h"
#include "server/wechatpay/curl_transport.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/palm_service_client.h"
#include "server/wechatpay/rsa_signer.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;
using ::palmgate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

enum class Mode { kPublicKey, kPlatformCertificate, kMixed };

constexpr char kSeed[] = R"({"users":[
  {"openid":"o-none","organization_id":"1004","state":"AUTHORIZATION_STATE_NONE"},
  {"openid":"o-on","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2024-05-01T10:00:00+08:00"},
  {"openid":"o-off","organization_id":"1004","state":"AUTHORIZATION_STATE_OFF","authorize_time":"2023-01-02T03:04:05+08:00"},
  {"openid":"o-future","organization_id":"1004","state":"AUTHORIZATION_STATE_PAUSED"},
  {"openid":"f-corrupt","organization_id":"1004","fault":"corrupt_signature"},
  {"openid":"f-probe","organization_id":"1004","fault":"probe_signature"},
  {"openid":"f-missing","organization_id":"1004","fault":"missing_signature_headers"},
  {"openid":"f-missing-nonce","organization_id":"1004","fault":"missing_header=Wechatpay-Nonce"},
  {"openid":"f-skew","organization_id":"1004","fault":"skew_timestamp=600"},
  {"openid":"f-serial","organization_id":"1004","fault":"unknown_serial"},
  {"openid":"f-json","organization_id":"1004","fault":"malformed_json"},
  {"openid":"f-empty","organization_id":"1004","fault":"empty_body"},
  {"openid":"f-500","organization_id":"1004","fault":"status=500"},
  {"openid":"f-503","organization_id":"1004","fault":"status=503"},
  {"openid":"f-429","organization_id":"1004","fault":"status=429:FREQUENCY_LIMITED"},
  {"openid":"f-400","organization_id":"1004","fault":"status=400:PARAM_ERROR"},
  {"openid":"f-401","organization_id":"1004","fault":"status=401:SIGN_ERROR"},
  {"openid":"f-403","organization_id":"1004","fault":"status=403:NO_AUTH"},
  {"openid":"f-404","organization_id":"1004","fault":"status=404:NOT_FOUND"},
  {"openid":"f-html","organization_id":"1004","fault":"html_error"},
  {"openid":"f-drop","organization_id":"1004","fault":"drop"},
  {"openid":"f-huge","organization_id":"1004","fault":"huge_body=1048576"},
  {"openid":"f-slow","organization_id":"1004","fault":"latency=5000"},
  {"openid":"f-200ms","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"latency=200"}
]})";

// One sandbox per suite (processes are cheap, but keygen costs RSA key generation).
class SandboxFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SandboxProcessOptions options;
    options.faults = true;
    options.seed_json = kSeed;
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    http_ = sandbox->release();
    options.keys_dir = http_->keys_dir();
    options.tls = true;
    auto tls = SandboxProcess::Start(options);
    ASSERT_THAT(tls, IsOk());
    https_ = tls->release();
  }
  static void TearDownTestSuite() {
    delete https_;
    delete http_;
    https_ = http_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(http_, nullptr);
    auto merchant = SandboxMerchant::Load(http_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    merchant_ = std::make_unique<SandboxMerchant>(*std::move(merchant));
    CurlTransport::Options topts;
    topts.ca_file = https_->ca_cert_path();
    auto transport = CurlTransport::Create(topts);
    ASSERT_THAT(transport, IsOk());
    transport_ = *std::move(transport);
  }

  std::string Key(const std::string& file) const { return http_->keys_dir() + "/" + file; }

  std::shared_ptr<const KeyRing> Ring(Mode mode) const {
    KeyRing::Builder b;
    if (mode != Mode::kPlatformCertificate) {
      EXPECT_THAT(b.AddPublicKeyPem(merchant_->public_key_id(), *ReadFile(Key("pub_key.pem"))), IsOk());
    }
    if (mode != Mode::kPublicKey) {
      EXPECT_THAT(b.AddCertificatePem(*ReadFile(Key("platform_cert.pem"))), IsOk());
    }
    auto ring = std::move(b).Build(absl::Now());
    EXPECT_THAT(ring, IsOk());
    return *ring;
  }

  std::shared_ptr<const Credential> MerchantCredential(const std::string& key_file = "apiclient_key.pem") const {
    auto signer = RsaSha256Signer::FromPemFile(Key(key_file));
    EXPECT_THAT(signer, IsOk());
    return std::make_shared<Credential>(merchant_->mchid(), merchant_->merchant_serial(),
                                        std::shared_ptr<const Signer>(*std::move(signer)), SystemClock::Get());
  }

  // A client on its own transport that opens at most `max_connections` connections (plain HTTP sandbox).
  struct CappedClient {
    std::unique_ptr<CurlTransport> transport;
    SwappableKeyStore keys;
    std::unique_ptr<PalmServiceClient> client;
  };
  std::unique_ptr<CappedClient> MakeCappedClient(int max_connections, int max_attempts) const {
    CurlTransport::Options topts;
    topts.max_connections = max_connections;
    auto transport = CurlTransport::Create(topts);
    EXPECT_THAT(transport, IsOk());
    if (!transport.ok()) return nullptr;
    auto capped = std::unique_ptr<CappedClient>(new CappedClient{*std::move(transport), SwappableKeyStore(Ring(Mode::kPublicKey)), nullptr});
    PalmServiceClient::Options options;
    options.base_url = http_->base_url();
    options.max_attempts = max_attempts;
    capped->client = std::make_unique<PalmServiceClient>(options, MerchantCredential(), &capped->keys,
                                                         capped->transport.get(), SystemClock::Get());
    return capped;
  }

  // A client on the fixture's transport, with its own key store.
  struct Client {
    SwappableKeyStore keys;
    std::unique_ptr<PalmServiceClient> client;
  };
  std::unique_ptr<Client> MakeClient(Mode mode = Mode::kPublicKey, bool tls = false,
                                     std::shared_ptr<const Credential> credential = nullptr) const {
    auto c = std::unique_ptr<Client>(new Client{SwappableKeyStore(Ring(mode)), nullptr});
    PalmServiceClient::Options options;
    options.base_url = (tls ? https_ : http_)->base_url();
    c->client = std::make_unique<PalmServiceClient>(options, credential ? credential : MerchantCredential(), &c->keys,
                                                    transport_.get(), SystemClock::Get());
    return c;
  }

  // Runs one call through `client` to completion.
  static absl::StatusOr<AuthorizationResult> Await(PalmServiceClient& client, const std::string& openid,
                                                   const std::string& org, absl::Duration timeout) {
    std::promise<absl::StatusOr<AuthorizationResult>> promise;
    client.GetAuthorization(openid, org, absl::Now() + timeout,
                            [&promise](absl::StatusOr<AuthorizationResult> r) { promise.set_value(std::move(r)); });
    return promise.get_future().get();
  }

  // Runs one query to completion on a client of its own.
  absl::StatusOr<AuthorizationResult> Query(const std::string& openid, const std::string& org = "1004",
                                            Mode mode = Mode::kPublicKey, bool tls = false,
                                            absl::Duration timeout = absl::Seconds(5),
                                            std::shared_ptr<const Credential> credential = nullptr) {
    return Await(*MakeClient(mode, tls, std::move(credential))->client, openid, org, timeout);
  }

  // Requests the sandbox has logged so far.
  nlohmann::json SandboxLog() {
    testing::TestHttpRequest request;
    request.target = "/_sandbox/requests";
    auto r = testing::HttpFetch(http_->base_url(), request);
    EXPECT_THAT(r, IsOk());
    return nlohmann::json::parse(r->body, nullptr, false);
  }
  size_t SandboxRequestCount() {
    auto log = SandboxLog();
    return log.is_array() ? log.size() : (log.contains("requests") ? log["requests"].size() : 0);
  }

  static SandboxProcess* http_;
  static SandboxProcess* https_;
  std::unique_ptr<SandboxMerchant> merchant_;
  std::unique_ptr<CurlTransport> transport_;
};

SandboxProcess* SandboxFixture::http_ = nullptr;
SandboxProcess* SandboxFixture::https_ = nullptr;

using PalmServiceSandboxTest = SandboxFixture;

TEST_F(PalmServiceSandboxTest, RoundTripInEveryKeyMode) {
  for (Mode mode : {Mode::kPublicKey, Mode::kPlatformCertificate, Mode::kMixed}) {
    auto r = Query("o-on", "1004", mode);
    ASSERT_THAT(r, IsOk()) << static_cast<int>(mode);
    EXPECT_EQ(r->state, "AUTHORIZATION_STATE_ON");
    EXPECT_EQ(r->openid, "o-on");
    EXPECT_EQ(r->organization_id, "1004");
    EXPECT_FALSE(r->request_id.empty());
    // WeChat Pay signs with the key our Wechatpay-Serial asked for.
    EXPECT_EQ(r->verified_by,
              mode == Mode::kPlatformCertificate ? merchant_->platform_serial() : merchant_->public_key_id());
    ASSERT_TRUE(r->authorize_time.has_value());
    EXPECT_EQ(*r->authorize_time, absl::FromUnixSeconds(1714528800));  // 2024-05-01T02:00:00Z
    EXPECT_LT(absl::AbsDuration(r->clock_skew), absl::Seconds(5));
  }
}

TEST_F(PalmServiceSandboxTest, EveryStateOverHttps) {
  struct Case {
    const char* openid;
    const char* state;
    bool has_time;
  };
  for (const Case& c : {Case{"o-none", "AUTHORIZATION_STATE_NONE", false},
                        Case{"o-on", "AUTHORIZATION_STATE_ON", true},
                        Case{"o-off", "AUTHORIZATION_STATE_OFF", true},
                        Case{"o-future", "AUTHORIZATION_STATE_PAUSED", false},
                        Case{"o-unseeded", "AUTHORIZATION_STATE_NONE", false}}) {
    auto r = Query(c.openid, "1004", Mode::kMixed, /*tls=*/true);
    ASSERT_THAT(r, IsOk()) << c.openid;
    EXPECT_EQ(r->state, c.state);
    EXPECT_EQ(r->authorize_time.has_value(), c.has_time) << c.openid;
  }
}

TEST_F(PalmServiceSandboxTest, EveryFaultHasItsOwnErrorAndNeverSucceeds) {
  struct Case {
    const char* openid;
    absl::StatusCode code;
    ErrorReason reason;
  };
  const Case cases[] = {
      {"f-corrupt", absl::StatusCode::kInternal, ErrorReason::kResponseSignatureInvalid},
      {"f-probe", absl::StatusCode::kInternal, ErrorReason::kResponseSignatureProbe},
      {"f-missing", absl::StatusCode::kInternal, ErrorReason::kResponseSignatureMissing},
      {"f-missing-nonce", absl::StatusCode::kInternal, ErrorReason::kResponseSignatureMissing},
      {"f-skew", absl::StatusCode::kInternal, ErrorReason::kResponseTimestampSkew},
      {"f-serial", absl::StatusCode::kInternal, ErrorReason::kUnknownWechatpaySerial},
      {"f-json", absl::StatusCode::kInternal, ErrorReason::kUpstreamMalformedResponse},
      {"f-empty", absl::StatusCode::kInternal, ErrorReason::kUpstreamMalformedResponse},
      {"f-500", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable},
      {"f-503", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable},
      {"f-429", absl::StatusCode::kResourceExhausted, ErrorReason::kUpstreamRateLimited},
      {"f-400", absl::StatusCode::kInvalidArgument, ErrorReason::kUpstreamParamError},
      {"f-401", absl::StatusCode::kInternal, ErrorReason::kUpstreamSignatureRejected},
      {"f-403", absl::StatusCode::kPermissionDenied, ErrorReason::kMerchantNotAuthorized},
      {"f-404", absl::StatusCode::kNotFound, ErrorReason::kUpstreamNotFound},
      {"f-html", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable},
      {"f-drop", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable},
      {"f-huge", absl::StatusCode::kInternal, ErrorReason::kResponseTooLarge},
  };
  for (const Case& c : cases) {
    // f-drop runs on a connection reused from the cases before it: libcurl's
    // own unchanged re-send (a replayed nonce) must not happen.
    auto r = Query(c.openid);
    EXPECT_THAT(r, StatusIs(c.code)) << c.openid;
    EXPECT_EQ(GetReason(r.status()), c.reason) << c.openid << ": " << r.status();
    auto e = GetUpstreamError(r.status());
    ASSERT_TRUE(e.has_value()) << c.openid;
    // Whatever came with an HTTP answer keeps WeChat Pay's Request-ID.
    const bool answered = absl::string_view(c.openid) != "f-drop" && absl::string_view(c.openid) != "f-huge";
    EXPECT_EQ(e->http_status != 0, answered) << c.openid;
    if (answered) {
      EXPECT_FALSE(e->request_id.empty()) << c.openid;
    }
  }
  auto rate = GetUpstreamError(Query("f-429").status());
  EXPECT_EQ(rate->wechatpay_code, "FREQUENCY_LIMITED");
  EXPECT_EQ(rate->http_status, 429);
  EXPECT_GT(rate->retry_after, absl::ZeroDuration());
}

TEST_F(PalmServiceSandboxTest, SandboxRejectsAForeignSignature) {
  // A key the sandbox does not know signs: WeChat Pay answers 401 SIGN_ERROR,
  // which is our fault (INTERNAL), never the caller's.
  auto other = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(other, IsOk());
  auto cred = std::make_shared<Credential>(merchant_->mchid(), merchant_->merchant_serial(),
                                           std::make_shared<RsaSha256Signer>(*other), SystemClock::Get());
  auto r = Query("o-on", "1004", Mode::kPublicKey, false, absl::Seconds(5), cred);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal));
  auto e = GetUpstreamError(r.status());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->reason, ErrorReason::kUpstreamSignatureRejected);
  EXPECT_EQ(e->wechatpay_code, "SIGN_ERROR");
  EXPECT_EQ(e->http_status, 401);
}

TEST_F(PalmServiceSandboxTest, DeadlineBoundsTheUpstreamCall) {
  const absl::Time start = absl::Now();
  auto r = Query("f-slow", "1004", Mode::kPublicKey, false, absl::Milliseconds(300));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(GetReason(r.status()), ErrorReason::kUpstreamTimeout);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // the sandbox would have waited 5 s
}

TEST_F(PalmServiceSandboxTest, ExpiredDeadlineAndBadInputSendNothing) {
  const size_t before = SandboxRequestCount();
  EXPECT_THAT(Query("o-on", "1004", Mode::kPublicKey, false, -absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(Query(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Query(std::string(129, 'o')), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Query("o-on", std::string(65, '1')), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Query("\xff"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Query(".."), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(SandboxRequestCount(), before);
}

TEST_F(PalmServiceSandboxTest, CancelStopsTheTransfer) {
  auto c = MakeClient();
  PalmServiceClient& client = *c->client;
  std::promise<absl::StatusOr<AuthorizationResult>> promise;
  const absl::Time start = absl::Now();
  TransferId id = client.GetAuthorization("f-slow", "1004", absl::Now() + absl::Seconds(30),
                                          [&](absl::StatusOr<AuthorizationResult> r) { promise.set_value(std::move(r)); });
  ASSERT_NE(id, 0u);
  client.Cancel(id);
  auto r = promise.get_future().get();
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  EXPECT_EQ(transport_->InFlight(), 0);
}

TEST_F(PalmServiceSandboxTest, HostileOpenidsReachExactlyTheirOwnPath) {
  const std::string hostile[] = {"../../v3/certificates", "a/b", "a?organization_id=9#x", "100%", "%2F",
                                 "a b+c", "Ωmega中文", "...", "o-on/../o-off", "MiXeD_Case-09~"};
  for (const std::string& openid : hostile) {
    auto r = Query(openid, "1004&x=1");
    ASSERT_THAT(r, IsOk()) << openid;
    // The sandbox decoded exactly what we meant, and signed an answer about it.
    EXPECT_EQ(r->openid, openid);
    EXPECT_EQ(r->organization_id, "1004&x=1");
    EXPECT_EQ(r->state, "AUTHORIZATION_STATE_NONE");
  }
}

TEST_F(PalmServiceSandboxTest, TlsNeedsTheRightCa) {
  CurlTransport::Options topts;  // system CA bundle: the sandbox CA is unknown there
  auto strict = CurlTransport::Create(topts);
  ASSERT_THAT(strict, IsOk());
  SwappableKeyStore keys(Ring(Mode::kPublicKey));
  PalmServiceClient::Options options;
  options.base_url = https_->base_url();
  PalmServiceClient client(options, MerchantCredential(), &keys, strict->get(), SystemClock::Get());
  std::promise<absl::StatusOr<AuthorizationResult>> promise;
  client.GetAuthorization("o-on", "1004", absl::Now() + absl::Seconds(5),
                          [&](absl::StatusOr<AuthorizationResult> r) { promise.set_value(std::move(r)); });
  auto r = promise.get_future().get();
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("tls")));
}

TEST_F(PalmServiceSandboxTest, DownloadsAndDecryptsPlatformCertificates) {
  auto cred = MerchantCredential();
  const std::string target = "/v3/certificates?algorithm_type=RSA";
  HttpRequest req;
  req.url = https_->base_url() + target;
  req.headers.Add("Accept", "application/json");
  req.headers.Add("Authorization", *cred->AuthorizationHeader("GET", target, ""));
  std::promise<absl::StatusOr<HttpResponse>> promise;
  transport_->Send(req, [&](absl::StatusOr<HttpResponse> r) { promise.set_value(std::move(r)); });
  auto response = promise.get_future().get();
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->status, 200);
  // Without Wechatpay-Serial the answer is signed with the platform certificate.
  ASSERT_THAT(ValidateResponse(*response, *Ring(Mode::kPlatformCertificate), absl::Now()), IsOk());
  auto certs = ParseCertificatesResponse(response->body, merchant_->apiv3_key());
  ASSERT_THAT(certs, IsOk());
  ASSERT_EQ(certs->size(), 1u);
  EXPECT_EQ((*certs)[0].serial(), merchant_->platform_serial());
  auto wrong_key = ParseCertificatesResponse(response->body, std::string(32, 'x'));
  EXPECT_THAT(wrong_key, StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(PalmServiceSandboxTest, ManyConcurrentCallsShareTheLoop) {
  auto c = MakeClient(Mode::kMixed, /*tls=*/true);
  PalmServiceClient& client = *c->client;
  constexpr int kCalls = 200;
  std::vector<std::promise<absl::StatusOr<AuthorizationResult>>> promises(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    client.GetAuthorization(i % 2 ? "o-on" : "o-off", "1004", absl::Now() + absl::Seconds(20),
                            [&promises, i](absl::StatusOr<AuthorizationResult> r) { promises[i].set_value(std::move(r)); });
  }
  // Wait for every callback before checking any: an early ASSERT return would destroy the promises
  // (and the client) while calls are still finishing on the transport's loop thread.
  std::vector<absl::StatusOr<AuthorizationResult>> results;
  for (int i = 0; i < kCalls; ++i) results.push_back(promises[i].get_future().get());
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_THAT(results[i], IsOk()) << i;
    EXPECT_EQ(results[i]->state, i % 2 ? "AUTHORIZATION_STATE_ON" : "AUTHORIZATION_STATE_OFF");
  }
}

// Calls submitted one at a time, each while the transport's loop sits idle in
// epoll_wait (for up to a second): each submission must wake it. A missed
// wake-up costs up to a second per call, so 50 calls would take about 50 s.
TEST_F(PalmServiceSandboxTest, CallsSubmittedToAnIdleLoopWakeIt) {
  auto c = MakeClient();  // one client: the key parsing of Query() per call would dwarf the loop's part
  constexpr int kCalls = 50;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kCalls; ++i) ASSERT_THAT(Await(*c->client, "o-on", "1004", absl::Seconds(5)), IsOk()) << i;
  EXPECT_LT(absl::Now() - start, absl::Seconds(15)) << "calls waited for the loop's idle timeout";
}

// Starts `count` calls for `openid` at once through `client` and waits for all of them.
std::vector<absl::StatusOr<AuthorizationResult>> RunConcurrently(PalmServiceClient& client, const std::string& openid,
                                                                 int count, absl::Duration timeout) {
  std::vector<std::promise<absl::StatusOr<AuthorizationResult>>> promises(count);
  for (int i = 0; i < count; ++i) {
    client.GetAuthorization(openid, "1004", absl::Now() + timeout,
                            [&promises, i](absl::StatusOr<AuthorizationResult> r) { promises[i].set_value(std::move(r)); });
  }
  std::vector<absl::StatusOr<AuthorizationResult>> results;
  for (int i = 0; i < count; ++i) results.push_back(promises[i].get_future().get());
  return results;
}

TEST_F(PalmServiceSandboxTest, DroppedReusedConnectionIsRetriedWithFreshSignatures) {
  ASSERT_THAT(Query("o-on"), IsOk());  // leaves a pooled connection to reuse
  const size_t before = SandboxRequestCount();
  auto r = Query("f-drop");  // 3 attempts, each dropped
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(GetReason(r.status()), ErrorReason::kUpstreamUnavailable) << r.status();
  // Exactly one request per attempt reached the sandbox, none refused as a replayed nonce.
  auto log = SandboxLog();
  const nlohmann::json& requests = log.is_array() ? log : log["requests"];
  int drops = 0, rejected = 0;
  for (size_t i = before; i < requests.size(); ++i) {
    if (requests[i].value("openid", "") != "f-drop") continue;
    ++drops;
    if (requests[i].value("status", 0) == 401) ++rejected;
  }
  EXPECT_EQ(drops, 3);
  EXPECT_EQ(rejected, 0);
}

TEST_F(PalmServiceSandboxTest, ConnectionCapQueuesTransfers) {
  auto capped = MakeCappedClient(/*max_connections=*/2, /*max_attempts=*/3);
  ASSERT_NE(capped, nullptr);
  PalmServiceClient& client = *capped->client;
  // Six 200 ms answers over at most two connections: three rounds, so at least 600 ms
  // (without the cap all six run at once and take ~200 ms).
  const absl::Time start = absl::Now();
  auto results = RunConcurrently(client, "f-200ms", 6, absl::Seconds(20));
  const absl::Duration elapsed = absl::Now() - start;
  for (const auto& r : results) {
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->state, "AUTHORIZATION_STATE_ON");
  }
  EXPECT_GE(elapsed, absl::Milliseconds(600));
}

TEST_F(PalmServiceSandboxTest, TransfersWaitingForAConnectionStartInArrivalOrder) {
  auto capped = MakeCappedClient(/*max_connections=*/1, /*max_attempts=*/1);
  ASSERT_NE(capped, nullptr);
  PalmServiceClient& client = *capped->client;
  // Five 200 ms answers over one connection: each call after the first waits in line, and the line is
  // first come, first served (a call submitted later never overtakes one that waits).
  constexpr int kCalls = 5;
  absl::Mutex mu;
  std::vector<int> order;
  std::vector<std::promise<absl::Status>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    client.GetAuthorization("f-200ms", "1004", absl::Now() + absl::Seconds(20),
                            [&, i](absl::StatusOr<AuthorizationResult> r) {
                              {
                                absl::MutexLock lock(&mu);
                                order.push_back(i);
                              }
                              done[i].set_value(r.status());
                            });
  }
  for (auto& d : done) EXPECT_THAT(d.get_future().get(), IsOk());
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3, 4));
}

TEST_F(PalmServiceSandboxTest, QueuedTransferKeepsItsDeadline) {
  auto capped = MakeCappedClient(/*max_connections=*/1, /*max_attempts=*/1);
  ASSERT_NE(capped, nullptr);
  PalmServiceClient& client = *capped->client;
  // The only connection is held by a 5 s answer; the queued call must still end at its own 300 ms deadline.
  std::promise<absl::StatusOr<AuthorizationResult>> slow;
  TransferId slow_id = client.GetAuthorization("f-slow", "1004", absl::Now() + absl::Seconds(30),
                                               [&slow](absl::StatusOr<AuthorizationResult> r) { slow.set_value(std::move(r)); });
  const absl::Time start = absl::Now();
  auto queued = RunConcurrently(client, "o-on", 1, absl::Milliseconds(300));
  EXPECT_THAT(queued[0], StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  client.Cancel(slow_id);
  EXPECT_THAT(slow.get_future().get(), StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace palmgate::wechatpay
