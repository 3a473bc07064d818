#include "server/wechatpay/palm_service_client.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/logging.h"
#include "server/wechatpay/call_coalescer.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/error_mapping.h"
#include "server/wechatpay/request_target.h"

namespace palmgate::wechatpay {
namespace {

// The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const absl::Time kMinTimestamp = absl::FromUnixSeconds(-62135596800);
const absl::Time kMaxTimestamp = absl::FromUnixSeconds(253402300799) + absl::Nanoseconds(999999999);
constexpr size_t kMaxAuthorizeTimeBytes = 64;

absl::Status Malformed(absl::string_view why, const std::string& request_id) {
  UpstreamError e;
  e.reason = ErrorReason::kUpstreamMalformedResponse;
  e.http_status = 200;
  e.request_id = request_id;
  return MakeError(absl::StatusCode::kInternal, absl::StrCat("wechatpay: malformed response: ", why), std::move(e));
}

// Reads an optional string member. Returns false when present with another type.
bool OptionalString(const nlohmann::json& obj, const char* name, std::string* out) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

}  // namespace

absl::StatusOr<AuthorizationResult> ParseAuthorizationBody(absl::string_view body, absl::string_view openid,
                                                           absl::string_view organization_id) {
  // nlohmann::json keeps the last of two members with the same name, so
  // {"openid":"oOther",...,"openid":"oVictim"} would be read as about oVictim
  // while another parser reads it as about oOther: a body whose top-level
  // object names a member twice is refused (names compared unescaped).
  std::vector<std::string> names;
  bool duplicate = false;
  const nlohmann::json::parser_callback_t seen = [&names, &duplicate](int depth, nlohmann::json::parse_event_t event,
                                                                      nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string()) {
      const std::string& name = parsed.get_ref<const std::string&>();
      duplicate |= std::find(names.begin(), names.end(), name) != names.end();
      names.push_back(name);
    }
    return true;
  };
  nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), seen, /*allow_exceptions=*/false);
  if (!doc.is_object()) return Malformed("body is not a JSON object", "");
  if (duplicate) return Malformed("a member name appears twice", "");
  AuthorizationResult r;
  for (auto [name, out] : {std::pair{"openid", &r.openid}, std::pair{"organization_id", &r.organization_id},
                           std::pair{"state", &r.state}, std::pair{"authorize_time", &r.authorize_time_raw}}) {
    if (!OptionalString(doc, name, out)) return Malformed(absl::StrCat("\"", name, "\" is not a string"), "");
  }
  // The signature binds the body to WeChat Pay, not to this request: only the
  // openid in the body ties the answer to the question. An answer naming no
  // openid could be replayed (within the timestamp window) for any openid.
  if (r.openid.empty()) return Malformed("answer names no openid", "");
  // A verified answer about someone else is still the wrong answer.
  if (r.openid != openid) return Malformed("answer is for another openid", "");
  if (!r.organization_id.empty() && r.organization_id != organization_id) {
    return Malformed("answer is for another organization_id", "");
  }
  if (r.state.empty()) return Malformed("answer carries no state", "");
  // Signed, but passed on verbatim (wechatpay_state): only what has the form of
  // a WeChat Pay enum value, known or not, UPPER_SNAKE of at most 64 characters.
  if (!IsWellFormedWechatpayCode(r.state)) return Malformed("state is not of the form [A-Z][A-Z0-9_]{0,63}", "");
  // An RFC 3339 time is at most 35 characters of ASCII.
  if (r.authorize_time_raw.size() > kMaxAuthorizeTimeBytes ||
      !std::all_of(r.authorize_time_raw.begin(), r.authorize_time_raw.end(),
                   [](char c) { return c >= ' ' && c < 0x7F; })) {
    return Malformed(absl::StrCat("authorize_time is over ", kMaxAuthorizeTimeBytes, " bytes or not printable ASCII"),
                     "");
  }
  if (!r.authorize_time_raw.empty()) {
    absl::Time t;
    std::string err;
    // Only times a google.protobuf.Timestamp can hold (years 1-9999): the
    // answer's clients must be able to read it. Others keep only the raw text.
    if (absl::ParseTime(absl::RFC3339_full, r.authorize_time_raw, &t, &err) && t >= kMinTimestamp &&
        t <= kMaxTimestamp) {
      r.authorize_time = t;
    }
  }
  return r;
}

