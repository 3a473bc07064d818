// Unit tests of PlatformCertificateManager against an in-process fake of
// WeChat Pay's /v3/certificates (FakeWeChat) behind a threaded FakeTransport.
// Keys and certificates are made at test time. Waiting is on conditions with
// deadlines, never on sleeps.
#include "server/wechatpay/certificate_manager.h"

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/response_validator.h"
#include "server/wechatpay/rsa_signer.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr char kApiV3Key[] = "0123456789abcdefghijABCDEFGHIJ01";
const absl::Time kT0 = absl::FromUnixSeconds(1750000000);

struct SigningCert {
  crypto::Certificate cert;
  crypto::RsaPrivateKey key;
};

SigningCert MakeCert(absl::Time not_before, absl::Time not_after) {
  auto key = crypto::RsaPrivateKey::Generate();
  EXPECT_THAT(key, IsOk());
  crypto::CertificateSpec spec;
  spec.common_name = "test platform";
  spec.not_before = not_before;
  spec.not_after = not_after;
  auto pem = crypto::IssueCertificate(spec, key->PublicKey(), *key, nullptr);
  EXPECT_THAT(pem, IsOk());
  auto cert = crypto::Certificate::FromPem(*pem);
  EXPECT_THAT(cert, IsOk());
  return {*cert, *key};
}

// FakeWeChat
//
// /v3/certificates as WeChat Pay serves it: the listed certificates sealed
// under the APIv3 key, the response signed with the key the request's
// Wechatpay-Serial names (the public key, or a listed certificate), else with
// the active certificate. Thread-safe.
class FakeWeChat {
 public:
  explicit FakeWeChat(const Clock& clock) : clock_(clock) {}

  void List(std::vector<SigningCert> certs, size_t active) {
    absl::MutexLock lock(&mu_);
    listed_ = std::move(certs);
    active_ = active;
  }
  void SetPublicKey(std::string id, crypto::RsaPrivateKey key) {
    absl::MutexLock lock(&mu_);
    public_key_.emplace(std::move(key));
    public_key_id_ = std::move(id);
  }
  void SetNotFound(bool v) { absl::MutexLock lock(&mu_); not_found_ = v; }
  void SetUnavailable(bool v) { absl::MutexLock lock(&mu_); unavailable_ = v; }
  // Requests to URLs starting with `prefix` get `status` (0: connection refused); "" : none.
  void SetHostDown(std::string prefix, int status) {
    absl::MutexLock lock(&mu_);
    down_prefix_ = std::move(prefix);
    down_status_ = status;
  }
  void SetTamperCiphertext(bool v) { absl::MutexLock lock(&mu_); tamper_ = v; }
  void SetCorruptSignature(bool v) { absl::MutexLock lock(&mu_); corrupt_ = v; }
  // Signs with a key that is in no listing.
  void SetStrangerSigner(std::optional<SigningCert> s) { absl::MutexLock lock(&mu_); stranger_ = std::move(s); }
  // Signs with the active certificate whatever the request asks for.
  void SetIgnoreAskedSerial(bool v) { absl::MutexLock lock(&mu_); ignore_asked_ = v; }
  void SetApiV3Key(std::string key) { absl::MutexLock lock(&mu_); apiv3_key_ = std::move(key); }
  // Runs `fn` once, right after the next request was answered.
  void AfterNextRequest(std::function<void()> fn) { absl::MutexLock lock(&mu_); after_next_ = std::move(fn); }

  int requests() const { absl::MutexLock lock(&mu_); return requests_; }
  std::vector<std::string> serials_asked() const { absl::MutexLock lock(&mu_); return serials_asked_; }
  std::vector<std::string> urls() const { absl::MutexLock lock(&mu_); return urls_; }

  absl::StatusOr<HttpResponse> Handle(const HttpRequest& request) {
    absl::StatusOr<HttpResponse> r = HandleLocked(request);
    std::function<void()> after;
    {
      absl::MutexLock lock(&mu_);
      after.swap(after_next_);
    }
    if (after) after();
    return r;
  }

