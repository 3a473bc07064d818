#include "server/wechatpay/certificate_manager.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "server/common/logging.h"
#include "server/common/status_macros.h"
#include "server/wechatpay/certificates.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"

namespace palmgate::wechatpay {
namespace {

constexpr absl::Duration kWeChatMaxInterval = absl::Hours(12);

// Prefixes the message and keeps the payloads (UpstreamError) of `s`.
absl::Status Annotate(const absl::Status& s, absl::string_view prefix) {
  absl::Status out(s.code(), absl::StrCat(prefix, s.message()));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

constexpr absl::string_view kWhat = "download platform certificates: ";

// True when `ring` holds a key that may verify an answer at `now`: a public
// key, or a platform certificate within its validity.
bool HoldsUsableKey(const KeyRing* ring, absl::Time now) {
  if (ring == nullptr) return false;
  for (const VerificationKey& k : ring->keys()) {
    if (k.kind == VerificationKey::Kind::kPublicKey) return true;
    if (k.not_before <= now && now < k.not_after) return true;
  }
  return false;
}

// The static keys alone as a ring; null when there are none.
absl::StatusOr<std::shared_ptr<const KeyRing>> StaticRing(const StaticVerificationKeys& keys, absl::Time now) {
  if (keys.public_key_id.empty() && keys.certificates.empty()) return std::shared_ptr<const KeyRing>();
  KeyRing::Builder builder;
  if (!keys.public_key_id.empty()) {
    PALMGATE_RETURN_IF_ERROR(builder.AddPublicKeyPem(keys.public_key_id, keys.public_key_pem));
  }
  for (const crypto::Certificate& c : keys.certificates) PALMGATE_RETURN_IF_ERROR(builder.AddCertificate(c));
  return std::move(builder).Build(now);
}

}  // namespace

PlatformCertificateManager::Outcome PlatformCertificateManager::Failed(absl::Status status, bool not_found,
                                                                       bool untrusted) {
  return Outcome{std::move(status), not_found, untrusted, {}};
}

namespace {

// True when `response` failed in a way that says the host, not the request,
// is at fault: no connection, TLS failure, timeout, or HTTP 5xx. Such a
// download is worth sending to the backup host.
bool SiteDown(const absl::StatusOr<HttpResponse>& response) {
  if (!response.ok()) return response.status().code() != absl::StatusCode::kCancelled;
  return response->status >= 500;
}

// Compares two secrets without an early exit on the first difference.
bool SameSecret(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PlatformCertificateManager>> PlatformCertificateManager::Create(
    Options options, std::shared_ptr<const Credential> credential, HttpTransport* transport, std::string apiv3_key,
    StaticVerificationKeys static_keys, const Clock& clock) {
  crypto::SecretString key(std::move(apiv3_key));  // wiped on every error return
  if (key.size() != kApiV3KeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the APIv3 key must be ", kApiV3KeyBytes, " bytes, not ",
                                                   key.size()));
  }
  if (!absl::StartsWith(options.base_url, "https://") && !absl::StartsWith(options.base_url, "http://")) {
    return absl::InvalidArgumentError("certificate manager: base URL must be http:// or https://");
  }
  if (!options.backup_url.empty() && !absl::StartsWith(options.backup_url, "https://") &&
      !absl::StartsWith(options.backup_url, "http://")) {
    return absl::InvalidArgumentError("certificate manager: backup URL must be http:// or https://");
  }
  if (options.fruitless_burst < 1) {
    return absl::InvalidArgumentError("certificate manager: fruitless_burst must be at least 1");
  }
  if (options.refresh_interval <= absl::ZeroDuration() || options.refresh_jitter < absl::ZeroDuration() ||
      options.refresh_jitter >= options.refresh_interval) {
    return absl::InvalidArgumentError("certificate refresh interval must be positive and larger than its jitter");
  }
  if (options.refresh_interval + options.refresh_jitter >= kWeChatMaxInterval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "certificate refresh interval ", absl::FormatDuration(options.refresh_interval), " ± ",
        absl::FormatDuration(options.refresh_jitter), " must stay under 12h (WeChat Pay's rule)"));
  }
  if (options.min_refresh_interval < absl::ZeroDuration() || options.download_timeout <= absl::ZeroDuration() ||
      options.retry_interval <= absl::ZeroDuration() || options.timer_tick <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("certificate manager: durations must be positive");
  }
  if (credential == nullptr || transport == nullptr) {
    return absl::InvalidArgumentError("certificate manager: credential and transport are required");
  }
  std::unique_ptr<PlatformCertificateManager> manager(new PlatformCertificateManager(
      std::move(options), std::move(credential), transport, std::move(key), std::move(static_keys), clock));
  {
    absl::MutexLock lock(&manager->mu_);
    absl::Status built = manager->RebuildLocked(clock.Now());
    // No static key at all is fine (the first download provides them); a broken one is not.
    const bool has_static = !manager->static_keys_.public_key_id.empty() || !manager->static_keys_.certificates.empty();
    if (!built.ok() && has_static) return built;
  }
  return manager;
}

