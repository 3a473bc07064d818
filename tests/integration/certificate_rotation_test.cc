// Platform certificate auto-management end to end: the gateway core
// (LoadGateway: CurlTransport, PlatformCertificateManager, PalmServiceClient
// with its unknown-serial refresh hook) against a real palmgate-sandbox, in the
// three verification modes, and under load while the sandbox rotates its
// platform certificate (add → activate → retire, twice; and twice within the
// first second after start), all with the production refresh rate limit. And
// against a hostile upstream that holds the APIv3 key: with configured keys,
// nothing it signs gets in.
#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/gateway.h"
#include "tests/testing/child_process.h"
#include "tests/testing/hostile_http_server.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::HostileHttpServer;
using ::palmgate::testing::HostileScript;
using ::palmgate::testing::HttpFetch;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;
using ::palmgate::testing::StatusIs;
using ::palmgate::testing::TestHttpRequest;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr char kSeed[] = R"({"users":[{"openid":"o-rot","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"},
    {"openid":"o-stray","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"unknown_serial"}]})";

enum class Mode { kPlatformCertificates, kPinnedCertificate, kPublicKey, kMixed };

class CertificateRotationTest : public ::testing::Test {
 protected:
  void StartSandbox(bool public_key_only = false) {
    SandboxProcessOptions options;
    options.seed_json = kSeed;
    options.public_key_only = public_key_only;
    options.faults = true;  // o-stray's answers are signed by a key in no listing
    options.threads = 2;
    auto sandbox = SandboxProcess::Start(options);
    ASSERT_THAT(sandbox, IsOk());
    sandbox_ = *std::move(sandbox);
    auto merchant = SandboxMerchant::Load(sandbox_->keys_dir());
    ASSERT_THAT(merchant, IsOk());
    merchant_ = std::make_unique<SandboxMerchant>(*std::move(merchant));
  }

  GatewayConfig Config(Mode mode) const {
    const std::string dir = sandbox_->keys_dir();
    GatewayConfig c;
    c.mchid = merchant_->mchid();
    c.merchant_serial = merchant_->merchant_serial();
    c.merchant_private_key = dir + "/apiclient_key.pem";
    c.upstream = sandbox_->base_url();
    c.upstream_backup = "none";
    c.upstream_timeout = absl::Seconds(5);
    c.apiv3_key_file = dir + "/apiv3_key.txt";
    if (mode == Mode::kPublicKey || mode == Mode::kMixed) {
      c.wechatpay_public_key = dir + "/pub_key.pem";
      c.wechatpay_public_key_id = merchant_->public_key_id();
    }
    if (mode == Mode::kPinnedCertificate) c.platform_certificates = {dir + "/platform_cert.pem"};
    return c;
  }

  static absl::StatusOr<wechatpay::AuthorizationResult> Query(GatewayCore& core, const std::string& openid = "o-rot") {
    std::promise<absl::StatusOr<wechatpay::AuthorizationResult>> promise;
    auto future = promise.get_future();
    core.client->GetAuthorization(openid, "1004", absl::Now() + absl::Seconds(5),
                                  [&promise](absl::StatusOr<wechatpay::AuthorizationResult> r) {
                                    promise.set_value(std::move(r));
                                  });
    return future.get();
  }

  // POSTs a rotation admin request; returns the parsed JSON answer.
  nlohmann::json Admin(const std::string& target) {
    TestHttpRequest request;
    request.method = "POST";
    request.target = target;
    auto response = HttpFetch(sandbox_->base_url(), request, sandbox_->ca_cert_path());
    EXPECT_THAT(response, IsOk());
    if (!response.ok()) return {};
    EXPECT_EQ(response->status, 200) << response->body;
    return nlohmann::json::parse(response->body, nullptr, false);
  }

  // Rotates the sandbox's platform certificate (add, activate); returns the new serial.
  std::string Rotate() {
    const std::string added = Admin("/_sandbox/certificates/add").value("serial_no", "");
    EXPECT_FALSE(added.empty());
    Admin("/_sandbox/certificates/activate?serial_no=" + added);
    return added;
  }

  // 15 calls, 5 at a time; returns how many failed (and the first failure in `first`).
  static int FailedCalls(GatewayCore& core, const std::string& want_verified_by, std::string* first) {
    std::vector<std::future<absl::StatusOr<wechatpay::AuthorizationResult>>> calls;
    for (int i = 0; i < 15; ++i) {
      calls.push_back(std::async(std::launch::async, [&core] { return Query(core); }));
      if (calls.size() % 5 == 0) {
        for (size_t j = calls.size() - 5; j < calls.size(); ++j) calls[j].wait();
      }
    }
    int failed = 0;
    for (auto& call : calls) {
      auto r = call.get();
      if (r.ok()) {
        EXPECT_EQ(r->verified_by, want_verified_by);
      } else if (failed++ == 0) {
        *first = r.status().ToString();
      }
    }
    return failed;
  }

  std::unique_ptr<SandboxProcess> sandbox_;
  std::unique_ptr<SandboxMerchant> merchant_;
};

TEST_F(CertificateRotationTest, PlatformCertificatesOnlyModeDownloadsAtStartUp) {
  StartSandbox();
  auto core = LoadGateway(Config(Mode::kPlatformCertificates), SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  ASSERT_NE((*core)->certificates, nullptr);
  EXPECT_THAT((*core)->keys->Current()->Serials(), UnorderedElementsAre(merchant_->platform_serial()));
  auto result = Query(**core);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->verified_by, merchant_->platform_serial());
  const auto stats = (*core)->certificates->GetStats();
  EXPECT_TRUE(stats.usable);
  EXPECT_EQ(stats.downloads_started, 1);
  EXPECT_NE(stats.last_success, absl::InfinitePast());
  EXPECT_LT(stats.earliest_certificate_expiry, absl::InfiniteFuture());
}

TEST_F(CertificateRotationTest, PinnedCertificateVerifiesTheFirstDownload) {
  StartSandbox();
  auto core = LoadGateway(Config(Mode::kPinnedCertificate), SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_THAT((*core)->keys->Current()->Serials(), UnorderedElementsAre(merchant_->platform_serial()));
  ASSERT_THAT(Query(**core), IsOk());
}

TEST_F(CertificateRotationTest, MixedModeHoldsBothAndPrefersThePublicKey) {
  StartSandbox();
  auto core = LoadGateway(Config(Mode::kMixed), SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_THAT((*core)->keys->Current()->Serials(),
              UnorderedElementsAre(merchant_->platform_serial(), merchant_->public_key_id()));
  auto result = Query(**core);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->verified_by, merchant_->public_key_id());
}

TEST_F(CertificateRotationTest, PublicKeyOnlyMerchantStartsDespite404) {
  StartSandbox(/*public_key_only=*/true);
  auto core = LoadGateway(Config(Mode::kPublicKey), SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_THAT((*core)->keys->Current()->Serials(), UnorderedElementsAre(merchant_->public_key_id()));
  EXPECT_TRUE((*core)->certificates->GetStats().platform_certificates_unavailable);
  auto result = Query(**core);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->verified_by, merchant_->public_key_id());
}

TEST_F(CertificateRotationTest, PublicKeyOnlyMerchantWithoutPublicKeyFailsStartUpNamingTheFlag) {
  StartSandbox(/*public_key_only=*/true);
  auto core = LoadGateway(Config(Mode::kPlatformCertificates), SystemClock::Get());
  EXPECT_THAT(core, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--apiv3_key_file: ")));
  EXPECT_THAT(core.status().message(), HasSubstr("no platform certificates"));
}

TEST_F(CertificateRotationTest, BadApiV3KeyFileIsAStartUpError) {
  StartSandbox();
  GatewayConfig c = Config(Mode::kPlatformCertificates);
  c.apiv3_key_file = sandbox_->keys_dir() + "/sandbox.json";
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--apiv3_key_file: must hold the 32-byte")));
  c.apiv3_key_file = sandbox_->keys_dir() + "/missing.txt";
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()).status().message(), HasSubstr("--apiv3_key_file"));
}

// 4 threads query continuously through the real client while the sandbox
// rotates twice; every call must succeed. The first response signed by a new
// certificate triggers one shared refresh (the unknown-serial hook); calls
// already in flight re-validate against the refreshed ring.
TEST_F(CertificateRotationTest, RotationUnderLoadHasZeroFailures) {
  StartSandbox();
  GatewayConfig config = Config(Mode::kPlatformCertificates);
  // Two rotations within seconds, under the production rate limit (30 s): a
  // refresh that brought the new certificate does not hold back the next one.
  ASSERT_EQ(config.certificate_refresh_min_interval, absl::Seconds(30));
  auto loaded = LoadGateway(config, SystemClock::Get());
  ASSERT_THAT(loaded, IsOk());
  GatewayCore& core = **loaded;

  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0};
  absl::Mutex mu;
  std::vector<std::string> failures;
  std::string last_verified_by;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        auto r = Query(core);
        absl::MutexLock lock(&mu);
        if (r.ok()) {
          ++ok;
          last_verified_by = r->verified_by;
        } else {
          ++failed;
          if (failures.size() < 10) failures.push_back(r.status().ToString());
        }
      }
    });
  }
  // Waits until `n` more calls have succeeded (or 30 s passed).
  auto run = [&](int n) {
    const int64_t target = ok.load() + n;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (ok.load() < target && failed.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  };
  auto verified_by = [&] {
    absl::MutexLock lock(&mu);
    return last_verified_by;
  };

  run(100);
  std::string old_serial = merchant_->platform_serial();
  for (int rotation = 0; rotation < 2; ++rotation) {
    const std::string added = Admin("/_sandbox/certificates/add").value("serial_no", "");
    ASSERT_FALSE(added.empty());
    run(100);  // listed but not used yet
    Admin("/_sandbox/certificates/activate?serial_no=" + added);
    run(200);  // responses now come signed by `added`
    Admin("/_sandbox/certificates/retire?serial_no=" + old_serial);
    run(200);
    EXPECT_EQ(verified_by(), added);
    EXPECT_NE(core.keys->Current()->Find(added), nullptr);
    EXPECT_EQ(core.keys->Current()->preferred_serial(), added);
    old_serial = added;
  }
  stop = true;
  for (auto& t : threads) t.join();
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(failed.load(), 0) << ::testing::PrintToString(failures);
  }
  EXPECT_GE(ok.load(), 1000);
  const auto stats = core.certificates->GetStats();
  EXPECT_TRUE(stats.usable);
  EXPECT_GE(stats.downloads_started, 3);  // start-up + one per activation
  EXPECT_LE(stats.downloads_started, 12);  // shared, not one per call
  EXPECT_EQ(core.client->GetStats().key_refreshes > 0, true);
}