 private:
  absl::StatusOr<HttpResponse> HandleLocked(const HttpRequest& request) {
    absl::MutexLock lock(&mu_);
    ++requests_;
    EXPECT_TRUE(absl::EndsWith(request.url, "/v3/certificates"));
    EXPECT_TRUE(absl::StartsWith(request.headers.GetOrEmpty("Authorization"), "WECHATPAY2-SHA256-RSA2048 "));
    const std::string asked(request.headers.GetOrEmpty("Wechatpay-Serial"));
    serials_asked_.push_back(asked);
    urls_.push_back(request.url);
    if (unavailable_) return absl::UnavailableError("connection refused");
    if (!down_prefix_.empty() && absl::StartsWith(request.url, down_prefix_)) {
      if (down_status_ == 0) return absl::UnavailableError("connection refused");
      HttpResponse down;
      down.status = down_status_;
      down.body = R"({"code":"SYSTEM_ERROR","message":"down"})";
      return down;
    }
    HttpResponse r;
    r.headers.Add("Request-ID", absl::StrCat("req-", requests_));
    if (not_found_) {
      r.status = 404;
      r.body = R"({"code":"RESOURCE_NOT_EXISTS","message":"无可用的平台证书"})";
      return r;
    }
    nlohmann::json data = nlohmann::json::array();
    for (const SigningCert& c : listed_) {
      const std::string nonce = crypto::RandomAlphanumeric(12);
      auto sealed = crypto::AesGcmSeal(apiv3_key_, nonce, "certificate", c.cert.pem());
      EXPECT_THAT(sealed, IsOk());
      std::string ct = crypto::Base64Encode(*sealed);
      if (tamper_) ct[10] = ct[10] == 'A' ? 'B' : 'A';
      data.push_back({{"serial_no", c.cert.serial()},
                      {"effective_time", "2024-01-01T00:00:00+08:00"},
                      {"expire_time", "2029-01-01T00:00:00+08:00"},
                      {"encrypt_certificate",
                       {{"algorithm", "AEAD_AES_256_GCM"}, {"nonce", nonce}, {"associated_data", "certificate"},
                        {"ciphertext", ct}}}});
    }
    r.status = 200;
    r.body = nlohmann::json{{"data", data}}.dump();
    const crypto::RsaPrivateKey* signer = nullptr;
    std::string serial;
    if (public_key_.has_value() && asked == public_key_id_ && !ignore_asked_) {
      signer = &*public_key_;
      serial = public_key_id_;
    } else if (active_ < listed_.size()) {
      signer = &listed_[active_].key;
      serial = listed_[active_].cert.serial();
      for (const SigningCert& c : listed_) {
        if (!ignore_asked_ && c.cert.serial() == asked) {
          signer = &c.key;
          serial = c.cert.serial();
        }
      }
    }
    if (stranger_.has_value()) {
      signer = &stranger_->key;
      serial = stranger_->cert.serial();
    }
    if (signer == nullptr) return r;  // unsigned
    const std::string ts = absl::StrCat(absl::ToUnixSeconds(clock_.Now()));
    const std::string nonce = crypto::RandomAlphanumeric(32);
    auto sig = signer->SignSha256(BuildResponseVerifyMessage(ts, nonce, corrupt_ ? r.body + "x" : r.body));
    EXPECT_THAT(sig, IsOk());
    r.headers.Add("Wechatpay-Timestamp", ts);
    r.headers.Add("Wechatpay-Nonce", nonce);
    r.headers.Add("Wechatpay-Serial", serial);
    r.headers.Add("Wechatpay-Signature", crypto::Base64Encode(*sig));
    return r;
  }

  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::string apiv3_key_ = kApiV3Key;
  bool ignore_asked_ = false;
  std::function<void()> after_next_;
  std::vector<SigningCert> listed_;
  size_t active_ = 0;
  std::optional<crypto::RsaPrivateKey> public_key_;
  std::string public_key_id_;
  std::optional<SigningCert> stranger_;
  bool not_found_ = false, unavailable_ = false, tamper_ = false, corrupt_ = false;
  int requests_ = 0;
  std::vector<std::string> serials_asked_;
  std::vector<std::string> urls_;
  std::string down_prefix_;
  int down_status_ = 0;
};

// FakeTransport
//
// Runs the FakeWeChat on its own thread, like the real transport. Can be
// paused so that several refresh requests meet one download in flight.
class FakeTransport final : public HttpTransport {
 public:
  explicit FakeTransport(FakeWeChat* server) : server_(server), thread_([this] { Loop(); }) {}
  ~FakeTransport() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      paused_ = false;
    }
    thread_.join();
  }

  TransferId Send(HttpRequest request, Callback done) override {
    absl::MutexLock lock(&mu_);
    const TransferId id = ++next_id_;
    queue_.push_back([this, request = std::move(request), done = std::move(done)]() mutable {
      std::move(done)(server_->Handle(request));
    });
    return id;
  }
  void Cancel(TransferId) override {}
  void Schedule(absl::Duration, absl::AnyInvocable<void() &&> fn) override {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(fn));
  }

  void Pause() { absl::MutexLock lock(&mu_); paused_ = true; }
  // Answers the newest queued transfer first (to let a later one overtake).
  void SetLastInFirstOut(bool v) { absl::MutexLock lock(&mu_); lifo_ = v; }
  void Resume() { absl::MutexLock lock(&mu_); paused_ = false; }
  size_t queued() const { absl::MutexLock lock(&mu_); return queue_.size(); }

 private:
  void Loop() {
    while (true) {
      absl::AnyInvocable<void() &&> fn;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](FakeTransport* t) { return t->stop_ || (!t->paused_ && !t->queue_.empty()); }, this));
        if (queue_.empty()) return;
        if (lifo_) {
          fn = std::move(queue_.back());
          queue_.pop_back();
        } else {
          fn = std::move(queue_.front());
          queue_.pop_front();
        }
      }
      std::move(fn)();
    }
  }

  FakeWeChat* const server_;
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_;
  TransferId next_id_ = 0;
  bool paused_ = false;
  bool lifo_ = false;
  bool stop_ = false;
  std::thread thread_;
};

