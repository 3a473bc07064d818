// File: server/wechatpay/palm_service_client.h
//
// PalmServiceClient: the palm-scan authorization query
// `GET /v3/palmservice/authorization/openid/{openid}?organization_id=…`
// (wechatpay-v3.md section 1), end to end: validate the inputs, build the
// request-target, sign it, send it with `Wechatpay-Serial` set to the key the
// gateway prefers, classify the HTTP status, verify the response signature,
// and only then parse the body.
//
// Resilience (anchors.md B#7): this GET is idempotent, so a failed attempt is
// retried — on connection failures, the gateway's own attempt timeout with
// budget left, 5xx and 202 — with exponential backoff and full jitter, never
// past the caller's deadline, at most `max_attempts` times, never on 4xx or on
// a response that failed verification. 429 is never retried within a call:
// retrying multiplies exactly the traffic WeChat Pay asks to reduce; the
// caller gets kResourceExhausted with the (bounded) Retry-After as its retry
// hint. Every attempt is signed afresh (new timestamp and nonce).
//
// Whose fault a failure is: only what the site causes — a connection or TLS
// failure, a 5xx, an attempt outliving the gateway's own time limit
// (`attempt_timeout`, `max_timeout`, `probe_timeout`) — counts towards the
// circuit breaker and, when retried (not after a certificate that did not
// verify), moves the next attempt to the backup host. An attempt's own limit
// starts when its transfer leaves the transport's line for one of the
// gateway's own connections, and the call's cap (max_timeout) is its budget,
// line included: a call whose time runs out in that line, or running after a
// wait left it less than its own limit, ends with kUnavailable
// (kUpstreamConnectionsBusy, retry hint 1 s): local congestion, neither
// counted nor failed over. The caller's deadline is not the site's limit
// either: an attempt still running when the caller's deadline arrives is
// cancelled (a timer; the transfer runs with the gateway's own limits), the
// call ends with kDeadlineExceeded and the breaker learns nothing from it; a
// cancelled call neither. A deadline that is the gateway's own cap (the
// caller's is later, or within 50 ms of it) is no caller's: the transfer's
// own limits end the attempt, and a site that did not answer in it is
// counted.
// The breaker opens after `breaker_failures` consecutive site failures of
// the primary and keeps traffic on the backup for `breaker_open`; then one
// call probes the primary, its attempt limited to `probe_timeout`. Every
// outcome ends the probe: an answer closes the breaker, a site failure opens
// it again, a cancel or the caller's deadline lets the next call probe. A
// probe that has not reported `probe_timeout` + 1 s after it started is
// considered lost and the next call probes.
// A response naming an unknown serial triggers one key refresh (KeyRefresher)
// and one re-validation of the same raw response.
//
// Asynchronous: results arrive on the transport's thread; waiting between
// attempts holds no thread (HttpTransport::Schedule).
//
// Example:
//   client.GetAuthorization("oUpF8…", "1004", absl::Now() + absl::Seconds(2),
//       [](absl::StatusOr<AuthorizationResult> r) { ... });
#ifndef PALMGATE_SERVER_WECHATPAY_PALM_SERVICE_CLIENT_H_
#define PALMGATE_SERVER_WECHATPAY_PALM_SERVICE_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/common/swappable.h"
#include "server/wechatpay/credential.h"
#include "server/wechatpay/http_transport.h"
#include "server/wechatpay/key_refresher.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/response_validator.h"

