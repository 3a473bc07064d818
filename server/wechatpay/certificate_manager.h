// File: server/wechatpay/certificate_manager.h
//
// PlatformCertificateManager: automatic management of WeChat Pay platform
// certificates when an APIv3 key is configured (wechatpay-v3.md 4.1–4.3,
// anchors.md B#1, B#2, B#6).
//
// - Downloads `GET /v3/certificates` at start-up (RefreshBlocking), on its own
//   timer thread every `refresh_interval` ± `refresh_jitter` (default 11 h ±
//   30 min; WeChat Pay asks for an interval under 12 h), on key reload
//   (Reconfigure), and on demand when a response names a serial the key ring
//   does not hold (KeyRefresher, see ON-DEMAND REFRESH below).
// - Every download is signed afresh (Credential), sent with `Wechatpay-Serial`
//   set to the ring's preferred serial (so that WeChat Pay signs the answer
//   with a key the gateway holds), classified and verified (ValidateResponse),
//   and each certificate decrypted with AEAD_AES_256_GCM under the APIv3 key
//   (ParseCertificatesResponse).
// - The new ring is the static keys (configured WeChat Pay public key, pinned
//   platform certificates) plus the downloaded certificates. Expired
//   certificates are dropped, not-yet-valid ones kept (they become preferred
//   once valid). A certificate that vanishes from the listing is kept for
//   `retired_grace` more, so that a response signed just before WeChat Pay
//   retired it still verifies. The store is swapped (copy-on-write, one
//   pointer swap) only when the set of serials or the preferred serial
//   changes; verifications in progress keep the snapshot they started with.
// - A 404 from /v3/certificates (a merchant onboarded with a WeChat Pay public
//   key only, `RESOURCE_NOT_EXISTS`) is not an error when a static key exists:
//   the manager keeps public-key mode and logs it once. Without any static key
//   start-up fails with kFailedPrecondition.
//
// TRUST DECISION (every download):
//   * While the gateway holds a usable key (a configured public key, a pinned
//     platform certificate, or a certificate from an earlier download that is
//     valid now), a download is trusted only if its signature verifies with a
//     key it holds: the one its `Wechatpay-Serial` names, which must be in the
//     ring. A download signed by any other serial, or failing to verify, is
//     refused whole; nothing in it is used. New certificates therefore enter
//     the ring only vouched for by a key already trusted: a rotation is
//     trusted because the old certificate (or the public key) signed the
//     listing that introduces the new one.
//   * Only a gateway holding no usable key (the first download without
//     configured keys, or every certificate expired) trusts on first use: the
//     download is accepted if every certificate in it decrypts and
//     authenticates under the APIv3 key (AES-256-GCM; only WeChat Pay and the
//     merchant hold that key) AND the response signature verifies with one of
//     the certificates it delivered (the PHP CLI approach, wechatpay-v3.md
//     4.3). Whoever holds the APIv3 key can forge that first download, so keep
//     it as secret as the merchant private key; configure a public key or pin
//     a certificate to take the APIv3 key out of the trust path. No chain to a
//     WeChat Pay CA is checked (none is published for this purpose).
//   * Only a verified answer changes the key set. A download that fails, is
//     refused, or is an unverified 404 neither adds, drops nor retires a
//     downloaded certificate (so an unsigned 404 cannot empty the ring).
//   * Key reload (Reconfigure) never reopens trust on first use while a usable
//     key is held. The keys held for the reload's download are the new static
//     keys plus the certificates downloaded so far (still valid ones vouch,
//     as WeChat Pay's real listing is signed by them):
//       - APIv3 key unchanged (same bytes; e.g. SIGHUP, or a key file touched
//         or rewritten with the same content): the downloaded certificates
//         and the trust state stay as they are; a trusted download adds to
//         them, a refused or failed one changes nothing.
//       - APIv3 key changed: the downloaded certificates are replaced by
//         what the reload's download brings, and that download must verify
//         with a held key (static, or downloaded under the old key). If it
//         fails or is refused they are dropped all the same (they came under
//         the old key); without a usable static key the reload then fails
//         and nothing changes. Only a gateway holding no usable key at all
//         falls back to trust on first use under the new key. A gateway that
//         was poisoned on first use therefore stays so across a key change:
//         restart it (a fresh first use) or configure a public key or pinned
//         certificate.
//     A download that was in flight across a reload is discarded and redone.
//
// ON-DEMAND REFRESH (RefreshForUnknownSerial):
//   * A request for a serial the ring does not hold starts a download at once
//     unless one is in flight; concurrent requests share it. A request that
//     arrives while a download is in flight (started before the serial was
//     seen) and is not satisfied by it gets one follow-up download.
//   * Start-up, periodic and reload downloads do not count against the
//     limit; neither does an on-demand download that brought a serial it was
//     asked for (a real rotation, at any moment, even right after another
//     one). An on-demand download that brought none of the serials asked for
//     (random serials from a hostile or broken upstream, or a download that
//     failed on every host) is fruitless:
//       - its serials are remembered for `min_refresh_interval` (at most
//         kMaxRememberedSerials of them) when the listing was verified and
//         did not hold them: the same stray serial does not download again
//         (kResourceExhausted at once);
//       - at most `fruitless_burst` fruitless downloads start per
//         `min_refresh_interval` (sliding window); beyond that, requests for
//         other unknown serials fail at once with kResourceExhausted, logged
//         as "rate limited" once per interval. One stray serial therefore
//         never blocks the refresh a real rotation needs. A flood of distinct
//         random serials (answers whose signatures cannot verify) still
//         exhausts the window, and a rotation in that window then fails its
//         calls until the window has room again.
//   * Every download goes to `base_url` first; one that fails there in a
//     site-down way (no connection, TLS failure, timeout, HTTP 5xx) is sent
//     again to `backup_url` when one is set, and judged by that answer (a
//     primary failure alone never makes a refresh fruitless when a backup
//     exists).
//
// Thread safety: all public methods are thread-safe. Callbacks (KeyRefresher
// `done`, the usability listener) never run under the manager's mutex.
// RefreshBlocking must not be called on the transport's thread.
//
// Example (start-up):
//   PALMGATE_ASSIGN_OR_RETURN(auto manager, PlatformCertificateManager::Create(
//       options, credential, transport, apiv3_key, static_keys, clock));
//   PALMGATE_RETURN_IF_ERROR(manager->RefreshBlocking(clock.Now() + absl::Seconds(10)));
//   auto store = std::make_unique<SwappableKeyStore>(manager->ring());
//   manager->Start(store.get());       // periodic refresh; swaps go into `store`
//   client.SetKeyRefresher(manager.get());
#ifndef PALMGATE_SERVER_WECHATPAY_CERTIFICATE_MANAGER_H_
#define PALMGATE_SERVER_WECHATPAY_CERTIFICATE_MANAGER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/crypto/rsa.h"
#include "server/crypto/secret.h"
#include "server/wechatpay/credential.h"
#include "server/wechatpay/http_transport.h"
#include "server/wechatpay/key_refresher.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/response_validator.h"