PlatformCertificateManager::PlatformCertificateManager(Options options, std::shared_ptr<const Credential> credential,
                                                       HttpTransport* transport, crypto::SecretString apiv3_key,
                                                       StaticVerificationKeys static_keys, const Clock& clock)
    : options_(std::move(options)),
      transport_(transport),
      clock_(clock),
      credential_(std::move(credential)),
      apiv3_key_(std::move(apiv3_key)),
      static_keys_(std::move(static_keys)),
      random_(std::random_device{}()) {}

absl::Status PlatformCertificateManager::Reconfigure(std::shared_ptr<const Credential> credential,
                                                     std::string apiv3_key_in, StaticVerificationKeys static_keys) {
  crypto::SecretString apiv3_key(std::move(apiv3_key_in));  // wiped on every return path
  if (credential == nullptr) return absl::InvalidArgumentError("certificate manager: credential is required");
  if (apiv3_key.size() != kApiV3KeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate manager: APIv3 key is ", apiv3_key.size(), " bytes; it must be 32"));
  }
  absl::MutexLock reload(&reload_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("certificate manager stopped");
    // A download in flight now was sent with the old settings: discarded when
    // it lands. No other starts until the reload is over; then one for
    // whoever waits (below).
    ++generation_;
    reloading_ = true;
  }
  absl::Cleanup resume = [this] {
    int64_t number = 0;
    {
      absl::MutexLock lock(&mu_);
      reloading_ = false;
      if (!stopping_ && !in_flight_ && !waiters_.empty()) {
        const bool on_demand =
            std::all_of(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return w.rate_limited; });
        number = BeginDownloadLocked(clock_.Now(), on_demand);
      }
    }
    if (number != 0) SendDownload(number);
  };
  // The keys that vouch for the reload's download: the new static keys and
  // what earlier downloads brought (header: TRUST DECISION). Nothing but this
  // call changes downloaded_ meanwhile: no download starts while reloading_,
  // and one in flight is discarded (generation_).
  absl::StatusOr<std::shared_ptr<const KeyRing>> held;
  bool same_apiv3_key;
  {
    absl::MutexLock lock(&mu_);
    same_apiv3_key = SameSecret(apiv3_key_.view(), apiv3_key.view());
    held = HeldForReloadLocked(static_keys, clock_.Now());
  }
  if (!held.ok()) return held.status();
  absl::StatusOr<std::shared_ptr<const KeyRing>> static_ring = StaticRing(static_keys, clock_.Now());
  if (!static_ring.ok()) return static_ring.status();

  absl::StatusOr<HttpResponse> response = DownloadBlocking(*credential, held->get());
  const absl::Time now = clock_.Now();
  Outcome outcome = Evaluate(response, *held, apiv3_key.value(), now);
  // What is usable if this download is not used: the static keys, plus the
  // downloaded certificates when the APIv3 key they came under stays.
  const bool kept_usable = HoldsUsableKey(same_apiv3_key ? held->get() : static_ring->get(), now);
  const bool not_found_ok = outcome.not_found && *static_ring != nullptr;
  if (!outcome.status.ok() && !kept_usable && !not_found_ok) {
    return outcome.not_found ? absl::FailedPreconditionError(
                                   "wechatpay has no platform certificates for this merchant (GET /v3/certificates "
                                   "answered 404 RESOURCE_NOT_EXISTS) and no WeChat Pay public key is configured")
                             : outcome.status;
  }

  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("certificate manager stopped");
    std::shared_ptr<const Credential> old_credential = credential_;
    crypto::SecretString old_key = std::move(apiv3_key_);  // wiped when it goes, kept on failure
    StaticVerificationKeys old_static = std::move(static_keys_);
    std::map<std::string, Downloaded> old_downloaded = downloaded_;
    credential_ = std::move(credential);
    apiv3_key_ = std::move(apiv3_key);
    static_keys_ = std::move(static_keys);
    // Same APIv3 key: what was downloaded stays (nothing to drop). A new one:
    // what came under the old key goes, trusted or not by this download.
    if (!same_apiv3_key) downloaded_.clear();
    if (outcome.status.ok()) {
      for (const crypto::Certificate& c : outcome.certificates) {
        downloaded_.insert_or_assign(c.serial(), Downloaded{c, now});
      }
    }
    absl::Status built = RebuildLocked(now, /*force=*/true);
    if (!built.ok()) {  // keep what worked: the ring was not replaced
      credential_ = std::move(old_credential);
      apiv3_key_ = std::move(old_key);
      static_keys_ = std::move(old_static);
      downloaded_ = std::move(old_downloaded);
      RebuildLocked(now).IgnoreError();  // restores next_change_ and the stats
      return built;
    }
    if (!same_apiv3_key) fruitless_serials_.clear();  // judged under the old key's listing
    ++generation_;  // as at the start: whatever is in flight was sent before the commit
    stats_.last_attempt = now;
    ++stats_.downloads_started;
    if (outcome.untrusted) ++stats_.downloads_untrusted;
    if (outcome.status.ok() || outcome.not_found) stats_.platform_certificates_unavailable = outcome.not_found;
    if (outcome.status.ok() || not_found_ok) {
      stats_.last_success = now;
      stats_.last_error = absl::OkStatus();
      next_periodic_ = NextPeriodicLocked(now);
    } else {
      ++stats_.downloads_failed;
      stats_.last_error = outcome.status;
      next_periodic_ = now + options_.retry_interval;
      Log(LogLevel::kWarning,
          absl::StrCat(outcome.status.message(),
                       same_apiv3_key ? "; key reload keeps the keys held so far (same APIv3 key)"
                                      : "; key reload keeps the configured keys only (new APIv3 key)",
                       ", retrying the download in the background"));
    }
  }
  NotifyUsability();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const KeyRing>> PlatformCertificateManager::HeldForReloadLocked(
    const StaticVerificationKeys& static_keys, absl::Time now) const {
  KeyRing::Builder builder;
  bool any = false;
  if (!static_keys.public_key_id.empty()) {
    PALMGATE_RETURN_IF_ERROR(builder.AddPublicKeyPem(static_keys.public_key_id, static_keys.public_key_pem));
    any = true;
  }
  for (const crypto::Certificate& c : static_keys.certificates) {
    PALMGATE_RETURN_IF_ERROR(builder.AddCertificate(c));
    any = true;
  }
  for (const auto& [serial, d] : downloaded_) {
    // Only a certificate valid now vouches; a pinned one with the same serial wins.
    if (d.certificate.not_before() <= now && now < d.certificate.not_after() &&
        builder.AddCertificate(d.certificate).ok()) {
      any = true;
    }
  }
  if (!any) return std::shared_ptr<const KeyRing>();
  return std::move(builder).Build(now);
}