struct PalmServiceClient::Call {
  CallId id = 0;
  std::string openid;
  std::string organization_id;
  std::string target;
  absl::Mutex mu;
  absl::Time deadline ABSL_GUARDED_BY(mu);  // the callers' deadline (coalesced callers move it), within `cap`
  absl::Time cap ABSL_GUARDED_BY(mu);       // the gateway's own horizon: max_timeout from the (last) start
  Callback done ABSL_GUARDED_BY(mu);
  bool finished ABSL_GUARDED_BY(mu) = false;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  bool in_backoff ABSL_GUARDED_BY(mu) = false;
  TransferId transfer ABSL_GUARDED_BY(mu) = 0;
  int attempts ABSL_GUARDED_BY(mu) = 0;
  bool avoid_primary ABSL_GUARDED_BY(mu) = false;
  // `deadline` is a caller's, earlier than `cap`: a timer ends the running attempt then, without blaming
  // the site. Otherwise the deadline is the gateway's own cap, which the transfer's budget enforces.
  bool callers_deadline ABSL_GUARDED_BY(mu) = false;
  bool deadline_cut ABSL_GUARDED_BY(mu) = false;    // the deadline timer cancelled the running attempt
};

namespace {

// A probe that has not reported this long after its own limit is considered lost.
constexpr absl::Duration kLostProbeGrace = absl::Seconds(1);
// Re-armed deadline timers wait at least this long (a clock that stands still must not spin them).
constexpr absl::Duration kMinTimerDelay = absl::Milliseconds(1);
// A deadline this close to the gateway's own cap is the cap: GetAuthorization capped it a moment before
// the call computed its cap (or the service set it to max_timeout for a caller without a deadline). Seen
// as a caller's, a hung site's attempt was cut by that timer just before its own timeout and never
// counted (13 of 16 attempts on a hung primary; the calls never failed over).
constexpr absl::Duration kCapTolerance = absl::Milliseconds(50);

absl::Status DeadlineReached() {
  return MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                   "upstream: deadline reached before the answer");
}

// Full jitter (AWS architecture blog "Exponential Backoff And Jitter"):
// uniform in [0, min(cap, base * 2^(attempt-1))].
absl::Duration FullJitter(int attempt, absl::Duration base, absl::Duration cap) {
  absl::Duration ceiling = base;
  for (int i = 1; i < attempt && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> dist(0, std::max<int64_t>(0, absl::ToInt64Microseconds(ceiling)));
  return absl::Microseconds(dist(rng));
}

}  // namespace

// The coalescer's view of this client: unshared calls and the transport's timers.
class PalmServiceClient::SharedUpstream final : public CallCoalescer::Upstream {
 public:
  explicit SharedUpstream(PalmServiceClient* client) : client_(client) {}

  // CallCoalescer::Upstream
  uint64_t StartShared(absl::string_view openid, absl::string_view organization_id, absl::Time deadline,
                       CallCoalescer::Callback done) override {
    absl::StatusOr<std::string> target = AuthorizationQueryTarget(openid, organization_id);
    if (!target.ok()) {  // checked before joining; kept for completeness
      std::move(done)(target.status());
      return 0;
    }
    return client_->StartCall(openid, organization_id, *std::move(target), deadline, std::move(done));
  }
  void CancelShared(uint64_t id) override { client_->CancelCall(id); }
  void SetSharedDeadline(uint64_t id, absl::Time deadline) override { client_->SetDeadline(id, deadline); }
  void ScheduleAt(absl::Time when, absl::AnyInvocable<void() &&> fn) override {
    client_->transport_->Schedule(when - client_->clock_.Now(), std::move(fn));
  }

 private:
  PalmServiceClient* const client_;
};

PalmServiceClient::PalmServiceClient(Options options, std::shared_ptr<const Credential> credential,
                                     const KeyStore* keys, HttpTransport* transport, const Clock& clock)
    : options_(std::move(options)), credential_(std::move(credential)), keys_(keys), transport_(transport),
      clock_(clock) {
  if (options_.coalesce) {
    shared_upstream_ = std::make_unique<SharedUpstream>(this);
    coalescer_ = std::make_unique<CallCoalescer>(shared_upstream_.get());
  }
}

PalmServiceClient::~PalmServiceClient() = default;