namespace palmgate::wechatpay {

inline constexpr absl::string_view kCertificatesPath = "/v3/certificates";
// Most serials remembered as not brought by a download (ON-DEMAND REFRESH).
inline constexpr size_t kMaxRememberedSerials = 256;

// Keys configured by the operator, always part of the ring.
struct StaticVerificationKeys {
  std::string public_key_id;   // "PUB_KEY_ID_…"; empty: none
  std::string public_key_pem;  // SPKI PEM of that key
  std::vector<crypto::Certificate> certificates;  // pinned platform certificates
};

class PlatformCertificateManager final : public KeyRefresher {
 public:
  struct Options {
    std::string base_url;  // scheme://host[:port], no path
    // Where a download that failed on base_url in a site-down way goes next
    // (see ON-DEMAND REFRESH); empty: nowhere.
    std::string backup_url;
    // Periodic refresh: every refresh_interval ± refresh_jitter (uniform).
    // refresh_interval + refresh_jitter must stay under 12 h.
    absl::Duration refresh_interval = absl::Hours(11);
    absl::Duration refresh_jitter = absl::Minutes(30);
    // After a failed periodic download, the next try comes this much later.
    absl::Duration retry_interval = absl::Minutes(5);
    // The window of the on-demand limit and how long a serial a download did
    // not bring is remembered (see ON-DEMAND REFRESH). Other downloads
    // neither count nor wait.
    absl::Duration min_refresh_interval = absl::Seconds(30);
    // Fruitless on-demand downloads allowed per min_refresh_interval (>= 1).
    int fruitless_burst = 3;
    absl::Duration download_timeout = absl::Seconds(10);
    // How long a certificate no longer listed is still accepted.
    absl::Duration retired_grace = absl::Minutes(10);
    // Longest real-time wait of the timer thread between looks at the Clock
    // (so a FakeClock in tests, or a suspended host, is noticed).
    absl::Duration timer_tick = absl::Minutes(1);
    ValidatorOptions validator;
  };