absl::StatusOr<HttpResponse> PlatformCertificateManager::DownloadBlocking(const Credential& credential,
                                                                          const KeyRing* held) {
  struct State {
    absl::Notification done;
    absl::StatusOr<HttpResponse> response;
  };
  absl::StatusOr<HttpResponse> response =
      MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout, "no answer before the deadline");
  for (const bool backup : {false, true}) {
    if (backup && (options_.backup_url.empty() || !SiteDown(response))) break;
    absl::StatusOr<HttpRequest> request = BuildDownloadRequest(credential, held, backup);
    if (!request.ok()) return request.status();
    if (backup) {
      absl::MutexLock lock(&mu_);
      ++stats_.downloads_from_backup;
    }
    // Only this call's state is captured: the callback may outlive the wait.
    auto state = std::make_shared<State>();
    const TransferId id = transport_->Send(*std::move(request), [state](absl::StatusOr<HttpResponse> r) {
      state->response = std::move(r);
      state->done.Notify();
    });
    if (!state->done.WaitForNotificationWithTimeout(options_.download_timeout + absl::Seconds(1))) {
      transport_->Cancel(id);
      state->done.WaitForNotificationWithTimeout(options_.download_timeout);
    }
    response = state->done.HasBeenNotified()
                   ? std::move(state->response)
                   : MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                               "no answer before the deadline");
  }
  return response;
}

PlatformCertificateManager::~PlatformCertificateManager() { Stop(); }

std::shared_ptr<const KeyRing> PlatformCertificateManager::ring() const {
  absl::MutexLock lock(&mu_);
  return ring_;
}