namespace palmgate::wechatpay {

inline constexpr absl::string_view kProductionBaseUrl = "https://api.mch.weixin.qq.com";
inline constexpr absl::string_view kBackupBaseUrl = "https://api2.mch.weixin.qq.com";

using CallId = uint64_t;

class CallCoalescer;

// AuthorizationResult
//
// A verified answer to one query: `openid` is the one asked about and `state`
// is never empty (ParseAuthorizationBody). organization_id and the time are
// optional; absent strings are empty and an absent time is nullopt.
struct AuthorizationResult {
  std::string openid;
  std::string organization_id;
  std::string state;  // e.g. "AUTHORIZATION_STATE_ON"; [A-Z][A-Z0-9_]{0,63}, verbatim also when unknown
  std::optional<absl::Time> authorize_time;  // nullopt also outside years 1-9999 (google.protobuf.Timestamp)
  std::string authorize_time_raw;  // as sent (<= 64 bytes, printable ASCII), kept even when not RFC 3339
  std::string request_id;          // WeChat Pay's Request-ID when well-formed (ReadRequestId); not signed
  std::string request_id_dropped;  // for the log only: why a Request-ID header was not kept
  std::string verified_by;         // serial of the key that verified the signature
  absl::Duration clock_skew;       // Wechatpay-Timestamp minus local time
  int attempts = 1;                // upstream attempts made
  std::string host;                // base URL that answered
};

// Parses a verified 200 body and binds it to the query (wechatpay-v3.md
// section 1: every field is optional on paper, but an answer must say whom it
// is about to be an answer to this query). kInternal with
// kUpstreamMalformedResponse when the body is not a JSON object, its top-level
// object names a member twice (parsers disagree on which one counts), a field
// has the wrong type, `openid` is absent or not the one asked about, `state`
// is absent or not of a WeChat Pay enum value's form [A-Z][A-Z0-9_]{0,63},
// `organization_id` is present and not the one asked for, or `authorize_time`
// is over 64 bytes or not printable ASCII. Every string kept is thus bounded
// and valid UTF-8. An unknown state of that form is accepted and kept verbatim
// (states may be added; the service maps it to AUTHORIZATION_STATE_UNSPECIFIED).
absl::StatusOr<AuthorizationResult> ParseAuthorizationBody(absl::string_view body, absl::string_view openid,
                                                           absl::string_view organization_id);

// CredentialStore: the current signing credential, replaced atomically on key reload.
using CredentialStore = Swappable<Credential>;

class PalmServiceClient {
 public:
  struct Options {
    std::string base_url = std::string(kProductionBaseUrl);  // scheme://host[:port], no path
    // Failover target; empty: none.
    std::string backup_url;
    // Upper bound of one call (all attempts), whatever the caller's deadline.
    absl::Duration max_timeout = absl::Seconds(10);
    // Upper bound of one attempt, from when its transfer gets a connection; a timed-out attempt counts
    // against the host and is retried while budget remains. Under max_timeout, a hung primary fails over
    // within the call (the gateway makes it half of max_timeout when there is a backup).
    absl::Duration attempt_timeout = absl::Seconds(10);
    // Upper bound of a circuit breaker probe's attempt (see the file comment).
    absl::Duration probe_timeout = absl::Seconds(3);
    int max_attempts = 3;
    absl::Duration backoff_base = absl::Milliseconds(50);
    absl::Duration backoff_max = absl::Seconds(1);
    // Consecutive site-down failures of the primary that open the breaker.
    int breaker_failures = 3;
    absl::Duration breaker_open = absl::Seconds(30);
    ValidatorOptions validator;
    // Identical concurrent queries (same openid and organization_id) share one
    // upstream call; each caller keeps its own deadline and cancellation
    // (call_coalescer.h). Results are never cached.
    bool coalesce = false;
  };

  // Counters, for tests and metrics.
  struct Stats {
    int64_t calls = 0;
    int64_t attempts = 0;
    int64_t retries = 0;
    int64_t failovers = 0;        // attempts sent to the backup host
    int64_t key_refreshes = 0;    // unknown-serial refreshes requested
    int64_t coalesced = 0;        // calls answered by another caller's upstream call (Options::coalesce)
    bool breaker_open = false;
    absl::Duration last_clock_skew;  // from the last verified response
  };

  using Callback = absl::AnyInvocable<void(absl::StatusOr<AuthorizationResult>) &&>;

  // `transport`, `keys`, `clock` (and `refresher`, when set) must outlive the client.
  PalmServiceClient(Options options, std::shared_ptr<const Credential> credential, const KeyStore* keys,
                    HttpTransport* transport, const Clock& clock);
  ~PalmServiceClient();

  // Enables refresh-on-unknown-serial. Call before the first GetAuthorization.
  void SetKeyRefresher(KeyRefresher* refresher) { refresher_ = refresher; }

  // Replaces the signing credential (key reload); calls in flight finish with
  // the one they started with.
  void ReplaceCredential(std::shared_ptr<const Credential> credential) { credential_.Replace(std::move(credential)); }

  // Queries the authorization state of `openid` in `organization_id`.
  // All attempts end by min(deadline, now + max_timeout). `done` runs exactly
  // once: on the caller's thread, before this returns, for kInvalidArgument
  // (bad field), kDeadlineExceeded (deadline already past) and signing
  // failures — nothing is sent upstream then; otherwise on the transport's
  // thread. Returns an id for Cancel (0 when the call already finished).
  CallId GetAuthorization(absl::string_view openid, absl::string_view organization_id, absl::Time deadline,
                          Callback done);