// Finding 1: WeChat Pay rotates in the first second after start (right after
// the start-up download), then again at once. Every call succeeds: neither
// the start-up download nor the first rotation's refresh holds back the
// refresh the next rotation needs.
TEST_F(CertificateRotationTest, RotationsInTheFirstSecondAfterStartFailNoCall) {
  StartSandbox();
  GatewayConfig config = Config(Mode::kPlatformCertificates);
  ASSERT_EQ(config.certificate_refresh_min_interval, absl::Seconds(30));  // production
  auto loaded = LoadGateway(config, SystemClock::Get());
  ASSERT_THAT(loaded, IsOk());
  GatewayCore& core = **loaded;
  ASSERT_EQ(core.certificates->GetStats().downloads_started, 1);
  const absl::Time started = absl::Now();  // the start-up download just finished
  std::vector<std::string> rotated;
  for (int rotation = 0; rotation < 2; ++rotation) {
    const std::string added = Admin("/_sandbox/certificates/add").value("serial_no", "");
    ASSERT_FALSE(added.empty());
    Admin("/_sandbox/certificates/activate?serial_no=" + added);
    rotated.push_back(added);
    // What matters: the rotation comes well within min_refresh_interval of
    // the start-up download (typically under a second; asserted loosely so a
    // loaded machine does not break the test).
    if (rotation == 0) {
      ASSERT_LT(absl::Now() - started, absl::Seconds(20));
      ::testing::Test::RecordProperty("rotation_after_start_ms",
                                      static_cast<int>(absl::ToInt64Milliseconds(absl::Now() - started)));
    }
    // 15 calls, 5 at a time: the first answers are signed by a serial the gateway has not seen yet.
    std::vector<std::future<absl::StatusOr<wechatpay::AuthorizationResult>>> calls;
    for (int i = 0; i < 15; ++i) {
      calls.push_back(std::async(std::launch::async, [&core] { return Query(core); }));
      if (calls.size() % 5 == 0) {
        for (size_t j = calls.size() - 5; j < calls.size(); ++j) calls[j].wait();
      }
    }
    int failed = 0;
    std::string first_failure;
    for (auto& call : calls) {
      auto r = call.get();
      if (r.ok()) {
        EXPECT_EQ(r->verified_by, added);
      } else if (failed++ == 0) {
        first_failure = r.status().ToString();
      }
    }
    EXPECT_EQ(failed, 0) << "rotation " << rotation << ": " << first_failure;
  }
  const auto stats = core.certificates->GetStats();
  EXPECT_EQ(stats.refreshes_rate_limited, 0);
  EXPECT_LE(stats.downloads_started, 1 + 2 * 2);  // start-up, then shared refreshes
  EXPECT_NE(core.keys->Current()->Find(rotated[1]), nullptr);
}