absl::Status PlatformCertificateManager::RebuildLocked(absl::Time now, bool force) {
  KeyRing::Builder builder;
  if (!static_keys_.public_key_id.empty()) {
    PALMGATE_RETURN_IF_ERROR(builder.AddPublicKeyPem(static_keys_.public_key_id, static_keys_.public_key_pem));
  }
  absl::Time next_change = absl::InfiniteFuture();
  auto note = [&next_change, now](const crypto::Certificate& c) {
    if (c.not_before() > now) next_change = std::min(next_change, c.not_before());
    if (c.not_after() > now) next_change = std::min(next_change, c.not_after());
  };
  for (const crypto::Certificate& c : static_keys_.certificates) {
    PALMGATE_RETURN_IF_ERROR(builder.AddCertificate(c));
    note(c);
  }
  for (const auto& [serial, d] : downloaded_) {
    // A pinned certificate with the same serial wins; the duplicate is skipped.
    if (builder.AddCertificate(d.certificate).ok()) note(d.certificate);
  }
  next_change_ = next_change;
  absl::StatusOr<std::shared_ptr<const KeyRing>> built = std::move(builder).Build(now);
  if (!built.ok()) return built.status();
  const bool changed = force || ring_ == nullptr || ring_->Serials() != (*built)->Serials() ||
                       ring_->preferred_serial() != (*built)->preferred_serial();
  if (changed) {
    ring_ = *std::move(built);
    if (store_ != nullptr) store_->Replace(ring_);
    ++stats_.ring_swaps;
    Log(LogLevel::kInfo, absl::StrCat("wechatpay verification keys: ", absl::StrJoin(ring_->Serials(), ","),
                                      " (preferred ", ring_->preferred_serial(), ")"));
  }
  stats_.key_count = ring_->size();
  stats_.preferred_serial = ring_->preferred_serial();
  stats_.earliest_certificate_expiry = absl::InfiniteFuture();
  for (const VerificationKey& k : ring_->keys()) {
    if (k.kind == VerificationKey::Kind::kPlatformCertificate) {
      stats_.earliest_certificate_expiry = std::min(stats_.earliest_certificate_expiry, k.not_after);
    }
  }
  stats_.downloaded_certificates = downloaded_.size();
  return absl::OkStatus();
}

absl::Time PlatformCertificateManager::NextPeriodicLocked(absl::Time now) {
  const int64_t jitter_ms = absl::ToInt64Milliseconds(options_.refresh_jitter);
  std::uniform_int_distribution<int64_t> dist(-jitter_ms, jitter_ms);
  return now + options_.refresh_interval + absl::Milliseconds(jitter_ms > 0 ? dist(random_) : 0);
}

bool PlatformCertificateManager::UsableLocked(absl::Time now) const { return HoldsUsableKey(ring_.get(), now); }

bool PlatformCertificateManager::OnDemandAllowedLocked(absl::Time now) {
  while (!fruitless_.empty() && now - fruitless_.front() >= options_.min_refresh_interval) fruitless_.pop_front();
  return fruitless_.size() < static_cast<size_t>(options_.fruitless_burst);
}

bool PlatformCertificateManager::RememberedFruitlessLocked(absl::string_view serial, absl::Time now) {
  auto it = fruitless_serials_.find(std::string(serial));
  if (it == fruitless_serials_.end()) return false;
  if (now - it->second < options_.min_refresh_interval) return true;
  fruitless_serials_.erase(it);
  return false;
}

void PlatformCertificateManager::RememberFruitlessLocked(const std::string& serial, absl::Time now) {
  if (serial.empty() || serial.size() > 64) return;  // a real serial is 40 hex digits or a PUB_KEY_ID_
  if (fruitless_serials_.size() >= kMaxRememberedSerials && fruitless_serials_.count(serial) == 0) {
    for (auto it = fruitless_serials_.begin(); it != fruitless_serials_.end();) {
      it = now - it->second >= options_.min_refresh_interval ? fruitless_serials_.erase(it) : std::next(it);
    }
    if (fruitless_serials_.size() >= kMaxRememberedSerials) {
      fruitless_serials_.erase(std::min_element(fruitless_serials_.begin(), fruitless_serials_.end(),
                                                [](const auto& a, const auto& b) { return a.second < b.second; }));
    }
  }
  fruitless_serials_.insert_or_assign(serial, now);
}