// Polls `condition` until true or 10 s (real time) passed.
bool WaitFor(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

class CertificateManagerTest : public ::testing::Test {
 protected:
  CertificateManagerTest() : clock_(kT0), server_(clock_), transport_(&server_) {
    auto merchant = crypto::RsaPrivateKey::Generate();
    EXPECT_THAT(merchant, IsOk());
    credential_ = std::make_shared<Credential>("1900000001", "ABCDEF0123",
                                               std::make_shared<RsaSha256Signer>(*merchant), clock_);
    options_.base_url = "http://wechat.test";
    options_.timer_tick = absl::Milliseconds(2);
  }

  std::unique_ptr<PlatformCertificateManager> Make(StaticVerificationKeys keys = {}) {
    auto m = PlatformCertificateManager::Create(options_, credential_, &transport_, kApiV3Key, std::move(keys), clock_);
    EXPECT_THAT(m, IsOk());
    return m.ok() ? *std::move(m) : nullptr;
  }

  absl::Status Refresh(PlatformCertificateManager& m) { return m.RefreshBlocking(absl::Now() + absl::Seconds(10)); }

  // Calls RefreshForUnknownSerial and waits for its answer.
  absl::Status RefreshFor(PlatformCertificateManager& m, const std::string& serial) {
    absl::Notification done;
    absl::Status result;
    m.RefreshForUnknownSerial(serial, [&](absl::Status s) {
      result = s;
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    return result;
  }

  FakeClock clock_;
  FakeWeChat server_;
  FakeTransport transport_;
  std::shared_ptr<const Credential> credential_;
  PlatformCertificateManager::Options options_;
};

TEST_F(CertificateManagerTest, FirstDownloadWithoutKeysTrustsApiV3KeyAndSelfSignature) {
  SigningCert a = MakeCert(kT0 - absl::Hours(24), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  EXPECT_EQ(m->ring(), nullptr);
  ASSERT_THAT(Refresh(*m), IsOk());
  ASSERT_NE(m->ring(), nullptr);
  EXPECT_THAT(m->ring()->Serials(), ElementsAre(a.cert.serial()));
  EXPECT_EQ(m->ring()->preferred_serial(), a.cert.serial());
  EXPECT_THAT(server_.serials_asked(), ElementsAre(""));  // nothing to ask for yet
  const auto stats = m->GetStats();
  EXPECT_EQ(stats.last_success, kT0);
  EXPECT_EQ(stats.key_count, 1u);
  EXPECT_EQ(stats.earliest_certificate_expiry, a.cert.not_after());
  EXPECT_TRUE(stats.usable);
}

TEST_F(CertificateManagerTest, FirstDownloadVerifiedWithPinnedCertificate) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 0);
  auto m = Make({"", "", {a.cert}});
  ASSERT_NE(m->ring(), nullptr);
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(server_.serials_asked(), ElementsAre(a.cert.serial()));
  EXPECT_THAT(m->ring()->Serials(), UnorderedElementsAre(a.cert.serial(), b.cert.serial()));
  EXPECT_EQ(m->ring()->preferred_serial(), b.cert.serial());  // valid and newer
}

TEST_F(CertificateManagerTest, FirstDownloadVerifiedWithPublicKeyInMixedMode) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  auto pub = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(pub, IsOk());
  server_.List({a}, 0);
  server_.SetPublicKey("PUB_KEY_ID_0114", *pub);
  auto m = Make({"PUB_KEY_ID_0114", pub->PublicKey().ToPem(), {}});
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(server_.serials_asked(), ElementsAre("PUB_KEY_ID_0114"));
  EXPECT_THAT(m->ring()->Serials(), UnorderedElementsAre("PUB_KEY_ID_0114", a.cert.serial()));
  EXPECT_EQ(m->ring()->preferred_serial(), "PUB_KEY_ID_0114");
}

TEST_F(CertificateManagerTest, TamperedCiphertextIsRefused) {
  server_.List({MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(100))}, 0);
  server_.SetTamperCiphertext(true);
  auto m = Make();
  EXPECT_THAT(Refresh(*m), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(m->ring(), nullptr);
  EXPECT_FALSE(m->GetStats().usable);
  EXPECT_EQ(m->GetStats().downloads_failed, 1);
}

TEST_F(CertificateManagerTest, FirstDownloadSignedByAStrangerIsRefused) {
  server_.List({MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(100))}, 0);
  server_.SetStrangerSigner(MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(100)));
  auto m = Make();
  absl::Status s = Refresh(*m);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(GetReason(s), ErrorReason::kUnknownWechatpaySerial);
  EXPECT_EQ(m->ring(), nullptr);
}

TEST_F(CertificateManagerTest, BadSignatureByKnownKeyIsFinal) {
  SigningCert a = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(100));
  server_.List({a}, 0);
  server_.SetCorruptSignature(true);
  auto m = Make({"", "", {a.cert}});
  absl::Status s = Refresh(*m);
  EXPECT_EQ(GetReason(s), ErrorReason::kResponseSignatureInvalid);
  EXPECT_EQ(m->GetStats().last_error.code(), absl::StatusCode::kInternal);
}

TEST_F(CertificateManagerTest, UnsignedDownloadIsRefused) {
  server_.List({MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(100))}, 5);  // no active signer: unsigned
  auto m = Make();
  EXPECT_EQ(GetReason(Refresh(*m)), ErrorReason::kResponseSignatureMissing);
}

TEST_F(CertificateManagerTest, NotFoundWithPublicKeyKeepsPublicKeyMode) {
  auto pub = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(pub, IsOk());
  server_.SetNotFound(true);
  auto m = Make({"PUB_KEY_ID_0114", pub->PublicKey().ToPem(), {}});
  EXPECT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(m->ring()->Serials(), ElementsAre("PUB_KEY_ID_0114"));
  const auto stats = m->GetStats();
  EXPECT_TRUE(stats.platform_certificates_unavailable);
  EXPECT_TRUE(stats.usable);
  EXPECT_EQ(stats.downloads_failed, 0);
}