CallId PalmServiceClient::GetAuthorization(absl::string_view openid, absl::string_view organization_id,
                                           absl::Time deadline, Callback done) {
  absl::StatusOr<std::string> target = AuthorizationQueryTarget(openid, organization_id);
  if (!target.ok()) {
    std::move(done)(target.status());
    return 0;
  }
  const absl::Time now = clock_.Now();
  deadline = std::min(deadline, now + options_.max_timeout);
  if (deadline <= now) {
    std::move(done)(MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                              "deadline already expired; nothing sent upstream"));
    return 0;
  }
  if (coalescer_ != nullptr) return coalescer_->Join(openid, organization_id, deadline, std::move(done));
  return StartCall(openid, organization_id, *std::move(target), deadline, std::move(done));
}

CallId PalmServiceClient::StartCall(absl::string_view openid, absl::string_view organization_id, std::string target,
                                    absl::Time deadline, Callback done) {
  auto call = std::make_shared<Call>();
  call->openid = std::string(openid);
  call->organization_id = std::string(organization_id);
  call->target = std::move(target);
  {
    absl::MutexLock lock(&call->mu);
    call->deadline = deadline;
    call->cap = std::max(deadline, clock_.Now() + options_.max_timeout);
    call->callers_deadline = deadline + kCapTolerance < call->cap;
    call->done = std::move(done);
  }
  {
    absl::MutexLock lock(&calls_mu_);
    call->id = ++next_call_;
    calls_[call->id] = call;
  }
  stat_calls_.fetch_add(1, std::memory_order_relaxed);
  const CallId id = call->id;
  StartAttempt(call);
  return id;
}

void PalmServiceClient::Cancel(CallId id) {
  if (coalescer_ != nullptr) {
    coalescer_->Cancel(id);
    return;
  }
  CancelCall(id);
}

void PalmServiceClient::SetDeadline(CallId id, absl::Time deadline) {
  std::shared_ptr<Call> call;
  {
    absl::MutexLock lock(&calls_mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    call = it->second;
  }
  bool arm = false;
  int attempt = 0;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    call->cap = std::max(call->cap, clock_.Now() + options_.max_timeout);
    const absl::Time before = call->deadline;
    call->deadline = std::min(deadline, call->cap);
    const bool was_callers = call->callers_deadline;
    call->callers_deadline = call->deadline + kCapTolerance < call->cap;
    // A later deadline needs no timer: the running one re-arms. An earlier one may end the running attempt sooner.
    arm = call->callers_deadline && (call->deadline < before || !was_callers) && !call->in_backoff &&
          call->transfer != 0;
    attempt = call->attempts;
    deadline = call->deadline;
  }
  if (arm) ArmDeadlineTimer(call, attempt, deadline);
}

void PalmServiceClient::CancelCall(CallId id) {
  std::shared_ptr<Call> call;
  {
    absl::MutexLock lock(&calls_mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    call = it->second;
  }
  TransferId transfer = 0;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    call->cancelled = true;
    if (!call->in_backoff) transfer = call->transfer;
  }
  if (transfer != 0) {
    transport_->Cancel(transfer);  // its callback finishes the call with kCancelled
  } else {
    Finish(call, MakeError(absl::StatusCode::kCancelled, ErrorReason::kCancelled, "upstream: call cancelled"));
  }
}

PalmServiceClient::HostChoice PalmServiceClient::PickHost(bool avoid_primary) {
  if (options_.backup_url.empty()) return {options_.base_url};
  if (avoid_primary) return {options_.backup_url};
  absl::MutexLock lock(&breaker_mu_);
  if (primary_failures_ < options_.breaker_failures) return {options_.base_url};
  // Open: the backup takes the traffic; one probe goes to the primary after the open period.
  const absl::Time now = clock_.Now();
  if (probing_ && now >= probe_started_ + options_.probe_timeout + kLostProbeGrace) probing_ = false;  // lost
  if (now >= open_until_ && !probing_) {
    probing_ = true;
    probe_started_ = now;
    return {options_.base_url, ++probe_number_};
  }
  return {options_.backup_url};
}

void PalmServiceClient::RecordPrimary(SiteVerdict verdict, uint64_t probe) {
  absl::MutexLock lock(&breaker_mu_);
  switch (verdict) {
    case SiteVerdict::kUp:
      primary_failures_ = 0;
      probing_ = false;
      open_until_ = absl::InfinitePast();
      return;
    case SiteVerdict::kNone:
      // Says nothing about the site, but ends this probe: the next call probes again.
      if (probe != 0 && probe == probe_number_) probing_ = false;
      return;
    case SiteVerdict::kDown:
      ++primary_failures_;
      if (probing_ || primary_failures_ >= options_.breaker_failures) {
        probing_ = false;
        open_until_ = clock_.Now() + options_.breaker_open;
      }
      return;
  }
}