  // Counters and state, for health and metrics.
  struct Stats {
    absl::Time last_success = absl::InfinitePast();  // last download used (or 404 in public-key mode)
    absl::Time last_attempt = absl::InfinitePast();
    absl::Status last_error;       // OK when the last download succeeded
    size_t key_count = 0;          // keys in the current ring
    size_t downloaded_certificates = 0;
    absl::Time earliest_certificate_expiry = absl::InfiniteFuture();  // over the ring's certificates
    std::string preferred_serial;
    int64_t downloads_started = 0;
    int64_t downloads_failed = 0;
    int64_t ring_swaps = 0;
    int64_t refreshes_rate_limited = 0;
    int64_t downloads_untrusted = 0;  // refused: not signed by a held key (see TRUST DECISION)
    int64_t downloads_from_backup = 0;  // sent to backup_url after a site-down failure of base_url
    bool platform_certificates_unavailable = false;  // /v3/certificates answered 404
    bool usable = false;           // the ring holds a key valid now
  };

  // Returns a manager; nothing is downloaded yet. kInvalidArgument for an
  // APIv3 key that is not 32 bytes, a bad base URL, a refresh interval that is
  // not positive or reaches 12 h with its jitter, or an unusable static key.
  // `credential`, `transport` and `clock` must outlive the manager (the
  // credential is shared).
  static absl::StatusOr<std::unique_ptr<PlatformCertificateManager>> Create(
      Options options, std::shared_ptr<const Credential> credential, HttpTransport* transport,
      std::string apiv3_key, StaticVerificationKeys static_keys, const Clock& clock);

  // Stops (see Stop()).
  ~PlatformCertificateManager() override;

  PlatformCertificateManager(const PlatformCertificateManager&) = delete;
  PlatformCertificateManager& operator=(const PlatformCertificateManager&) = delete;