TEST_F(CertificateManagerTest, NotFoundWithoutKeysIsFailedPrecondition) {
  server_.SetNotFound(true);
  auto m = Make();
  EXPECT_THAT(Refresh(*m), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    ::testing::HasSubstr("no platform certificates")));
  EXPECT_EQ(m->ring(), nullptr);
}

TEST_F(CertificateManagerTest, ExpiredDroppedFutureKeptAndPreferredOnceValid) {
  SigningCert expired = MakeCert(kT0 - absl::Hours(100), kT0 - absl::Hours(1));
  SigningCert current = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(2));
  SigningCert future = MakeCert(kT0 + absl::Hours(1), kT0 + absl::Hours(500));
  server_.List({expired, current, future}, 1);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(m->ring()->Serials(), UnorderedElementsAre(current.cert.serial(), future.cert.serial()));
  EXPECT_EQ(m->ring()->preferred_serial(), current.cert.serial());

  SwappableKeyStore store(m->ring());
  m->Start(&store);
  server_.SetUnavailable(true);  // only the passage of time changes the ring now
  clock_.Advance(absl::Minutes(90));
  ASSERT_TRUE(WaitFor([&] { return store.Current()->preferred_serial() == future.cert.serial(); }));
  clock_.Advance(absl::Minutes(60));  // `current` expires
  ASSERT_TRUE(WaitFor([&] { return store.Current()->size() == 1; }));
  EXPECT_THAT(store.Current()->Serials(), ElementsAre(future.cert.serial()));
  EXPECT_TRUE(m->GetStats().usable);
}

TEST_F(CertificateManagerTest, TimerRefreshesAndSwapsOnlyWhenSerialsChange) {
  options_.refresh_interval = absl::Hours(1);
  options_.refresh_jitter = absl::ZeroDuration();
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  const auto first = store.Current();
  EXPECT_EQ(m->GetStats().downloads_started, 1);

  clock_.Advance(absl::Minutes(61));
  ASSERT_TRUE(WaitFor([&] { return m->GetStats().last_success == kT0 + absl::Minutes(61); }));
  EXPECT_EQ(store.Current(), first);  // same serials: no swap
  EXPECT_EQ(m->GetStats().ring_swaps, 1);

  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 0);
  clock_.Advance(absl::Minutes(61));
  ASSERT_TRUE(WaitFor([&] { return store.Current()->size() == 2; }));
  EXPECT_EQ(store.Current()->preferred_serial(), b.cert.serial());
  EXPECT_EQ(m->GetStats().downloads_started, 3);
}

TEST_F(CertificateManagerTest, FailedPeriodicRefreshRetriesAfterRetryInterval) {
  options_.refresh_interval = absl::Hours(1);
  options_.refresh_jitter = absl::ZeroDuration();
  options_.retry_interval = absl::Minutes(5);
  server_.List({MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365))}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  server_.SetUnavailable(true);
  clock_.Advance(absl::Minutes(61));
  ASSERT_TRUE(WaitFor([&] { return m->GetStats().downloads_failed == 1; }));
  EXPECT_THAT(m->GetStats().last_error, StatusIs(absl::StatusCode::kUnavailable));
  server_.SetUnavailable(false);
  clock_.Advance(absl::Minutes(6));
  ASSERT_TRUE(WaitFor([&] { return m->GetStats().last_error.ok(); }));
  EXPECT_EQ(m->GetStats().downloads_started, 3);
}

// Finding 1: the start-up (or a periodic) download does not hold back the
// refresh that a rotation right after it needs.
TEST_F(CertificateManagerTest, UnknownSerialRightAfterStartUpDownloadRefreshesAtOnce) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  // WeChat Pay rotates in the same second: B listed and signing.
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 1);
  EXPECT_THAT(RefreshFor(*m, b.cert.serial()), IsOk());
  EXPECT_NE(m->ring()->Find(b.cert.serial()), nullptr);
  EXPECT_EQ(m->GetStats().downloads_started, 2);
  EXPECT_EQ(m->GetStats().refreshes_rate_limited, 0);
}

// A periodic download already in flight when the rotation happens cannot
// bring the new serial; the requests waiting on it share one follow-up.
TEST_F(CertificateManagerTest, UnknownSerialDuringAPeriodicDownloadGetsOneFollowUp) {
  options_.refresh_interval = absl::Hours(1);
  options_.refresh_jitter = absl::ZeroDuration();
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  transport_.Pause();
  clock_.Advance(absl::Minutes(61));
  ASSERT_TRUE(WaitFor([&] { return transport_.queued() == 1; }));  // the periodic download, not answered yet
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  // WeChat Pay lists and activates B right after it answered the periodic download.
  server_.AfterNextRequest([&] { server_.List({a, b}, 1); });
  constexpr int kCallers = 8;
  std::atomic<int> ok{0}, done{0};
  for (int i = 0; i < kCallers; ++i) {
    m->RefreshForUnknownSerial(b.cert.serial(), [&](absl::Status s) {
      if (s.ok()) ++ok;
      ++done;
    });
  }
  transport_.Resume();
  ASSERT_TRUE(WaitFor([&] { return done.load() == kCallers; }));
  EXPECT_EQ(ok.load(), kCallers);
  EXPECT_EQ(server_.requests(), 3);  // start-up, periodic, one follow-up
  EXPECT_NE(store.Current()->Find(b.cert.serial()), nullptr);
}