// Retest F4a: one answer signed by a stray serial (sandbox fault on one
// user) must not hold back the refresh that a real rotation right after it
// needs: every call for the other users succeeds.
TEST_F(CertificateRotationTest, StrayUnknownSerialDoesNotBlockTheNextRotation) {
  StartSandbox();
  GatewayConfig config = Config(Mode::kPlatformCertificates);
  ASSERT_EQ(config.certificate_refresh_min_interval, absl::Seconds(30));  // production
  auto loaded = LoadGateway(config, SystemClock::Get());
  ASSERT_THAT(loaded, IsOk());
  GatewayCore& core = **loaded;
  auto stray = Query(core, "o-stray");
  EXPECT_FALSE(stray.ok());
  EXPECT_EQ(core.certificates->GetStats().downloads_started, 2);  // start-up, the stray serial's refresh
  const std::string added = Rotate();
  std::string first_failure;
  EXPECT_EQ(FailedCalls(core, added, &first_failure), 0) << first_failure;
  EXPECT_NE(core.keys->Current()->Find(added), nullptr);
}

// Retest F4b: the primary answers 500 to everything (the calls go to the
// backup); a rotation is fetched from the backup too, and no call fails.
TEST_F(CertificateRotationTest, RotationWhileThePrimaryIsDownIsFetchedFromTheBackup) {
  StartSandbox();
  auto primary = HostileHttpServer::Start({});
  ASSERT_THAT(primary, IsOk());
  (*primary)->SetScript([](absl::string_view) {
    const std::string body = R"({"code":"SYSTEM_ERROR","message":"down"})";
    HostileScript s;
    s.head = absl::StrCat("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: ",
                          body.size(), "\r\n\r\n");
    s.body = body;
    return s;
  });
  GatewayConfig config = Config(Mode::kPlatformCertificates);
  config.upstream = (*primary)->base_url();
  config.upstream_backup = sandbox_->base_url();
  config.allow_insecure_upstream = true;
  auto loaded = LoadGateway(config, SystemClock::Get());  // the start-up download already takes the backup
  ASSERT_THAT(loaded, IsOk());
  GatewayCore& core = **loaded;
  ASSERT_GE(core.certificates->GetStats().downloads_from_backup, 1);
  // Calls reach the backup (how quickly is the breaker's business): wait until one does.
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (!Query(core).ok() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));  // polling with a deadline
  ASSERT_TRUE(Query(core).ok());
  const std::string added = Rotate();
  std::string first_failure;
  EXPECT_EQ(FailedCalls(core, added, &first_failure), 0) << first_failure;
  const auto stats = core.certificates->GetStats();
  EXPECT_GE(stats.downloads_from_backup, 2);
  EXPECT_EQ(stats.refreshes_rate_limited, 0);
  EXPECT_NE(core.keys->Current()->Find(added), nullptr);
}