absl::Status PlatformCertificateManager::RateLimitedLocked(absl::string_view serial, absl::Time now,
                                                           bool remembered) {
  ++stats_.refreshes_rate_limited;
  const std::string why =
      remembered ? absl::StrCat("a download less than ", absl::FormatDuration(options_.min_refresh_interval),
                                " ago did not bring this serial")
                 : absl::StrCat(fruitless_.size(), " unknown-serial downloads in the last ",
                                absl::FormatDuration(options_.min_refresh_interval),
                                " brought none of the serials asked for");
  if (now - last_limit_log_ >= options_.min_refresh_interval) {
    last_limit_log_ = now;
    Log(LogLevel::kWarning,
        absl::StrCat("wechatpay: platform certificate refresh rate limited (", why,
                     "); answers signed by serials the gateway does not hold fail until it may download again "
                     "(logged once per ",
                     absl::FormatDuration(options_.min_refresh_interval), ")"));
  }
  UpstreamError e;
  e.reason = ErrorReason::kUnknownWechatpaySerial;
  e.serial = std::string(serial.substr(0, 64));
  return MakeError(absl::StatusCode::kResourceExhausted,
                   absl::StrCat("refresh platform certificates: rate limited (", why, ")"), std::move(e));
}

int64_t PlatformCertificateManager::BeginDownloadLocked(absl::Time now, bool on_demand) {
  in_flight_ = true;
  in_flight_on_demand_ = on_demand;
  transfer_ = 0;
  in_flight_start_ = now;
  ++downloads_started_;
  ++stats_.downloads_started;
  stats_.last_attempt = now;
  return downloads_started_;
}

absl::StatusOr<HttpRequest> PlatformCertificateManager::BuildDownloadRequest(const Credential& credential,
                                                                             const KeyRing* held,
                                                                             bool backup) const {
  absl::StatusOr<std::string> authorization = credential.AuthorizationHeader("GET", kCertificatesPath, "");
  if (!authorization.ok()) {
    return MakeError(absl::StatusCode::kInternal, ErrorReason::kConfiguration,
                     absl::StrCat("sign request: ", authorization.status().message()));
  }
  HttpRequest request;
  request.method = "GET";
  request.url = absl::StrCat(backup ? options_.backup_url : options_.base_url, kCertificatesPath);
  request.timeout = options_.download_timeout;
  request.headers.Add("Accept", "application/json");
  request.headers.Add("Authorization", *std::move(authorization));
  // Ask WeChat Pay to sign with a key we hold: the trust decision depends on it.
  // Without one it picks its current certificate.
  if (held != nullptr && !held->preferred_serial().empty()) {
    request.headers.Add("Wechatpay-Serial", held->preferred_serial());
  }
  return request;
}

void PlatformCertificateManager::SendDownload(int64_t number, bool backup) {
  std::shared_ptr<const KeyRing> ring;
  std::shared_ptr<const Credential> credential;
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    ring = ring_;
    credential = credential_;
    generation = generation_;
    if (backup) ++stats_.downloads_from_backup;
  }
  absl::StatusOr<HttpRequest> request = BuildDownloadRequest(*credential, ring.get(), backup);
  if (!request.ok()) {
    OnDownload(number, generation, std::move(ring), request.status());
    return;
  }
  const TransferId id = transport_->Send(
      *std::move(request), [this, number, generation, ring, backup](absl::StatusOr<HttpResponse> r) {
        // The primary is down: the same download once more, to the backup
        // (header: ON-DEMAND REFRESH), unless it is moot by now.
        if (!backup && !options_.backup_url.empty() && SiteDown(r)) {
          bool retry;
          {
            absl::MutexLock lock(&mu_);
            retry = !stopping_ && in_flight_ && downloads_started_ == number && generation == generation_;
            if (retry) transfer_ = 0;
          }
          if (retry) {
            Log(LogLevel::kWarning,
                absl::StrCat(kWhat, "the primary failed (",
                             r.ok() ? absl::StrCat("HTTP ", r->status) : std::string(r.status().message()),
                             "); trying the backup"));
            SendDownload(number, /*backup=*/true);
            return;
          }
        }
        OnDownload(number, generation, ring, std::move(r));
      });
  bool cancel = false;
  {
    absl::MutexLock lock(&mu_);
    if (in_flight_ && downloads_started_ == number) {
      transfer_ = id;
      cancel = stopping_;
    }
  }
  if (cancel) transport_->Cancel(id);
}