void PalmServiceClient::StartAttempt(const std::shared_ptr<Call>& call) {
  bool avoid_primary;
  bool cancelled;
  absl::Time deadline;
  absl::Time cap;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    call->in_backoff = false;
    avoid_primary = call->avoid_primary;
    cancelled = call->cancelled;
    deadline = call->deadline;
    cap = call->cap;
  }
  if (cancelled) {
    Finish(call, MakeError(absl::StatusCode::kCancelled, ErrorReason::kCancelled, "upstream: call cancelled"));
    return;
  }
  const absl::Time now = clock_.Now();
  if (deadline <= now) {
    Finish(call, DeadlineReached());
    return;
  }
  absl::StatusOr<std::string> authorization = credential_.Current()->AuthorizationHeader("GET", call->target, "");
  if (!authorization.ok()) {
    Finish(call, MakeError(absl::StatusCode::kInternal, ErrorReason::kConfiguration,
                           absl::StrCat("sign request: ", authorization.status().message())));
    return;
  }
  HostChoice choice = PickHost(avoid_primary);
  // The transfer runs with the gateway's own limits only, so that a transport timeout is always the site's
  // fault: its own timeout (from when it leaves the transport's line for a connection) and the call's cap
  // as its budget (time in line included; running out of it after a wait is our congestion:
  // UPSTREAM_CONNECTIONS_BUSY). The callers' deadline, which coalesced callers may move, is a timer
  // (ArmDeadlineTimer).
  absl::Duration limit = std::min(options_.attempt_timeout, cap - now);
  if (choice.probe != 0) limit = std::min(limit, options_.probe_timeout);
  HttpRequest request;
  request.method = "GET";
  request.url = absl::StrCat(choice.host, call->target);
  request.timeout = limit;
  request.budget = cap - now;
  request.headers.Add("Accept", "application/json");
  request.headers.Add("Authorization", *std::move(authorization));
  request.headers.Add("Wechatpay-Serial", keys_->Current()->preferred_serial());
  stat_attempts_.fetch_add(1, std::memory_order_relaxed);
  if (choice.host != options_.base_url) stat_failovers_.fetch_add(1, std::memory_order_relaxed);
  int attempt;
  {
    absl::MutexLock lock(&call->mu);
    attempt = ++call->attempts;
    call->deadline_cut = false;
  }
  TransferId transfer =
      transport_->Send(std::move(request), [this, call, choice](absl::StatusOr<HttpResponse> r) {
        OnResponse(call, choice, std::move(r));
      });
  bool cancel = false;
  bool arm = false;
  {
    absl::MutexLock lock(&call->mu);
    call->transfer = transfer;
    cancel = call->cancelled && !call->finished;
    deadline = call->deadline;
    arm = !call->finished && call->callers_deadline;
  }
  if (cancel) {
    transport_->Cancel(transfer);
  } else if (arm) {
    ArmDeadlineTimer(call, attempt, deadline);
  }
}

void PalmServiceClient::ArmDeadlineTimer(const std::shared_ptr<Call>& call, int attempt, absl::Time when) {
  // Weak: a finished call's timer keeps nothing alive.
  std::weak_ptr<Call> weak = call;
  transport_->Schedule(std::max(when - clock_.Now(), kMinTimerDelay), [this, weak, attempt] {
    if (std::shared_ptr<Call> c = weak.lock()) OnDeadlineTimer(c, attempt);
  });
}

void PalmServiceClient::OnDeadlineTimer(const std::shared_ptr<Call>& call, int attempt) {
  TransferId transfer = 0;
  absl::Time rearm = absl::InfinitePast();
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished || call->attempts != attempt || call->in_backoff || call->deadline_cut) return;
    if (!call->callers_deadline) return;  // moved to the cap: the transfer's budget ends the attempt
    if (call->deadline > clock_.Now()) {
      // Moved later by a coalesced caller: the attempt goes on for it.
      rearm = call->deadline;
    } else {
      call->deadline_cut = true;
      transfer = call->transfer;
    }
  }
  if (rearm != absl::InfinitePast()) {
    ArmDeadlineTimer(call, attempt, rearm);
  } else if (transfer != 0) {
    transport_->Cancel(transfer);  // OnResponse finishes the call with kDeadlineExceeded
  }
}