// Two real rotations in a row: a refresh that brought the serial it was for
// does not hold back the next one.
TEST_F(CertificateManagerTest, RotationRightAfterAnotherRotationRefreshesAtOnce) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SigningCert b = MakeCert(kT0 - absl::Hours(2), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 1);
  ASSERT_THAT(RefreshFor(*m, b.cert.serial()), IsOk());
  clock_.Advance(absl::Seconds(1));
  SigningCert c = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 500));
  server_.List({a, b, c}, 2);
  EXPECT_THAT(RefreshFor(*m, c.cert.serial()), IsOk());
  EXPECT_THAT(m->ring()->Serials(), UnorderedElementsAre(a.cert.serial(), b.cert.serial(), c.cert.serial()));
  EXPECT_EQ(m->GetStats().downloads_started, 3);
  EXPECT_EQ(m->GetStats().refreshes_rate_limited, 0);
}

// Random serials (a hostile or broken upstream): at most fruitless_burst
// downloads per min_refresh_interval; never a download per answer.
TEST_F(CertificateManagerTest, RandomSerialsCannotMakeItDownloadInALoop) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  auto random_serial = [] { return crypto::RandomAlphanumeric(40); };
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(RefreshFor(*m, random_serial()), IsOk());  // downloaded; still unknown
  }
  EXPECT_EQ(m->GetStats().downloads_started, 4);
  for (int i = 0; i < 50; ++i) {
    clock_.Advance(absl::Milliseconds(500));  // 25 s in all
    EXPECT_THAT(RefreshFor(*m, random_serial()), StatusIs(absl::StatusCode::kResourceExhausted));
  }
  EXPECT_EQ(m->GetStats().downloads_started, 4);
  EXPECT_EQ(m->GetStats().refreshes_rate_limited, 50);
  EXPECT_THAT(RefreshFor(*m, a.cert.serial()), IsOk());  // known: no download needed
  clock_.Advance(absl::Seconds(6));                      // 31 s after the fruitless ones
  EXPECT_THAT(RefreshFor(*m, random_serial()), IsOk());
  EXPECT_EQ(m->GetStats().downloads_started, 5);
}

// Finding 4a: one stray unknown serial (a single odd answer) neither
// downloads again for itself nor holds back the refresh a real rotation
// right after it needs. The refusal is logged once per interval.
TEST_F(CertificateManagerTest, StraySerialDoesNotBlockTheNextRotation) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  const std::string stray = crypto::RandomAlphanumeric(40);
  EXPECT_THAT(RefreshFor(*m, stray), IsOk());  // downloaded; not listed
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(absl::Milliseconds(100));
    EXPECT_THAT(RefreshFor(*m, stray), StatusIs(absl::StatusCode::kResourceExhausted));
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(m->GetStats().downloads_started, 2);  // the stray serial downloaded once
  EXPECT_THAT(log, ::testing::HasSubstr("refresh rate limited"));
  size_t lines = 0;
  for (size_t at = log.find("refresh rate limited"); at != std::string::npos;
       at = log.find("refresh rate limited", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u);  // once per interval, not per refusal

  // WeChat Pay rotates 2 s after the stray answer.
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 1);
  EXPECT_THAT(RefreshFor(*m, b.cert.serial()), IsOk());
  EXPECT_NE(m->ring()->Find(b.cert.serial()), nullptr);
  EXPECT_EQ(m->GetStats().downloads_started, 3);
}

// Finding 4b: with the primary down, the download goes to the backup, and
// the rotation's refresh succeeds there.
class BackupDownloadTest : public CertificateManagerTest, public ::testing::WithParamInterface<int> {};

TEST_P(BackupDownloadTest, DownloadFailingOnThePrimaryIsSentToTheBackup) {
  options_.backup_url = "http://backup.test";
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  server_.SetHostDown("http://wechat.test/", GetParam());
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());  // start-up, through the backup
  std::vector<SigningCert> listed = {a};
  for (int i = 0; i < 5; ++i) {  // more rotations than the fruitless burst
    clock_.Advance(absl::Seconds(1));
    listed.push_back(MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400)));
    server_.List(listed, listed.size() - 1);  // the new one listed and signing
    EXPECT_THAT(RefreshFor(*m, listed.back().cert.serial()), IsOk()) << i;
  }
  EXPECT_THAT(server_.urls(), ::testing::Contains("http://backup.test/v3/certificates").Times(6));
  EXPECT_THAT(server_.urls(), ::testing::Contains("http://wechat.test/v3/certificates").Times(6));
  EXPECT_EQ(m->GetStats().downloads_from_backup, 6);
  EXPECT_EQ(m->GetStats().refreshes_rate_limited, 0);

  // A key reload's download takes the same way.
  ASSERT_THAT(m->Reconfigure(credential_, kApiV3Key, {}), IsOk());
  EXPECT_EQ(m->GetStats().downloads_from_backup, 7);
  EXPECT_TRUE(m->GetStats().last_error.ok()) << m->GetStats().last_error;
}

INSTANTIATE_TEST_SUITE_P(SiteDown, BackupDownloadTest, ::testing::Values(0, 500, 503));

// Finding 4b: a 4xx from the primary is an answer, not a site down: no backup.
TEST_F(CertificateManagerTest, ClientErrorOnThePrimaryIsNotSentToTheBackup) {
  options_.backup_url = "http://backup.test";
  server_.List({MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365))}, 0);
  server_.SetHostDown("http://wechat.test/", 401);
  auto m = Make();
  EXPECT_FALSE(Refresh(*m).ok());
  EXPECT_THAT(server_.urls(), ElementsAre("http://wechat.test/v3/certificates"));
  EXPECT_EQ(m->GetStats().downloads_from_backup, 0);
}