PlatformCertificateManager::Outcome PlatformCertificateManager::Evaluate(
    const absl::StatusOr<HttpResponse>& response, const std::shared_ptr<const KeyRing>& held,
    const std::string& apiv3_key, absl::Time now) const {
  if (!response.ok()) return Failed(Annotate(response.status(), kWhat));
  const HttpResponse& r = *response;
  if (HoldsUsableKey(held.get(), now)) {
    // A key we hold must vouch for the download (header: TRUST DECISION). The
    // APIv3 key alone is not enough here: whoever holds it could otherwise
    // slip in a certificate of their own next to the keys we pinned.
    absl::StatusOr<VerifiedResponse> verified = ValidateResponse(r, *held, now, options_.validator);
    if (!verified.ok()) {
      if (GetReason(verified.status()) == ErrorReason::kUnknownWechatpaySerial) {
        return Failed(Annotate(verified.status(),
                               absl::StrCat(kWhat, "refused: not signed by a key the gateway holds "
                                                   "(only those may vouch for new certificates): ")),
                      /*not_found=*/false, /*untrusted=*/true);
      }
      return Failed(Annotate(verified.status(), kWhat), r.status == 404);
    }
    absl::StatusOr<std::vector<crypto::Certificate>> certs = ParseCertificatesResponse(r.body, apiv3_key);
    if (!certs.ok()) return Failed(Annotate(certs.status(), kWhat));
    return Outcome{absl::OkStatus(), false, false, *std::move(certs)};
  }
  // No usable key held: trust on first use. AES-GCM under the APIv3 key
  // authenticates the certificates, and the response must verify with one of
  // them (see the header's TRUST DECISION).
  absl::Status classified = ClassifyHttpStatus(r);
  if (!classified.ok()) return Failed(Annotate(classified, kWhat), r.status == 404);
  absl::StatusOr<std::vector<crypto::Certificate>> certs = ParseCertificatesResponse(r.body, apiv3_key);
  if (!certs.ok()) return Failed(Annotate(certs.status(), kWhat));
  KeyRing::Builder builder;
  for (const crypto::Certificate& c : *certs) {
    absl::Status added = builder.AddCertificate(c);
    if (!added.ok()) return Failed(Annotate(added, kWhat));
  }
  absl::StatusOr<std::shared_ptr<const KeyRing>> own = std::move(builder).Build(now);
  if (!own.ok()) {
    return Failed(MakeError(absl::StatusCode::kInternal, ErrorReason::kUnknownWechatpaySerial,
                      absl::StrCat(kWhat, "no usable certificate in the listing (empty, or all expired)")));
  }
  absl::StatusOr<VerifiedResponse> self = ValidateResponse(r, **own, now, options_.validator);
  if (!self.ok()) {
    return Failed(Annotate(self.status(),
                     absl::StrCat(kWhat, "signer is neither a known key nor a certificate from the listing: ")));
  }
  return Outcome{absl::OkStatus(), false, false, *std::move(certs)};
}