  // Downloads now (joining a download in flight only if it started after this
  // call) and waits until `deadline`. OK when the ring holds the result; also
  // OK for a 404 when static keys exist (public-key mode). Otherwise the
  // download's error (kUnavailable, kDeadlineExceeded, kInternal for a
  // response that fails verification, kDataLoss for a certificate that fails
  // AES-GCM authentication, kFailedPrecondition for a 404 without static keys).
  // Not rate limited.
  absl::Status RefreshBlocking(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // The current ring; null until one could be built (static keys or a download).
  std::shared_ptr<const KeyRing> ring() const ABSL_LOCKS_EXCLUDED(mu_);

  // Attaches `store` (Replace()d with the current ring now and on every later
  // change) and starts the timer thread. Call once, after the first ring
  // exists. `store` must outlive the manager or Stop().
  void Start(SwappableKeyStore* store) ABSL_LOCKS_EXCLUDED(mu_);

  // Stops the timer thread, cancels a download in flight and waits for its
  // callback, and fails pending refresh requests with kCancelled. Later
  // refresh requests fail with kCancelled. Idempotent. Call before the
  // transport goes away; not on the transport's thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // `listener(usable)` is called now with the current state, then whenever it
  // changes (a refresh result, certificates expiring or becoming valid).
  // Calls are serialised; the listener must not call SetUsabilityListener.
  void SetUsabilityListener(absl::AnyInvocable<void(bool)> listener) ABSL_LOCKS_EXCLUDED(mu_, listener_mu_);

  Stats GetStats() const ABSL_LOCKS_EXCLUDED(mu_);

  // Key reload: replaces the signing credential, the APIv3 key and the static
  // keys, and downloads afresh with the new settings, trusting the download
  // only if a held key (a new static key or a downloaded certificate)
  // verifies it, or on first use when none is held (see TRUST DECISION).
  // With the same APIv3 key the downloaded certificates stay; with a new one
  // they are replaced by this download's. Waits for that download until its
  // timeout. OK when the new ring is in place, also when the download failed
  // but the keys kept are usable (the timer retries after
  // `retry_interval`). On error (an unusable static key, an APIv3 key that
  // is not 32 bytes, a new APIv3 key whose download failed without a usable
  // static key, kCancelled after Stop()) nothing changes. A download in flight meanwhile is
  // discarded, and refresh requests made meanwhile wait; one download with
  // the settings in force afterwards serves them. Not on the transport's
  // thread, nor concurrently with Stop().
  absl::Status Reconfigure(std::shared_ptr<const Credential> credential, std::string apiv3_key,
                           StaticVerificationKeys static_keys) ABSL_LOCKS_EXCLUDED(mu_, reload_mu_);

  // KeyRefresher. OK at once when the ring already holds `serial` (another
  // refresh got it); otherwise OK once a download that started after this
  // call completed (the ring may or may not hold `serial` then). kResourceExhausted
  // at once when `serial` was not brought by a download less than
  // min_refresh_interval ago, or the fruitless downloads of the last
  // min_refresh_interval used up `fruitless_burst` (see ON-DEMAND REFRESH); the
  // download's error when it failed; kCancelled after Stop().
  void RefreshForUnknownSerial(absl::string_view serial, Callback done) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    std::string serial;         // empty: any completed download will do
    int64_t needs_after = 0;    // satisfied by a download numbered above this
    bool rate_limited = false;  // unknown-serial requests are; start-up ones are not
    Callback done;
  };
  struct Downloaded {
    crypto::Certificate certificate;
    absl::Time last_listed;
  };
  struct Outcome {
    absl::Status status;
    bool not_found = false;
    bool untrusted = false;  // signed by a key the gateway does not hold
    std::vector<crypto::Certificate> certificates;
  };

  static Outcome Failed(absl::Status status, bool not_found = false, bool untrusted = false);
  PlatformCertificateManager(Options options, std::shared_ptr<const Credential> credential,
                             HttpTransport* transport, crypto::SecretString apiv3_key, StaticVerificationKeys static_keys,
                             const Clock& clock);