// Finding 5: an unsigned 404 from /v3/certificates (mixed mode, more than
// retired_grace after the last download) must not retire the certificates
// still held: only a verified listing changes the key set.
TEST_F(CertificateManagerTest, UnsignedNotFoundKeepsDownloadedCertificates) {
  options_.retired_grace = absl::Minutes(10);
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  auto pub = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(pub, IsOk());
  server_.List({a}, 0);
  server_.SetPublicKey("PUB_KEY_ID_0114", *pub);
  auto m = Make({"PUB_KEY_ID_0114", pub->PublicKey().ToPem(), {}});
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  ASSERT_THAT(store.Current()->Serials(), UnorderedElementsAre("PUB_KEY_ID_0114", a.cert.serial()));
  clock_.Advance(absl::Minutes(11));
  server_.SetNotFound(true);  // unsigned
  EXPECT_THAT(RefreshFor(*m, crypto::RandomAlphanumeric(40)), IsOk());
  EXPECT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(store.Current()->Serials(), UnorderedElementsAre("PUB_KEY_ID_0114", a.cert.serial()));
  EXPECT_EQ(m->GetStats().downloaded_certificates, 1u);
}

TEST_F(CertificateManagerTest, ConcurrentUnknownSerialRequestsShareOneDownload) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);

  // WeChat Pay starts signing with B; B is already listed.
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 1);
  transport_.Pause();
  constexpr int kCallers = 16;
  std::atomic<int> ok{0}, done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&] {
      m->RefreshForUnknownSerial(b.cert.serial(), [&](absl::Status s) {
        if (s.ok()) ++ok;
        ++done;
      });
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(WaitFor([&] { return transport_.queued() == 1; }));
  transport_.Resume();
  ASSERT_TRUE(WaitFor([&] { return done.load() == kCallers; }));
  EXPECT_EQ(ok.load(), kCallers);
  EXPECT_EQ(server_.requests(), 2);
  EXPECT_NE(store.Current()->Find(b.cert.serial()), nullptr);
}

TEST_F(CertificateManagerTest, RotationThroughUnknownSerialThenRetirementAfterGrace) {
  options_.retired_grace = absl::Minutes(10);
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);

  SigningCert b = MakeCert(kT0 - absl::Minutes(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 1);  // B active
  clock_.Advance(absl::Minutes(1));
  // The download asks for A (preferred) and is signed by A, which vouches for B.
  ASSERT_THAT(RefreshFor(*m, b.cert.serial()), IsOk());
  EXPECT_THAT(server_.serials_asked(), ElementsAre("", a.cert.serial()));
  EXPECT_EQ(store.Current()->preferred_serial(), b.cert.serial());
  server_.List({b}, 0);  // A retired
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(store.Current()->Serials(), UnorderedElementsAre(a.cert.serial(), b.cert.serial()));  // A in grace
  clock_.Advance(absl::Minutes(11));
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(store.Current()->Serials(), ElementsAre(b.cert.serial()));
}

// Finding 2: whoever holds the APIv3 key (an intercepting proxy, a
// plain-HTTP upstream) lists a self-signed certificate of its own, sealed
// under that key, and signs the download with it. While the gateway holds a
// usable key, that must not get in.
class CertificateManagerTrustTest : public CertificateManagerTest,
                                    public ::testing::WithParamInterface<std::string> {};

TEST_P(CertificateManagerTrustTest, HeldKeysRefuseADownloadOnlyTheApiV3KeyVouchesFor) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  auto pub = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(pub, IsOk());
  StaticVerificationKeys keys;
  if (GetParam() == "public_key") {
    keys.public_key_id = "PUB_KEY_ID_0114";
    keys.public_key_pem = pub->PublicKey().ToPem();
  } else if (GetParam() == "pinned_certificate") {
    keys.certificates = {a.cert};
  }
  auto m = Make(keys);
  if (GetParam() == "downloaded") {  // held from an earlier (first-use) download
    server_.List({a}, 0);
    ASSERT_THAT(Refresh(*m), IsOk());
  }
  const std::vector<std::string> held = m->ring()->Serials();

  SigningCert forged = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 365));
  server_.List({forged}, 0);  // sealed under the APIv3 key and self-signed
  EXPECT_EQ(GetReason(Refresh(*m)), ErrorReason::kUnknownWechatpaySerial);
  EXPECT_THAT(RefreshFor(*m, forged.cert.serial()), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(m->ring()->Find(forged.cert.serial()), nullptr);
  EXPECT_EQ(m->ring()->Serials(), held);
  EXPECT_EQ(m->GetStats().downloads_untrusted, 2);
  EXPECT_THAT(m->GetStats().last_error.message(), ::testing::HasSubstr("not signed by a key the gateway holds"));
}

INSTANTIATE_TEST_SUITE_P(HeldKeys, CertificateManagerTrustTest,
                         ::testing::Values("public_key", "pinned_certificate", "downloaded"));