void PalmServiceClient::OnResponse(const std::shared_ptr<Call>& call, const HostChoice& host,
                                   absl::StatusOr<HttpResponse> response) {
  const bool primary = host.host == options_.base_url;
  if (!response.ok()) {
    const ErrorReason reason = GetReason(response.status());
    if (reason == ErrorReason::kCancelled) {
      // The caller cancelled, or its deadline came: nothing the site did.
      bool deadline_cut;
      {
        absl::MutexLock lock(&call->mu);
        deadline_cut = call->deadline_cut;
      }
      if (primary) RecordPrimary(SiteVerdict::kNone, host.probe);
      Finish(call, deadline_cut ? DeadlineReached() : response.status());
      return;
    }
    if (reason == ErrorReason::kUpstreamConnectionsBusy) {
      // Our own line for a connection ate the call's time: local congestion, nothing the site did, and
      // no reason to fail over. Ends a probe like a cancel.
      if (primary) RecordPrimary(SiteVerdict::kNone, host.probe);
      RetryOrFinish(call, host.host, response.status(), /*site_down=*/false, absl::ZeroDuration());
      return;
    }
    // The transfer's time limit is the gateway's own (StartAttempt): a timeout is the site's fault.
    const bool retry = reason == ErrorReason::kUpstreamUnavailable || reason == ErrorReason::kUpstreamTimeout;
    const bool site_down = retry || reason == ErrorReason::kUpstreamTlsError;
    if (primary) RecordPrimary(site_down ? SiteVerdict::kDown : SiteVerdict::kUp, host.probe);
    if (retry) {
      RetryOrFinish(call, host.host, response.status(), /*site_down=*/true, absl::ZeroDuration());
    } else {
      Finish(call, response.status());
    }
    return;
  }
  absl::Status classified = ClassifyHttpStatus(*response, clock_.Now());
  if (!classified.ok()) {
    const ErrorReason reason = GetReason(classified);
    const bool site_down = reason == ErrorReason::kUpstreamUnavailable;  // 5xx
    if (primary) RecordPrimary(site_down ? SiteVerdict::kDown : SiteVerdict::kUp, host.probe);
    // 429 is not among them: a retry is more of what WeChat Pay asks to reduce; the caller gets the hint.
    // 202 (accepted, not processed) is asked again, after Retry-After when it says one.
    if (site_down || reason == ErrorReason::kUpstreamAccepted) {
      absl::Duration retry_after = absl::ZeroDuration();
      if (response->headers.Get("Retry-After").has_value()) retry_after = GetUpstreamError(classified)->retry_after;
      RetryOrFinish(call, host.host, std::move(classified), site_down, retry_after);
    } else {
      Finish(call, std::move(classified));
    }
    return;
  }
  if (primary) RecordPrimary(SiteVerdict::kUp, host.probe);
  Verify(call, host.host, *std::move(response), /*after_refresh=*/false);
}

void PalmServiceClient::Verify(const std::shared_ptr<Call>& call, const std::string& host, HttpResponse response,
                               bool after_refresh) {
  // One key-ring snapshot for the whole verification, even if keys rotate meanwhile.
  std::shared_ptr<const KeyRing> ring = keys_->Current();
  const absl::Time now = clock_.Now();
  absl::StatusOr<VerifiedResponse> verified = ValidateResponse(response, *ring, now, options_.validator);
  if (!verified.ok()) {
    const ErrorReason reason = GetReason(verified.status());
    if (reason == ErrorReason::kUnknownWechatpaySerial && refresher_ != nullptr && !after_refresh) {
      stat_refreshes_.fetch_add(1, std::memory_order_relaxed);
      const std::string serial(response.headers.GetOrEmpty("Wechatpay-Serial"));
      absl::Status original = verified.status();
      refresher_->RefreshForUnknownSerial(
          serial, [this, call, host, response = std::move(response),
                   original = std::move(original)](absl::Status refreshed) mutable {
            if (!refreshed.ok()) {
              Finish(call, std::move(original));  // still unknown: never trusted
              return;
            }
            Verify(call, host, std::move(response), /*after_refresh=*/true);
          });
      return;
    }
    if (reason == ErrorReason::kResponseTimestampSkew) {
      // ValidateResponse judges the window only after the signature verified:
      // this timestamp is WeChat Pay's. Every other failure leaves the skew alone.
      int64_t ts = 0;
      if (absl::SimpleAtoi(response.headers.GetOrEmpty("Wechatpay-Timestamp"), &ts)) {
        NoteSkew(absl::FromUnixSeconds(ts) - now, /*beyond_window=*/true);
      }
    }
    Finish(call, verified.status());
    return;
  }
  NoteSkew(verified->skew, /*beyond_window=*/false);
  absl::StatusOr<AuthorizationResult> result = ParseAuthorizationBody(response.body, call->openid, call->organization_id);
  if (!result.ok()) {
    std::optional<UpstreamError> e = GetUpstreamError(result.status());
    if (e.has_value()) {
      e->request_id = verified->request_id;
      e->request_id_dropped = verified->request_id_dropped;
      Finish(call, MakeError(result.status().code(), result.status().message(), *std::move(e)));
    } else {
      Finish(call, result.status());
    }
    return;
  }
  result->request_id = verified->request_id;
  result->request_id_dropped = verified->request_id_dropped;
  result->verified_by = verified->serial;
  result->clock_skew = verified->skew;
  result->host = host;
  {
    absl::MutexLock lock(&call->mu);
    result->attempts = call->attempts;
  }
  Finish(call, std::move(result));
}