void PlatformCertificateManager::OnDownload(int64_t number, uint64_t generation, std::shared_ptr<const KeyRing> held,
                                            absl::StatusOr<HttpResponse> response) {
  const absl::Time now = clock_.Now();
  crypto::SecretString apiv3_key;  // a copy taken under the lock, wiped when it goes
  bool has_static;
  {
    absl::MutexLock lock(&mu_);
    apiv3_key = apiv3_key_;
    has_static = !static_keys_.public_key_id.empty() || !static_keys_.certificates.empty();
  }
  const Outcome outcome = Evaluate(response, held, apiv3_key.value(), now);

  std::vector<std::pair<Callback, absl::Status>> to_run;
  int64_t next = 0;
  {
    absl::MutexLock lock(&mu_);
    const bool on_demand = in_flight_on_demand_;
    const absl::Time started = in_flight_start_;
    in_flight_ = false;
    in_flight_on_demand_ = false;
    transfer_ = 0;
    ++busy_;
    // Keys were reloaded while this download was in flight: it was made (and
    // would be trusted) with the old settings. Discard it; the waiters get a
    // download with the new ones.
    const bool stale = generation != generation_;
    absl::Status status = outcome.status;
    if (!stale) {
      // Only a verified listing changes the key set (header: TRUST DECISION):
      // an unsigned 404 or a refused answer neither adds nor retires.
      if (outcome.status.ok()) {
        for (const crypto::Certificate& c : outcome.certificates) {
          downloaded_.insert_or_assign(c.serial(), Downloaded{c, now});
        }
        for (auto it = downloaded_.begin(); it != downloaded_.end();) {
          it = it->second.last_listed + options_.retired_grace <= now ? downloaded_.erase(it) : std::next(it);
        }
        status = RebuildLocked(now);
      }
      if (outcome.untrusted) ++stats_.downloads_untrusted;
      if (outcome.not_found) {
        stats_.platform_certificates_unavailable = true;
        if (has_static) {
          status = absl::OkStatus();
          if (!logged_not_found_) {
            logged_not_found_ = true;
            Log(LogLevel::kInfo,
                "wechatpay: /v3/certificates answered 404 (no platform certificates for this merchant); "
                "verifying with the configured keys only");
          }
        } else {
          status = absl::FailedPreconditionError(
              "wechatpay has no platform certificates for this merchant (GET /v3/certificates answered 404 "
              "RESOURCE_NOT_EXISTS): configure the WeChat Pay public key and its PUB_KEY_ID_ instead");
        }
      } else if (outcome.status.ok()) {
        stats_.platform_certificates_unavailable = false;
      }
      if (status.ok()) {
        stats_.last_success = now;
        stats_.last_error = absl::OkStatus();
        next_periodic_ = NextPeriodicLocked(now);
      } else {
        ++stats_.downloads_failed;
        stats_.last_error = status;
        next_periodic_ = now + options_.retry_interval;
        Log(LogLevel::kWarning, std::string(status.message()));
      }
    }

    // An on-demand download that brought none of the serials asked for takes
    // one of the fruitless_burst slots of the window (header: ON-DEMAND
    // REFRESH); one that brought a new certificate WeChat Pay signs with does
    // not. With a backup host, a primary that is down is not what decides:
    // the backup's answer is.
    if (on_demand && !stale) {
      const bool fruitful = std::any_of(waiters_.begin(), waiters_.end(), [this](const Waiter& w) {
        return !w.serial.empty() && ring_ != nullptr && ring_->Find(w.serial) != nullptr;
      });
      if (!fruitful) {
        fruitless_.push_back(started);
        // A verified listing without them: these serials are not looked for
        // again for a while, whatever else downloads meanwhile.
        if (outcome.status.ok()) {
          for (const Waiter& w : waiters_) {
            if (w.rate_limited && w.needs_after < number) RememberFruitlessLocked(w.serial, now);
          }
        }
      }
    }

    std::vector<Waiter> remaining;
    for (Waiter& w : waiters_) {
      if (stopping_) {
        to_run.emplace_back(std::move(w.done), absl::CancelledError("certificate manager stopped"));
      } else if (!w.serial.empty() && ring_ != nullptr && ring_->Find(w.serial) != nullptr) {
        to_run.emplace_back(std::move(w.done), absl::OkStatus());
      } else if (w.needs_after < number && !stale) {
        to_run.emplace_back(std::move(w.done), status);
      } else {
        remaining.push_back(std::move(w));
      }
    }
    waiters_.clear();
    if (!remaining.empty()) {
      // Serials first seen while this download was in flight (it started
      // before them, so it could not answer them) get one of their own.
      const bool any_unlimited =
          std::any_of(remaining.begin(), remaining.end(), [](const Waiter& w) { return !w.rate_limited; });
      if (stale && reloading_) {
        waiters_ = std::move(remaining);  // the reload starts their download when it is over
      } else if (stale || any_unlimited || OnDemandAllowedLocked(now)) {
        waiters_ = std::move(remaining);
        next = BeginDownloadLocked(now, /*on_demand=*/!any_unlimited);
      } else {
        for (Waiter& w : remaining) {
          to_run.emplace_back(std::move(w.done), RateLimitedLocked(w.serial, now, /*remembered=*/false));
        }
      }
    }
  }
  for (auto& [done, status] : to_run) std::move(done)(status);
  if (next != 0) SendDownload(next);
  NotifyUsability();
  absl::MutexLock lock(&mu_);
  --busy_;
}

absl::Status PlatformCertificateManager::RefreshBlocking(absl::Time deadline) {
  struct State {
    absl::Notification done;
    absl::Status status;
  };
  auto state = std::make_shared<State>();
  int64_t number = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("certificate manager stopped");
    waiters_.push_back(Waiter{"", downloads_started_, false, [state](absl::Status s) {
                                state->status = std::move(s);
                                state->done.Notify();
                              }});
    if (!in_flight_ && !reloading_) number = BeginDownloadLocked(clock_.Now(), /*on_demand=*/false);
  }
  if (number != 0) SendDownload(number);
  if (!state->done.WaitForNotificationWithDeadline(deadline)) {
    return MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                     absl::StrCat(kWhat, "no answer before the deadline"));
  }
  NotifyUsability();
  return state->status;
}