// A held key vouches for new certificates, in both modes that hold one.
TEST_F(CertificateManagerTest, HeldPublicKeyVouchesForDownloadedCertificates) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  auto pub = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(pub, IsOk());
  server_.List({a}, 0);
  server_.SetPublicKey("PUB_KEY_ID_0114", *pub);
  server_.SetIgnoreAskedSerial(true);  // signs with A although asked for the public key
  auto m = Make({"PUB_KEY_ID_0114", pub->PublicKey().ToPem(), {}});
  EXPECT_EQ(GetReason(Refresh(*m)), ErrorReason::kUnknownWechatpaySerial);
  EXPECT_EQ(m->ring()->Find(a.cert.serial()), nullptr);
  server_.SetIgnoreAskedSerial(false);
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(m->ring()->Serials(), UnorderedElementsAre("PUB_KEY_ID_0114", a.cert.serial()));
}

// Once every held key expired, the gateway holds none: first use again.
TEST_F(CertificateManagerTest, TrustOnFirstUseAgainOnceEveryHeldKeyExpired) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(1));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  clock_.Advance(absl::Hours(2));
  SigningCert b = MakeCert(kT0, kT0 + absl::Hours(24 * 400));
  server_.List({b}, 0);
  ASSERT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(m->ring()->Serials(), ElementsAre(b.cert.serial()));
}

// Reloading the APIv3 key replaces what was downloaded under the old one:
// WeChat Pay's listing under the new key, signed by a certificate the gateway
// holds, is the new set; a certificate only the old listing had is gone at
// once (no retirement grace).
TEST_F(CertificateManagerTest, ReloadWithANewApiV3KeyReplacesDownloadedCertificates) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  SigningCert old = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 365));
  server_.List({a, old}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  ASSERT_EQ(store.Current()->size(), 2u);

  constexpr char kNewKey[] = "ZYXWVUTSRQPONMLKJIHGFEDCBA987654";
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 0);
  server_.SetApiV3Key(kNewKey);
  ASSERT_THAT(m->Reconfigure(credential_, kNewKey, {}), IsOk());
  EXPECT_THAT(store.Current()->Serials(), UnorderedElementsAre(a.cert.serial(), b.cert.serial()));
  EXPECT_EQ(m->GetStats().downloaded_certificates, 2u);
}

// Finding F1 (issue 13 retest): a key reload, or a touched key file, with
// the same APIv3 key must not reopen trust on first use. The upstream turned
// hostile (it holds the APIv3 key, not WeChat Pay's private key).
TEST_F(CertificateManagerTest, ReloadWithTheSameApiV3KeyKeepsDownloadedCertificatesAndTrust) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);

  SigningCert forged = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 365));
  server_.List({forged}, 0);  // sealed under the APIv3 key and self-signed
  EXPECT_EQ(GetReason(Refresh(*m)), ErrorReason::kUnknownWechatpaySerial);
  for (int i = 0; i < 2; ++i) {  // SIGHUP, then a touched key file: the same bytes each time
    EXPECT_THAT(m->Reconfigure(credential_, kApiV3Key, {}), IsOk());
    EXPECT_THAT(store.Current()->Serials(), ElementsAre(a.cert.serial()));
    EXPECT_EQ(m->GetStats().downloaded_certificates, 1u);
  }
  EXPECT_EQ(m->GetStats().downloads_untrusted, 3);
  EXPECT_THAT(RefreshFor(*m, forged.cert.serial()), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(store.Current()->Find(forged.cert.serial()), nullptr);

  // The genuine listing, still signed by A, keeps working after the reloads.
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  server_.List({a, b}, 0);
  EXPECT_THAT(Refresh(*m), IsOk());
  EXPECT_THAT(store.Current()->Serials(), UnorderedElementsAre(a.cert.serial(), b.cert.serial()));
}

// A new APIv3 key in the hands of the hostile upstream: the certificates
// downloaded so far still vouch, so its self-signed listing is refused; with
// nothing else usable the reload fails and nothing changes.
TEST_F(CertificateManagerTest, ReloadWithANewApiV3KeyStillNeedsAHeldKeyToVouch) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  const auto before = store.Current();

  constexpr char kNewKey[] = "ZYXWVUTSRQPONMLKJIHGFEDCBA987654";
  SigningCert forged = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 365));
  server_.SetApiV3Key(kNewKey);
  server_.List({forged}, 0);
  absl::Status s = m->Reconfigure(credential_, kNewKey, {});
  EXPECT_EQ(GetReason(s), ErrorReason::kUnknownWechatpaySerial) << s;
  EXPECT_EQ(store.Current(), before);
  EXPECT_EQ(store.Current()->Find(forged.cert.serial()), nullptr);
}