  // Marks a download as started; the caller sends it (SendDownload) after
  // unlocking. `on_demand`: started only for unknown-serial requests.
  int64_t BeginDownloadLocked(absl::Time now, bool on_demand) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when an on-demand download may start now (see ON-DEMAND REFRESH).
  bool OnDemandAllowedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when a download less than min_refresh_interval ago did not bring `serial`.
  bool RememberedFruitlessLocked(absl::string_view serial, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberFruitlessLocked(const std::string& serial, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The kResourceExhausted answer to a refused refresh; counts it and logs
  // (once per min_refresh_interval) that refreshes are rate limited.
  absl::Status RateLimitedLocked(absl::string_view serial, absl::Time now, bool remembered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Static keys plus the downloaded certificates: what vouches for a reload's download.
  absl::StatusOr<std::shared_ptr<const KeyRing>> HeldForReloadLocked(const StaticVerificationKeys& static_keys,
                                                                     absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends `request` to base_url and, after a site-down failure there, to
  // backup_url; waits up to the download timeout for each (Reconfigure).
  absl::StatusOr<HttpResponse> DownloadBlocking(const Credential& credential, const KeyRing* held)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns the signed GET /v3/certificates request, asking WeChat Pay to sign
  // with `held`'s preferred key (none when `held` is null).
  absl::StatusOr<HttpRequest> BuildDownloadRequest(const Credential& credential, const KeyRing* held,
                                                   bool backup = false) const;
  // `backup`: to backup_url (after a site-down failure on base_url).
  void SendDownload(int64_t number, bool backup = false) ABSL_LOCKS_EXCLUDED(mu_);
  // `held`: the ring when the download was sent; `generation`: generation_ then.
  void OnDownload(int64_t number, uint64_t generation, std::shared_ptr<const KeyRing> held,
                  absl::StatusOr<HttpResponse> response) ABSL_LOCKS_EXCLUDED(mu_);
  // The trust decision (header comment) for one download answer; `held` is
  // the ring the gateway held when it sent the request (may be null).
  Outcome Evaluate(const absl::StatusOr<HttpResponse>& response, const std::shared_ptr<const KeyRing>& held,
                   const std::string& apiv3_key, absl::Time now) const;
  // Rebuilds the ring from static + downloaded keys; swaps when it changed.
  // `force`: swap even when the serials did not change (a reloaded key may keep its id).
  absl::Status RebuildLocked(absl::Time now, bool force = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time NextPeriodicLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool UsableLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyUsability() ABSL_LOCKS_EXCLUDED(mu_, listener_mu_);
  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  HttpTransport* const transport_;
  const Clock& clock_;

  absl::Mutex reload_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one Reconfigure at a time

  mutable absl::Mutex mu_;
  // Replaced by Reconfigure (key reload), which also bumps generation_.
  std::shared_ptr<const Credential> credential_ ABSL_GUARDED_BY(mu_);
  crypto::SecretString apiv3_key_ ABSL_GUARDED_BY(mu_);  // wiped when replaced or freed
  StaticVerificationKeys static_keys_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const KeyRing> ring_ ABSL_GUARDED_BY(mu_);
  SwappableKeyStore* store_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, Downloaded> downloaded_ ABSL_GUARDED_BY(mu_);  // by serial
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  int64_t downloads_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // settings (Reconfigure) a download was made with
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool in_flight_on_demand_ ABSL_GUARDED_BY(mu_) = false;
  bool reloading_ ABSL_GUARDED_BY(mu_) = false;  // Reconfigure running: no download starts
  int busy_ ABSL_GUARDED_BY(mu_) = 0;  // OnDownload calls still running (after in_flight_ cleared)
  TransferId transfer_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time in_flight_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Starts of the fruitless on-demand downloads of the last min_refresh_interval.
  std::deque<absl::Time> fruitless_ ABSL_GUARDED_BY(mu_);
  // Serials a verified download did not bring, and when (see ON-DEMAND REFRESH).
  std::map<std::string, absl::Time> fruitless_serials_ ABSL_GUARDED_BY(mu_);
  absl::Time last_limit_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time next_periodic_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time next_change_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();  // a cert expires or becomes valid
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool logged_not_found_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_);
  std::thread timer_;

  absl::Mutex listener_mu_;  // taken before mu_, never inside it
  absl::AnyInvocable<void(bool)> listener_ ABSL_GUARDED_BY(listener_mu_);
  int last_notified_ ABSL_GUARDED_BY(listener_mu_) = -1;  // -1 none, 0 false, 1 true
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_CERTIFICATE_MANAGER_H_
