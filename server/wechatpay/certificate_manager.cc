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
  // The keys held for the fresh download are the new static keys alone: what
  // earlier downloads brought (under the old APIv3 key) vouches for nothing.
  absl::StatusOr<std::shared_ptr<const KeyRing>> held = StaticRing(static_keys, clock_.Now());
  if (!held.ok()) return held.status();

  // The download, waited for here (like start-up); only this call's state is captured.
  struct State {
    absl::Notification done;
    absl::StatusOr<HttpResponse> response;
  };
  auto state = std::make_shared<State>();
  absl::StatusOr<HttpRequest> request = BuildDownloadRequest(*credential, held->get());
  if (request.ok()) {
    const TransferId id = transport_->Send(*std::move(request), [state](absl::StatusOr<HttpResponse> r) {
      state->response = std::move(r);
      state->done.Notify();
    });
    if (!state->done.WaitForNotificationWithTimeout(options_.download_timeout + absl::Seconds(1))) {
      transport_->Cancel(id);
      state->done.WaitForNotificationWithTimeout(options_.download_timeout);
    }
  } else {
    state->response = request.status();
    state->done.Notify();
  }
  absl::StatusOr<HttpResponse> response =
      MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout, "no answer before the deadline");
  if (state->done.HasBeenNotified()) response = std::move(state->response);
  const absl::Time now = clock_.Now();
  Outcome outcome = Evaluate(response, *held, apiv3_key.value(), now);
  const bool static_usable = HoldsUsableKey(held->get(), now);
  const bool not_found_ok = outcome.not_found && *held != nullptr;
  if (!outcome.status.ok() && !static_usable && !not_found_ok) {
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
    std::map<std::string, Downloaded> old_downloaded = std::move(downloaded_);
    credential_ = std::move(credential);
    apiv3_key_ = std::move(apiv3_key);
    static_keys_ = std::move(static_keys);
    downloaded_.clear();
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
    ++generation_;  // as at the start: whatever is in flight was sent before the commit
    stats_.last_attempt = now;
    ++stats_.downloads_started;
    stats_.platform_certificates_unavailable = outcome.not_found;
    if (outcome.status.ok() || not_found_ok) {
      stats_.last_success = now;
      stats_.last_error = absl::OkStatus();
      next_periodic_ = NextPeriodicLocked(now);
    } else {
      ++stats_.downloads_failed;
      stats_.last_error = outcome.status;
      next_periodic_ = now + options_.retry_interval;
      Log(LogLevel::kWarning, absl::StrCat(outcome.status.message(), "; key reload keeps the configured keys only, "
                                                                     "retrying the download in the background"));
    }
  }
  NotifyUsability();
  return absl::OkStatus();
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

bool PlatformCertificateManager::OnDemandAllowedLocked(absl::Time now) const {
  return now - last_fruitless_on_demand_ >= options_.min_refresh_interval;
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
                                                                             const KeyRing* held) const {
  absl::StatusOr<std::string> authorization = credential.AuthorizationHeader("GET", kCertificatesPath, "");
  if (!authorization.ok()) {
    return MakeError(absl::StatusCode::kInternal, ErrorReason::kConfiguration,
                     absl::StrCat("sign request: ", authorization.status().message()));
  }
  HttpRequest request;
  request.method = "GET";
  request.url = absl::StrCat(options_.base_url, kCertificatesPath);
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

void PlatformCertificateManager::SendDownload(int64_t number) {
  std::shared_ptr<const KeyRing> ring;
  std::shared_ptr<const Credential> credential;
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    ring = ring_;
    credential = credential_;
    generation = generation_;
  }
  absl::StatusOr<HttpRequest> request = BuildDownloadRequest(*credential, ring.get());
  if (!request.ok()) {
    OnDownload(number, generation, std::move(ring), request.status());
    return;
  }
  const TransferId id =
      transport_->Send(*std::move(request), [this, number, generation, ring](absl::StatusOr<HttpResponse> r) {
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
      if (outcome.status.ok() || outcome.not_found) {
        for (const crypto::Certificate& c : outcome.certificates) {
          downloaded_.insert_or_assign(c.serial(), Downloaded{c, now});
        }
        for (auto it = downloaded_.begin(); it != downloaded_.end();) {
          it = it->second.last_listed + options_.retired_grace <= now ? downloaded_.erase(it) : std::next(it);
        }
        absl::Status rebuilt = RebuildLocked(now);
        if (outcome.status.ok()) status = rebuilt;
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

    // An on-demand download that brought none of the serials asked for holds
    // the next on-demand one back (header: ON-DEMAND REFRESH); one that
    // brought a new certificate WeChat Pay signs with does not.
    if (on_demand && !stale) {
      const bool fruitful = std::any_of(waiters_.begin(), waiters_.end(), [this](const Waiter& w) {
        return !w.serial.empty() && ring_ != nullptr && ring_->Find(w.serial) != nullptr;
      });
      if (!fruitful) last_fruitless_on_demand_ = started;
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
          ++stats_.refreshes_rate_limited;
          UpstreamError e;
          e.reason = ErrorReason::kUnknownWechatpaySerial;
          e.serial = w.serial.substr(0, 64);
          to_run.emplace_back(std::move(w.done),
                              MakeError(absl::StatusCode::kResourceExhausted,
                                        "refresh platform certificates: rate limited", std::move(e)));
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
    } else if (in_flight_ || reloading_) {
      // Share it; if it started before this serial was seen and does not
      // bring it, OnDownload starts one follow-up for all such waiters (a
      // reload in progress starts one when it is over).
      waiters_.push_back(Waiter{std::string(serial), downloads_started_, true, std::move(done)});
      return;
    } else if (!OnDemandAllowedLocked(now)) {
      ++stats_.refreshes_rate_limited;
      UpstreamError e;
      e.reason = ErrorReason::kUnknownWechatpaySerial;
      e.serial = std::string(serial.substr(0, 64));
      immediate = MakeError(
          absl::StatusCode::kResourceExhausted,
          absl::StrCat("refresh platform certificates: rate limited (an unknown-serial download ",
                       absl::FormatDuration(absl::Trunc(now - last_fruitless_on_demand_, absl::Milliseconds(1))),
                       " ago brought none of the serials asked for; the next one after ",
                       absl::FormatDuration(options_.min_refresh_interval), ")"),
          std::move(e));
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