TEST_F(CertificateManagerTest, ReloadWithStaticKeysKeepsThemWhenTheDownloadFails) {
  auto pub = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(pub, IsOk());
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  server_.SetPublicKey("PUB_KEY_ID_0114", *pub);
  const StaticVerificationKeys keys{"PUB_KEY_ID_0114", pub->PublicKey().ToPem(), {}};
  auto m = Make(keys);
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  ASSERT_EQ(store.Current()->size(), 2u);

  // The new key does not open what WeChat Pay (still on the old one) sends.
  ASSERT_THAT(m->Reconfigure(credential_, "ZYXWVUTSRQPONMLKJIHGFEDCBA987654", keys), IsOk());
  EXPECT_THAT(store.Current()->Serials(), ElementsAre("PUB_KEY_ID_0114"));
  EXPECT_EQ(m->GetStats().downloaded_certificates, 0u);
  EXPECT_THAT(m->GetStats().last_error, StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(CertificateManagerTest, FailedReloadWithoutStaticKeysChangesNothing) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  const auto before = store.Current();
  EXPECT_THAT(m->Reconfigure(credential_, "ZYXWVUTSRQPONMLKJIHGFEDCBA987654", {}),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(store.Current(), before);
  ASSERT_THAT(Refresh(*m), IsOk());  // still the old key, which opens the listing
}

// A download sent before a key reload and answered after it was made (and
// would be judged) with the old settings: it is discarded, and the requests
// waiting on it get a download with the new ones.
TEST_F(CertificateManagerTest, DownloadAnsweredAfterAReloadIsDiscardedAndRedone) {
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(24 * 365));
  server_.List({a}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);

  transport_.Pause();
  SigningCert b = MakeCert(kT0 - absl::Hours(1), kT0 + absl::Hours(24 * 400));
  absl::Notification refreshed;
  absl::Status refresh_status;
  m->RefreshForUnknownSerial(b.cert.serial(), [&](absl::Status s) {
    refresh_status = s;
    refreshed.Notify();
  });
  ASSERT_TRUE(WaitFor([&] { return transport_.queued() == 1; }));  // asks for A, under the old key
  constexpr char kNewKey[] = "ZYXWVUTSRQPONMLKJIHGFEDCBA987654";
  server_.SetApiV3Key(kNewKey);
  server_.List({a, b}, 0);  // under the new key: A (held, signs) and B
  absl::Status reloaded;
  std::thread reload([&] { reloaded = m->Reconfigure(credential_, kNewKey, {}); });
  ASSERT_TRUE(WaitFor([&] { return transport_.queued() == 2; }));
  transport_.SetLastInFirstOut(true);  // the reload's download lands first
  transport_.Resume();
  reload.join();
  ASSERT_THAT(reloaded, IsOk());
  ASSERT_TRUE(refreshed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // Judged with the old settings, the first download (sealed under the new
  // key) would have failed; discarded, its waiter is served by the reload's.
  EXPECT_THAT(refresh_status, IsOk());
  EXPECT_GE(server_.requests(), 3);  // start-up, the stale one, the reload's (and a redo unless B was in by then)
  EXPECT_EQ(m->GetStats().downloads_untrusted, 0);
  EXPECT_EQ(m->GetStats().downloads_failed, 0);
  EXPECT_THAT(store.Current()->Serials(), UnorderedElementsAre(a.cert.serial(), b.cert.serial()));
}

TEST_F(CertificateManagerTest, HealthFollowsUsableKeys) {
  options_.refresh_interval = absl::Hours(1);
  options_.refresh_jitter = absl::ZeroDuration();
  SigningCert a = MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(2));
  server_.List({a}, 0);
  auto m = Make();
  std::vector<bool> seen;
  absl::Mutex mu;
  m->SetUsabilityListener([&](bool usable) {
    absl::MutexLock lock(&mu);
    seen.push_back(usable);
  });
  ASSERT_THAT(Refresh(*m), IsOk());
  SwappableKeyStore store(m->ring());
  m->Start(&store);
  server_.SetUnavailable(true);
  clock_.Advance(absl::Hours(3));  // A expired; refreshes fail
  ASSERT_TRUE(WaitFor([&] { return !m->GetStats().usable; }));
  ASSERT_TRUE(WaitFor([&] { absl::MutexLock lock(&mu); return seen.size() == 3; }));
  {
    absl::MutexLock lock(&mu);
    EXPECT_THAT(seen, ElementsAre(false, true, false));
  }
  SigningCert b = MakeCert(kT0, kT0 + absl::Hours(24 * 400));
  server_.List({b}, 0);
  server_.SetUnavailable(false);
  clock_.Advance(absl::Minutes(6));
  ASSERT_TRUE(WaitFor([&] { absl::MutexLock lock(&mu); return seen.size() == 4 && seen.back(); }));
}

TEST_F(CertificateManagerTest, StopCancelsAndRefusesLaterRequests) {
  server_.List({MakeCert(kT0 - absl::Hours(48), kT0 + absl::Hours(100))}, 0);
  auto m = Make();
  ASSERT_THAT(Refresh(*m), IsOk());
  m->Stop();
  EXPECT_THAT(RefreshFor(*m, "AB"), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(Refresh(*m), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(CertificateManagerTest, CreateRejectsBadSettings) {
  auto make = [&](PlatformCertificateManager::Options o, std::string key) {
    return PlatformCertificateManager::Create(o, credential_, &transport_, key, {}, clock_).status();
  };
  EXPECT_THAT(make(options_, "short"), StatusIs(absl::StatusCode::kInvalidArgument));
  auto o = options_;
  o.refresh_interval = absl::Hours(12);
  EXPECT_THAT(make(o, kApiV3Key), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("12h")));
  o = options_;
  o.refresh_interval = absl::Hours(11);
  o.refresh_jitter = absl::Hours(1);
  EXPECT_THAT(make(o, kApiV3Key), StatusIs(absl::StatusCode::kInvalidArgument));
  o = options_;
  o.base_url = "ftp://x";
  EXPECT_THAT(make(o, kApiV3Key), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(make(options_, kApiV3Key), IsOk());
  // The key never appears in a message.
  EXPECT_THAT(make(options_, std::string(kApiV3Key) + "x").message(), ::testing::Not(::testing::HasSubstr("0123")));
}

}  // namespace
}  // namespace palmgate::wechatpay