// Finding 2: an upstream that holds the APIv3 key (an intercepting proxy whose
// CA is trusted, or a plain-HTTP upstream as here) lists a self-signed
// certificate of its own, sealed under the APIv3 key, signs that download and
// every answer with it. With a configured public key and pinned certificate,
// the gateway refuses the download (it is not signed by a key it holds), the
// certificate never enters the key ring, and no forged answer is returned OK.
TEST(CertificateTrustTest, UpstreamHoldingTheApiV3KeyCannotAddItsOwnCertificate) {
  auto dir = testing::MakeTempDir("palmgate-trust-keys");
  ASSERT_THAT(dir, IsOk());
  ASSERT_THAT(testing::RunSandboxKeygen(*dir), IsOk());
  auto merchant = SandboxMerchant::Load(*dir);
  ASSERT_THAT(merchant, IsOk());

  // The forger's certificate: self-signed, valid now.
  auto forged_key = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(forged_key, IsOk());
  crypto::CertificateSpec spec;
  spec.common_name = "Tenpay.com Root CA";
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24 * 365);
  auto forged_pem = crypto::IssueCertificate(spec, forged_key->PublicKey(), *forged_key, nullptr);
  ASSERT_THAT(forged_pem, IsOk());
  auto forged = crypto::Certificate::FromPem(*forged_pem);
  ASSERT_THAT(forged, IsOk());
  const std::string nonce = crypto::RandomAlphanumeric(12);
  auto sealed = crypto::AesGcmSeal(merchant->apiv3_key(), nonce, "certificate", *forged_pem);
  ASSERT_THAT(sealed, IsOk());
  const nlohmann::json entry = {{"serial_no", forged->serial()},
                                {"effective_time", "2024-01-01T00:00:00+08:00"},
                                {"expire_time", "2030-01-01T00:00:00+08:00"},
                                {"encrypt_certificate",
                                 {{"algorithm", "AEAD_AES_256_GCM"},
                                  {"nonce", nonce},
                                  {"associated_data", "certificate"},
                                  {"ciphertext", crypto::Base64Encode(*sealed)}}}};
  const nlohmann::json listing = {{"data", nlohmann::json::array({entry})}};
  const std::string certificates_body = listing.dump();
  const std::string answer_body = R"({"openid":"o-rot","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"})";
  const std::string forged_key_pem = forged_key->ToPkcs8Pem();
  const std::string forged_serial = forged->serial();

  auto upstream = HostileHttpServer::Start({});
  ASSERT_THAT(upstream, IsOk());
  (*upstream)->SetScript([&](absl::string_view head) {
    const std::string& body =
        absl::StartsWith(head, "GET /v3/certificates") ? certificates_body : answer_body;
    auto headers = testing::WechatpaySignatureHeaders(body, forged_key_pem, forged_serial, absl::Now());
    HostileScript s;
    s.head = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                          "\r\n", headers.value_or(""), "\r\n");
    s.body = body;
    return s;
  });

  GatewayConfig c;
  c.mchid = merchant->mchid();
  c.merchant_serial = merchant->merchant_serial();
  c.merchant_private_key = *dir + "/apiclient_key.pem";
  c.wechatpay_public_key = *dir + "/pub_key.pem";
  c.wechatpay_public_key_id = merchant->public_key_id();
  c.platform_certificates = {*dir + "/platform_cert.pem"};
  c.apiv3_key_file = *dir + "/apiv3_key.txt";
  c.upstream = (*upstream)->base_url();
  c.upstream_backup = "none";
  c.upstream_timeout = absl::Seconds(5);
  auto loaded = LoadGateway(c, SystemClock::Get());  // the start-up download is refused; the configured keys remain
  ASSERT_THAT(loaded, IsOk());
  GatewayCore& core = **loaded;
  int returned_ok = 0;
  for (int i = 0; i < 30; ++i) {
    std::promise<absl::StatusOr<wechatpay::AuthorizationResult>> promise;
    auto future = promise.get_future();
    core.client->GetAuthorization("o-rot", "1004", absl::Now() + absl::Seconds(5),
                                  [&promise](absl::StatusOr<wechatpay::AuthorizationResult> r) {
                                    promise.set_value(std::move(r));
                                  });
    auto r = future.get();
    if (r.ok()) ++returned_ok;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
  }
  EXPECT_EQ(returned_ok, 0);
  EXPECT_EQ(core.keys->Current()->Find(forged_serial), nullptr);
  EXPECT_THAT(core.keys->Current()->Serials(),
              UnorderedElementsAre(merchant->platform_serial(), merchant->public_key_id()));
  const auto stats = core.certificates->GetStats();
  EXPECT_GE(stats.downloads_untrusted, 1);
  EXPECT_EQ(stats.downloaded_certificates, 0u);
  std::filesystem::remove_all(*dir);
}

}  // namespace
}  // namespace palmgate