void PlatformCertificateManager::RefreshForUnknownSerial(absl::string_view serial, Callback done) {
  absl::Status immediate;
  int64_t number = 0;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    if (stopping_) {
      immediate = absl::CancelledError("certificate manager stopped");
    } else if (ring_ != nullptr && ring_->Find(serial) != nullptr) {
      immediate = absl::OkStatus();  // another refresh already brought it
    } else if (RememberedFruitlessLocked(serial, now)) {
      immediate = RateLimitedLocked(serial, now, /*remembered=*/true);
    } else if (in_flight_ || reloading_) {
      // Share it; if it started before this serial was seen and does not
      // bring it, OnDownload starts one follow-up for all such waiters (a
      // reload in progress starts one when it is over).
      waiters_.push_back(Waiter{std::string(serial), downloads_started_, true, std::move(done)});
      return;
    } else if (!OnDemandAllowedLocked(now)) {
      immediate = RateLimitedLocked(serial, now, /*remembered=*/false);
    } else {
      waiters_.push_back(Waiter{std::string(serial), downloads_started_, true, std::move(done)});
      number = BeginDownloadLocked(now, /*on_demand=*/true);
    }
  }
  if (number != 0) {
    SendDownload(number);
    return;
  }
  std::move(done)(std::move(immediate));
}

void PlatformCertificateManager::Start(SwappableKeyStore* store) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || timer_.joinable()) return;
    store_ = store;
    if (store_ != nullptr && ring_ != nullptr) store_->Replace(ring_);
    if (downloads_started_ == 0) next_periodic_ = clock_.Now();
    timer_ = std::thread([this] { TimerLoop(); });
  }
  NotifyUsability();
}

void PlatformCertificateManager::TimerLoop() {
  mu_.Lock();
  while (!stopping_) {
    const absl::Time now = clock_.Now();
    int64_t number = 0;
    bool changed = false;
    const bool may_start = !in_flight_ && !reloading_;
    if (may_start && now >= next_periodic_) number = BeginDownloadLocked(now, /*on_demand=*/false);
    if (now >= next_change_) {
      // A certificate expired (drop it) or became valid (it may now be preferred).
      absl::Status rebuilt = RebuildLocked(now);
      if (!rebuilt.ok()) {
        Log(LogLevel::kError, absl::StrCat("wechatpay verification keys: ", rebuilt.message()));
        next_change_ = absl::InfiniteFuture();
      }
      changed = true;
    }
    if (number != 0 || changed) {
      mu_.Unlock();
      if (number != 0) SendDownload(number);
      NotifyUsability();
      mu_.Lock();
      continue;
    }
    const absl::Time due = may_start ? std::min(next_periodic_, next_change_) : next_change_;
    const absl::Duration wait = std::clamp(due - now, absl::Milliseconds(1), options_.timer_tick);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
  }
  mu_.Unlock();
}

bool PlatformCertificateManager::IdleLocked() const { return !in_flight_ && busy_ == 0; }

void PlatformCertificateManager::Stop() {
  std::vector<Waiter> waiters;
  TransferId transfer = 0;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    transfer = transfer_;
    waiters.swap(waiters_);
  }
  if (transfer != 0) transport_->Cancel(transfer);
  for (Waiter& w : waiters) std::move(w.done)(absl::CancelledError("certificate manager stopped"));
  if (timer_.joinable()) timer_.join();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &PlatformCertificateManager::IdleLocked));
}

void PlatformCertificateManager::SetUsabilityListener(absl::AnyInvocable<void(bool)> listener) {
  {
    absl::MutexLock lock(&listener_mu_);
    listener_ = std::move(listener);
    last_notified_ = -1;
  }
  NotifyUsability();
}

void PlatformCertificateManager::NotifyUsability() {
  absl::MutexLock lock(&listener_mu_);
  bool usable;
  {
    absl::MutexLock inner(&mu_);
    usable = UsableLocked(clock_.Now());
  }
  if (!listener_ || last_notified_ == static_cast<int>(usable)) return;
  last_notified_ = static_cast<int>(usable);
  listener_(usable);
}

PlatformCertificateManager::Stats PlatformCertificateManager::GetStats() const {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.usable = UsableLocked(clock_.Now());
  return s;
}

}  // namespace palmgate::wechatpay