  // Cancels a call (also while it waits between attempts); its callback runs
  // with kCancelled unless it already ran. With Options::coalesce, a shared
  // upstream call is cancelled only when none of its callers is left. A
  // cancelled call never counts against the upstream site.
  void Cancel(CallId id);

  Stats GetStats() const;
  const Options& options() const { return options_; }

 private:
  struct Call;
  class SharedUpstream;

  // What an attempt's outcome says about the primary site.
  enum class SiteVerdict {
    kUp,    // it answered (any HTTP status but 5xx)
    kDown,  // connection or TLS failure, 5xx, the gateway's own time limit ran out
    kNone,  // nothing: the caller cancelled or its deadline arrived
  };
  struct HostChoice {
    std::string host;
    uint64_t probe = 0;  // the breaker's probe number when this attempt is its probe, else 0
  };

  // The call itself, without coalescing. `deadline` is already capped.
  CallId StartCall(absl::string_view openid, absl::string_view organization_id, std::string target,
                   absl::Time deadline, Callback done);
  // Moves the deadline of a started call (later or earlier), within max_timeout from now.
  void SetDeadline(CallId id, absl::Time deadline);
  void CancelCall(CallId id);
  void StartAttempt(const std::shared_ptr<Call>& call);
  // Cancels attempt number `attempt` of `call` if the call's deadline has come; re-arms when it moved.
  void ArmDeadlineTimer(const std::shared_ptr<Call>& call, int attempt, absl::Time when);
  void OnDeadlineTimer(const std::shared_ptr<Call>& call, int attempt);
  void OnResponse(const std::shared_ptr<Call>& call, const HostChoice& host, absl::StatusOr<HttpResponse> response);
  void Verify(const std::shared_ptr<Call>& call, const std::string& host, HttpResponse response, bool after_refresh);
  // Retries when allowed; else finishes with `error`.
  void RetryOrFinish(const std::shared_ptr<Call>& call, const std::string& host, absl::Status error,
                     bool site_down, absl::Duration retry_after);
  void Finish(const std::shared_ptr<Call>& call, absl::StatusOr<AuthorizationResult> result);
  HostChoice PickHost(bool avoid_primary) ABSL_LOCKS_EXCLUDED(breaker_mu_);
  // Feeds the breaker what an attempt on the primary (probe number `probe`, or 0) showed.
  void RecordPrimary(SiteVerdict verdict, uint64_t probe) ABSL_LOCKS_EXCLUDED(breaker_mu_);
  void NoteSkew(absl::Duration skew, bool beyond_window);

  const Options options_;
  CredentialStore credential_;
  const KeyStore* const keys_;
  HttpTransport* const transport_;
  const Clock& clock_;
  KeyRefresher* refresher_ = nullptr;
  std::unique_ptr<SharedUpstream> shared_upstream_;  // set with Options::coalesce
  std::unique_ptr<CallCoalescer> coalescer_;

  absl::Mutex calls_mu_;
  std::map<CallId, std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(calls_mu_);
  CallId next_call_ ABSL_GUARDED_BY(calls_mu_) = 0;

  mutable absl::Mutex breaker_mu_;
  int primary_failures_ ABSL_GUARDED_BY(breaker_mu_) = 0;
  absl::Time open_until_ ABSL_GUARDED_BY(breaker_mu_) = absl::InfinitePast();
  bool probing_ ABSL_GUARDED_BY(breaker_mu_) = false;
  uint64_t probe_number_ ABSL_GUARDED_BY(breaker_mu_) = 0;  // of the current (or last) probe
  absl::Time probe_started_ ABSL_GUARDED_BY(breaker_mu_) = absl::InfinitePast();

  std::atomic<int64_t> stat_calls_{0};
  std::atomic<int64_t> stat_attempts_{0};
  std::atomic<int64_t> stat_retries_{0};
  std::atomic<int64_t> stat_failovers_{0};
  std::atomic<int64_t> stat_refreshes_{0};
  std::atomic<int64_t> last_skew_ms_{0};
  std::atomic<int64_t> last_skew_log_s_{0};
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_PALM_SERVICE_CLIENT_H_