void PalmServiceClient::RetryOrFinish(const std::shared_ptr<Call>& call, const std::string& host,
                                      absl::Status error, bool site_down, absl::Duration retry_after) {
  absl::Duration delay;
  bool give_up = false;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    delay = std::max(FullJitter(call->attempts, options_.backoff_base, options_.backoff_max), retry_after);
    // Never wait into the deadline: an attempt needs some time to be worth sending.
    give_up = call->cancelled || call->attempts >= options_.max_attempts ||
              clock_.Now() + delay + absl::Milliseconds(5) >= call->deadline;
    if (!give_up) {
      call->in_backoff = true;
      call->transfer = 0;
      // After a site-down failure the next attempt goes to the other host.
      if (site_down && !options_.backup_url.empty()) call->avoid_primary = host == options_.base_url;
    }
  }
  if (give_up) {
    Finish(call, std::move(error));
    return;
  }
  stat_retries_.fetch_add(1, std::memory_order_relaxed);
  transport_->Schedule(delay, [this, call] { StartAttempt(call); });
}

void PalmServiceClient::Finish(const std::shared_ptr<Call>& call, absl::StatusOr<AuthorizationResult> result) {
  Callback done;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    call->finished = true;
    done = std::move(call->done);
  }
  {
    absl::MutexLock lock(&calls_mu_);
    calls_.erase(call->id);
  }
  std::move(done)(std::move(result));
}

void PalmServiceClient::NoteSkew(absl::Duration skew, bool beyond_window) {
  last_skew_ms_.store(absl::ToInt64Milliseconds(skew), std::memory_order_relaxed);
  if (!beyond_window) return;
  const int64_t now_s = absl::ToUnixSeconds(clock_.Now());
  int64_t last = last_skew_log_s_.load(std::memory_order_relaxed);
  if (now_s - last < 60 || !last_skew_log_s_.compare_exchange_strong(last, now_s)) return;  // once a minute
  Log(LogLevel::kWarning,
      absl::StrCat("wechatpay: response timestamp is ", absl::FormatDuration(skew),
                   " away from the local clock (allowed: under ", absl::FormatDuration(options_.validator.max_clock_skew),
                   "); the local clock is probably wrong: check NTP"));
}

PalmServiceClient::Stats PalmServiceClient::GetStats() const {
  Stats s;
  s.calls = stat_calls_.load(std::memory_order_relaxed);
  s.attempts = stat_attempts_.load(std::memory_order_relaxed);
  s.retries = stat_retries_.load(std::memory_order_relaxed);
  s.failovers = stat_failovers_.load(std::memory_order_relaxed);
  s.key_refreshes = stat_refreshes_.load(std::memory_order_relaxed);
  if (coalescer_ != nullptr) {
    const CallCoalescer::Stats c = coalescer_->GetStats();
    s.coalesced = c.waiters - c.shared_calls;
  }
  s.last_clock_skew = absl::Milliseconds(last_skew_ms_.load(std::memory_order_relaxed));
  absl::MutexLock lock(&breaker_mu_);
  s.breaker_open = primary_failures_ >= options_.breaker_failures;
  return s;
}

}  // namespace palmgate::wechatpay
