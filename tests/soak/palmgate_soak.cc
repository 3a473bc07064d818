// palmgate-soak: a long run of mixed traffic through the real `palmgate`
// binary against a real `palmgate-sandbox` that injects faults of every kind,
// while the sandbox rotates its platform certificate and the gateway reloads
// its keys. Run by scripts/soak (default 10 minutes) and by ctest as soak_60s.
//
// The truth is the sandbox's, never the gateway's: every user is seeded here
// (state, authorize_time, a persistent fault for some), unseeded users are
// AUTHORIZATION_STATE_NONE without authorize_time (sandbox/README.md), and the
// fault actually applied to each upstream attempt is read back from the
// sandbox's request log (/_sandbox/requests, polled often enough that no
// record is lost) by the Request-ID the gateway returns: in the answer
// (wechatpay_request_id) or in the error's google.rpc.ErrorInfo (requestId).
//
// Checks (any failure: exit 1, with samples):
//   - every OK answer equals the seeded truth, and the upstream answer it came
//     from was a clean one (no fault other than latency): no wrong answer, no
//     unverified answer;
//   - every failure has the code (and ErrorInfo reason) that the fault of its
//     last upstream attempt calls for; failures without an upstream answer
//     (dropped connection, oversized body, deadline, cancellation, invalid
//     request) are checked against what that request allowed;
//   - RSS and open file descriptors of the gateway after warm-up stay within
//     the limits below; the gateway keeps its pid for the whole run and exits 0
//     on SIGTERM;
//   - the rotation (add → activate → retire) and the key reload (SIGHUP) both
//     happened and answers were verified with the new certificate afterwards.
//
// Traffic: a dispatcher issues --rate RPCs per second with at most
// --concurrency in flight, each one of: a seeded user (10 s deadline), an
// unseeded user, a user with a persistent seed fault (one per fault kind), an
// invalid request, a short deadline (1-40 ms), or a call cancelled 0-30 ms in.
// On top, the sandbox faults --fault_rate of all other upstream requests,
// drawn uniformly from the same fault kinds (sandbox --fault_rate).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/http_test_client.h"
#include "tests/testing/sandbox_process.h"

ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "how long traffic runs");
ABSL_FLAG(double, rate, 100, "RPCs started per second");
ABSL_FLAG(int, concurrency, 32, "at most this many RPCs in flight");
ABSL_FLAG(int, users, 2000, "seeded users without a fault");
ABSL_FLAG(double, fault_rate, 0.1, "share of upstream requests the sandbox faults at random (every kind)");
ABSL_FLAG(double, warmup, 0.2, "share of the run before the RSS/fd baseline is taken");
ABSL_FLAG(absl::Duration, sample_interval, absl::Seconds(2), "RSS and fd sampling period");
ABSL_FLAG(double, rss_growth_limit_pct, 20, "fail if RSS grows by more than this % of the baseline ...");
ABSL_FLAG(int64_t, rss_growth_limit_mb, 10, "... plus this many MB after warm-up");
ABSL_FLAG(int, fd_growth_limit, 20, "fail if open fds grow by more than this after warm-up");
ABSL_FLAG(std::vector<std::string>, exclude_faults, {},
          "fault specs (from the table in this file) neither drawn at random nor seeded, e.g. drop");
ABSL_FLAG(std::string, gateway, PALMGATE_GATEWAY_BINARY, "palmgate binary");
ABSL_FLAG(std::string, json, "", "also write the summary as JSON to this file");
ABSL_FLAG(bool, keep_logs, false, "keep the gateway log (path printed) even when the run passes");

namespace palmgate::soak {
// GCC defines __SANITIZE_ADDRESS__; clang (scripts/test --asan builds with it) answers __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define PALMGATE_SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PALMGATE_SOAK_ASAN 1
#endif
#endif
#if defined(PALMGATE_SOAK_ASAN)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif

namespace {

using ::palmgate::testing::HttpFetch;
using ::palmgate::testing::ListeningProcess;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::SandboxProcess;
using ::palmgate::testing::SandboxProcessOptions;
using ::palmgate::testing::TestHttpRequest;
using SteadyClock = std::chrono::steady_clock;

constexpr char kAuthorizeTime[] = "2024-05-01T10:00:00+08:00";
constexpr int64_t kAuthorizeTimeUnix = 1714528800;  // kAuthorizeTime in seconds since the epoch
// A state this gateway version does not know: passed through raw, enum UNSPECIFIED.
constexpr char kFutureState[] = "AUTHORIZATION_STATE_SUSPENDED";

// What one fault, applied to the last upstream attempt of a call, turns into
// (tests/integration/wechatpay_sandbox_test.cc EveryFaultHasItsOwnErrorAndNeverSucceeds
// pins the same table at the library level). The sandbox is started with
// exactly these specs as --fault_kinds, so both sides agree.
struct FaultKind {
  const char* spec;
  grpc::StatusCode code;  // OK: the fault must not make the call fail
  const char* reason;     // ErrorInfo reason of the failure
};
constexpr FaultKind kFaultKinds[] = {
    {"latency=200", grpc::StatusCode::OK, ""},
    {"status=500", grpc::StatusCode::UNAVAILABLE, "UPSTREAM_UNAVAILABLE"},
    {"status=503", grpc::StatusCode::UNAVAILABLE, "UPSTREAM_UNAVAILABLE"},
    {"status=429", grpc::StatusCode::RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED"},
    {"status=400", grpc::StatusCode::INVALID_ARGUMENT, "UPSTREAM_PARAM_ERROR"},
    {"status=401", grpc::StatusCode::INTERNAL, "UPSTREAM_SIGNATURE_REJECTED"},
    {"status=403", grpc::StatusCode::PERMISSION_DENIED, "MERCHANT_NOT_AUTHORIZED"},
    {"status=404", grpc::StatusCode::NOT_FOUND, "UPSTREAM_NOT_FOUND"},
    {"drop", grpc::StatusCode::UNAVAILABLE, "UPSTREAM_UNAVAILABLE"},
    {"corrupt_signature", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_INVALID"},
    {"probe_signature", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_PROBE"},
    {"missing_signature_headers", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_MISSING"},
    {"missing_header=Wechatpay-Nonce", grpc::StatusCode::INTERNAL, "RESPONSE_SIGNATURE_MISSING"},
    {"skew_timestamp=600", grpc::StatusCode::INTERNAL, "RESPONSE_TIMESTAMP_SKEW"},
    {"unknown_serial", grpc::StatusCode::INTERNAL, "UNKNOWN_WECHATPAY_SERIAL"},
    {"malformed_json", grpc::StatusCode::INTERNAL, "UPSTREAM_MALFORMED_RESPONSE"},
    {"empty_body", grpc::StatusCode::INTERNAL, "UPSTREAM_MALFORMED_RESPONSE"},
    {"html_error", grpc::StatusCode::UNAVAILABLE, "UPSTREAM_UNAVAILABLE"},
    {"huge_body=1048576", grpc::StatusCode::INTERNAL, "UPSTREAM_RESPONSE_TOO_LARGE"},
};

bool Excluded(const FaultKind& k) {
  for (const std::string& e : absl::GetFlag(FLAGS_exclude_faults)) {
    if (e == k.spec) return true;
  }
  return false;
}

const FaultKind* FindFaultKind(const std::string& spec) {
  for (const FaultKind& k : kFaultKinds) {
    if (spec == k.spec) return &k;
  }
  return nullptr;
}

std::string CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                       "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : absl::StrCat("CODE_", i);
}

// ---------------------------------------------------------------------------
// Users and requests

struct User {
  std::string openid;
  std::string organization_id;
  std::string state;  // as seeded (what WeChat Pay would send)
  bool has_authorize_time = false;
  const FaultKind* fault = nullptr;  // persistent seed fault
};

palmgate::v1::AuthorizationState ExpectedEnum(const std::string& state) {
  if (state == "AUTHORIZATION_STATE_ON") return palmgate::v1::AUTHORIZATION_STATE_ON;
  if (state == "AUTHORIZATION_STATE_OFF") return palmgate::v1::AUTHORIZATION_STATE_OFF;
  if (state == "AUTHORIZATION_STATE_NONE") return palmgate::v1::AUTHORIZATION_STATE_NONE;
  return palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED;
}

struct Population {
  std::vector<User> clean;    // seeded, no fault
  std::vector<User> faulted;  // one per fault kind
};

Population MakePopulation(int n) {
  Population p;
  static const char* const kStates[] = {"AUTHORIZATION_STATE_ON", "AUTHORIZATION_STATE_OFF",
                                        "AUTHORIZATION_STATE_NONE"};
  for (int i = 0; i < n; ++i) {
    User u;
    u.openid = absl::StrFormat("oSoak%07d", i);
    u.organization_id = absl::StrCat(1000 + i % 5);
    u.state = i % 50 == 49 ? kFutureState : kStates[i % 3];
    u.has_authorize_time = u.state != "AUTHORIZATION_STATE_NONE";
    p.clean.push_back(std::move(u));
  }
  int i = 0;
  for (const FaultKind& k : kFaultKinds) {
    if (Excluded(k)) continue;
    User u;
    u.openid = absl::StrFormat("oSoakFault%02d", i++);
    u.organization_id = "1004";
    u.state = "AUTHORIZATION_STATE_ON";
    u.has_authorize_time = true;
    u.fault = &k;
    p.faulted.push_back(std::move(u));
  }
  return p;
}

std::string SeedJson(const Population& p) {
  nlohmann::json list = nlohmann::json::array();
  auto add = [&](const User& u) {
    nlohmann::json j = {{"openid", u.openid}, {"organization_id", u.organization_id}, {"state", u.state}};
    if (u.has_authorize_time) j["authorize_time"] = kAuthorizeTime;
    if (u.fault != nullptr) j["fault"] = u.fault->spec;
    list.push_back(std::move(j));
  };
  for (const User& u : p.clean) add(u);
  for (const User& u : p.faulted) add(u);
  return nlohmann::json{{"users", list}}.dump();
}

enum class Kind { kSeeded, kUnseeded, kFaultedUser, kInvalid, kShortDeadline, kCancelled };
const char* KindName(Kind k) {
  switch (k) {
    case Kind::kSeeded: return "seeded";
    case Kind::kUnseeded: return "unseeded";
    case Kind::kFaultedUser: return "faulted_user";
    case Kind::kInvalid: return "invalid";
    case Kind::kShortDeadline: return "short_deadline";
    case Kind::kCancelled: return "cancelled";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// The sandbox's request log, accumulated.

struct UpstreamRecord {
  std::string fault;
  int status = 0;
  std::string error_code;
  std::string sign_error_issue;
  std::string response_serial;
};

class SandboxLog {
 public:
  SandboxLog(std::string base_url, std::string ca) : base_url_(std::move(base_url)), ca_(std::move(ca)) {}

  // Fetches the last 1000 records and merges them. Returns false (and counts
  // a possible gap) when none of a full page had been seen before: records may
  // have been lost between two polls.
  bool Poll() {
    TestHttpRequest request;
    request.target = "/_sandbox/requests";
    auto r = HttpFetch(base_url_, request, ca_, absl::Seconds(10));
    if (!r.ok() || r->status != 200) {
      ++poll_errors_;
      return false;
    }
    nlohmann::json list = nlohmann::json::parse(r->body, nullptr, false);
    if (!list.is_array()) {
      ++poll_errors_;
      return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    size_t known = 0;
    for (const auto& rec : list) {
      const std::string id = rec.value("request_id", "");
      if (records_.count(id) != 0) {
        ++known;
        continue;
      }
      UpstreamRecord u;
      if (rec.contains("fault") && rec["fault"].is_string()) u.fault = rec["fault"].get<std::string>();
      u.status = rec.value("status", 0);
      u.error_code = rec.value("error_code", "");
      u.sign_error_issue = rec.value("sign_error_issue", "");
      u.response_serial = rec.value("response_serial", "");
      records_.emplace(id, std::move(u));
    }
    const bool gap = !records_.empty() && list.size() >= 1000 && known == 0 && polls_ > 0;
    ++polls_;
    if (gap) ++possible_gaps_;
    return !gap;
  }

  std::optional<UpstreamRecord> Find(const std::string& request_id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = records_.find(request_id);
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }
  int possible_gaps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return possible_gaps_;
  }
  int poll_errors() const { return poll_errors_.load(); }

 private:
  const std::string base_url_;
  const std::string ca_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, UpstreamRecord> records_;
  int polls_ = 0;
  int possible_gaps_ = 0;
  std::atomic<int> poll_errors_{0};
};

// ---------------------------------------------------------------------------
// Outcomes

struct Outcome {
  Kind kind;
  const User* user = nullptr;  // null for invalid requests
  std::string unseeded_openid;
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  std::string reason;
  std::string request_id;  // the answer's, or the error's ErrorInfo requestId
  palmgate::v1::Authorization answer;
  absl::Time finished;
};

// Parses google.rpc.ErrorInfo (reason, metadata requestId) out of a status.
void ReadErrorInfo(const grpc::Status& status, Outcome* out) {
  google::rpc::Status rich;
  if (status.error_details().empty() || !rich.ParseFromString(status.error_details())) return;
  for (const auto& detail : rich.details()) {
    google::rpc::ErrorInfo info;
    if (detail.Is<google::rpc::ErrorInfo>() && detail.UnpackTo(&info)) {
      out->reason = info.reason();
      auto it = info.metadata().find("requestId");
      if (it != info.metadata().end()) out->request_id = it->second;
    }
  }
}

// Returns "" when `answer` equals what the sandbox holds for the user, else what differs.
std::string CompareWithTruth(const palmgate::v1::Authorization& a, const std::string& openid,
                             const std::string& organization_id, const std::string& state, bool has_time) {
  std::vector<std::string> diffs;
  if (a.openid() != openid) diffs.push_back("openid");
  if (a.organization_id() != organization_id) diffs.push_back("organization_id");
  if (a.wechatpay_state() != state) diffs.push_back(absl::StrCat("wechatpay_state ", a.wechatpay_state()));
  if (a.state() != ExpectedEnum(state)) diffs.push_back(absl::StrCat("state ", a.state()));
  if (a.has_authorize_time() != has_time ||
      (has_time && (a.authorize_time().seconds() != kAuthorizeTimeUnix || a.authorize_time().nanos() != 0))) {
    diffs.push_back("authorize_time");
  }
  if (a.wechatpay_request_id().empty()) diffs.push_back("no wechatpay_request_id");
  return absl::StrJoin(diffs, ", ");
}

class Verdicts {
 public:
  void Fail(const std::string& category, const std::string& sample) {
    std::lock_guard<std::mutex> lock(mu_);
    ++failures_[category];
    auto& s = samples_[category];
    if (s.size() < 5) s.push_back(sample);
  }
  void Note(const std::string& counter, int64_t n = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    notes_[counter] += n;
  }
  int64_t note(const std::string& counter) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = notes_.find(counter);
    return it == notes_.end() ? 0 : it->second;
  }
  int64_t failures(const std::string& category) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = failures_.find(category);
    return it == failures_.end() ? 0 : it->second;
  }
  int64_t total_failures() const {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = 0;
    for (const auto& [k, v] : failures_) n += v;
    return n;
  }
  std::map<std::string, int64_t> failure_counts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }
  std::map<std::string, std::vector<std::string>> samples() const {
    std::lock_guard<std::mutex> lock(mu_);
    return samples_;
  }
  std::map<std::string, int64_t> notes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return notes_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int64_t> failures_;
  std::map<std::string, std::vector<std::string>> samples_;
  std::map<std::string, int64_t> notes_;
};

// Checks one outcome against the truth and the sandbox's record of its last
// upstream attempt. Runs after the traffic stopped and the log was read last.
void Judge(const Outcome& o, const SandboxLog& log, const std::string& new_serial, absl::Time activated,
           Verdicts* v) {
  const std::string what = absl::StrCat(KindName(o.kind), " ", o.user != nullptr ? o.user->openid : o.unseeded_openid,
                                        ": ", CodeName(o.code), " ", o.reason, " ", o.message);
  v->Note(absl::StrCat("code ", CodeName(o.code)));
  v->Note(absl::StrCat("kind ", KindName(o.kind)));
  std::optional<UpstreamRecord> rec;
  if (!o.request_id.empty()) rec = log.Find(o.request_id);

  if (o.kind == Kind::kInvalid) {
    if (o.code != grpc::StatusCode::INVALID_ARGUMENT) v->Fail("unexpected code", what);
    if (!o.request_id.empty()) v->Fail("invalid request reached WeChat Pay", what);
    return;
  }
  if (o.code == grpc::StatusCode::OK) {
    const User* u = o.user;
    const std::string diff = u != nullptr
                                 ? CompareWithTruth(o.answer, u->openid, u->organization_id, u->state,
                                                    u->has_authorize_time)
                                 : CompareWithTruth(o.answer, o.unseeded_openid, "1004", "AUTHORIZATION_STATE_NONE",
                                                    false);
    if (!diff.empty()) {
      v->Fail("wrong answer", absl::StrCat(what, " differs: ", diff));
      return;
    }
    if (!rec.has_value()) {
      v->Fail("answer not in the sandbox log", what + " id " + o.request_id);
      return;
    }
    // The upstream answer must have been a clean one: an OK built on a faulted
    // response (bad signature, unknown serial, ...) is an unverified answer.
    if (!rec->fault.empty() && !absl::StartsWith(rec->fault, "latency=")) {
      v->Fail("unverified answer", absl::StrCat(what, " from a response with fault ", rec->fault));
      return;
    }
    if (rec->status != 200) v->Fail("wrong answer", absl::StrCat(what, " from an HTTP ", rec->status));
    if (o.user != nullptr && o.user->fault != nullptr && o.user->fault->code != grpc::StatusCode::OK) {
      v->Fail("unverified answer", absl::StrCat(what, " despite seed fault ", o.user->fault->spec));
    }
    if (!new_serial.empty() && rec->response_serial == new_serial) v->Note("ok verified by the rotated certificate");
    if (o.finished > activated) v->Note("ok after the activation");
    return;
  }

  // Failures.
  if (o.kind == Kind::kCancelled && o.code == grpc::StatusCode::CANCELLED) return;
  if (o.kind == Kind::kShortDeadline && o.code == grpc::StatusCode::DEADLINE_EXCEEDED) return;
  if (rec.has_value()) {
    // An upstream answer came back: its fault decides the code.
    const FaultKind* k = FindFaultKind(rec->fault);
    if (rec->fault.empty() && absl::StrContains(rec->sign_error_issue, "already been used")) {
      // Known bug: libcurl re-sends a request, unchanged, when a reused
      // keep-alive connection closes before any answer (the `drop` fault);
      // WeChat Pay refuses the replayed nonce and the caller gets INTERNAL
      // where the drop calls for UNAVAILABLE. Counted on its own line.
      v->Fail("replayed request after a dropped connection (INTERNAL instead of UNAVAILABLE)", what);
      return;
    }
    if (rec->fault.empty()) {
      std::string why = absl::StrCat("from a clean upstream answer (HTTP ", rec->status, " ", rec->error_code, ")");
      if (!rec->sign_error_issue.empty()) absl::StrAppend(&why, " sign error: ", rec->sign_error_issue);
      v->Fail("unexpected code", absl::StrCat(what, " ", why));
      return;
    }
    if (k == nullptr) {
      v->Fail("unexpected code", absl::StrCat(what, " from unknown fault ", rec->fault));
      return;
    }
    if (k->code != o.code || k->reason != o.reason) {
      v->Fail("unexpected code", absl::StrCat(what, " for fault ", k->spec, " (want ", CodeName(k->code), " ",
                                              k->reason, ")"));
      return;
    }
    if (o.user != nullptr && o.user->fault != nullptr && o.user->fault != k) {
      v->Fail("unexpected code", absl::StrCat(what, " but the seed fault is ", o.user->fault->spec));
    }
    v->Note(absl::StrCat("failure explained by fault ", k->spec));
    return;
  }
  if (!o.request_id.empty()) {
    v->Fail("unexpected code", absl::StrCat(what, " request id ", o.request_id, " not in the sandbox log"));
    return;
  }
  // No upstream answer: a dropped connection or an oversized body (the body
  // is refused before the Request-ID is kept), or the caller's own deadline.
  const bool dropped = o.code == grpc::StatusCode::UNAVAILABLE && o.reason == "UPSTREAM_UNAVAILABLE";
  const bool too_large = o.code == grpc::StatusCode::INTERNAL && o.reason == "UPSTREAM_RESPONSE_TOO_LARGE";
  if (o.user != nullptr && o.user->fault != nullptr) {
    const bool want_drop = std::string(o.user->fault->spec) == "drop";
    const bool want_large = absl::StartsWith(o.user->fault->spec, "huge_body=");
    if ((dropped && want_drop) || (too_large && want_large)) return;
    v->Fail("unexpected code", absl::StrCat(what, " (want ", CodeName(o.user->fault->code), " ",
                                            o.user->fault->reason, ")"));
    return;
  }
  if (dropped || too_large) {
    v->Note(dropped ? "failure without answer: dropped" : "failure without answer: too large");
    return;
  }
  v->Fail("unexpected code", what + " without an upstream answer");
}

// ---------------------------------------------------------------------------
// /proc

struct ProcSample {
  double t_s = 0;  // since the start of traffic
  int64_t rss_kb = -1;
  int fds = -1;
  char state = '?';
};

ProcSample ReadProc(pid_t pid) {
  ProcSample s;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::stoll(line.substr(6));
    if (line.rfind("State:", 0) == 0 && line.size() > 7) s.state = line[line.find_first_not_of(" \t", 6)];
  }
  std::error_code ec;
  int n = 0;
  for (std::filesystem::directory_iterator it(absl::StrCat("/proc/", pid, "/fd"), ec), end; !ec && it != end;
       it.increment(ec)) {
    ++n;
  }
  if (!ec) s.fds = n;
  return s;
}

bool Alive(pid_t pid) {
  ProcSample s = ReadProc(pid);
  return s.rss_kb >= 0 && s.state != 'Z' && s.state != 'X';
}

// ---------------------------------------------------------------------------
// Traffic

class Traffic {
 public:
  Traffic(const std::string& address, const Population* population) : population_(population) {
    for (int i = 0; i < 4; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("palmgate.soak.channel", i);  // distinct args: one connection per channel
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      channels_.push_back(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
      stubs_.push_back(palmgate::v1::PalmAuthorization::NewStub(channels_.back()));
    }
    canceller_ = std::thread([this] { CancelLoop(); });
  }
  ~Traffic() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    canceller_.join();
  }

  // Issues RPCs at `rate` per second, at most `concurrency` in flight, until `until`.
  void Run(double rate, int concurrency, SteadyClock::time_point until) {
    const auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate));
    auto next = SteadyClock::now();
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return in_flight_ < concurrency; });
      }
      next += interval;
      // Ends on time even when the gateway falls behind (the concurrency cap then holds the schedule back).
      if (next > until || SteadyClock::now() > until) break;
      // Pacing, not synchronisation: the open-loop schedule of the next start.
      std::this_thread::sleep_until(next);
      Issue();
    }
  }

  // Waits for every RPC in flight and returns all outcomes.
  std::vector<Outcome> Finish() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
    return std::move(outcomes_);
  }

  int64_t started() const { return started_.load(); }
  int64_t completed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(outcomes_.size());
  }

  void ResetChannels() {
    stubs_.clear();
    channels_.clear();
  }

 private:
  struct Call {
    grpc::ClientContext context;
    palmgate::v1::GetAuthorizationRequest request;
    palmgate::v1::Authorization response;
    Outcome outcome;
  };

  Kind PickKind(std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    if (u < 0.70) return Kind::kSeeded;
    if (u < 0.75) return Kind::kUnseeded;
    if (u < 0.81) return Kind::kFaultedUser;
    if (u < 0.85) return Kind::kInvalid;
    if (u < 0.93) return Kind::kShortDeadline;
    return Kind::kCancelled;
  }

  void Issue() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    auto call = std::make_shared<Call>();
    Outcome& o = call->outcome;
    o.kind = PickKind(rng);
    auto pick = [&](const std::vector<User>& users) {
      return &users[std::uniform_int_distribution<size_t>(0, users.size() - 1)(rng)];
    };
    absl::Duration deadline = absl::Seconds(10);
    switch (o.kind) {
      case Kind::kSeeded:
      case Kind::kCancelled:
        o.user = pick(population_->clean);
        break;
      case Kind::kShortDeadline:
        o.user = pick(population_->clean);
        deadline = absl::Milliseconds(std::uniform_int_distribution<int>(1, 40)(rng));
        break;
      case Kind::kFaultedUser:
        o.user = pick(population_->faulted);
        break;
      case Kind::kUnseeded:
        o.unseeded_openid = absl::StrFormat("oSoakNobody%08d", std::uniform_int_distribution<int>(0, 99999999)(rng));
        call->request.set_openid(o.unseeded_openid);
        call->request.set_organization_id("1004");
        break;
      case Kind::kInvalid: {
        static const std::pair<std::string, std::string> kInvalid[] = {
            {"", "1004"}, {std::string(129, 'o'), "1004"}, {"oSoak0000001", ""},
            {"oSoak0000001", std::string(65, '1')}, {"..", "1004"}};
        const auto& bad = kInvalid[std::uniform_int_distribution<size_t>(0, std::size(kInvalid) - 1)(rng)];
        call->request.set_openid(bad.first);
        call->request.set_organization_id(bad.second);
        break;
      }
    }
    if (o.user != nullptr) {
      call->request.set_openid(o.user->openid);
      call->request.set_organization_id(o.user->organization_id);
    }
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
    }
    const size_t stub = static_cast<size_t>(started_.fetch_add(1)) % stubs_.size();
    stubs_[stub]->async()->GetAuthorization(&call->context, &call->request, &call->response,
                                            [this, call](grpc::Status status) { Done(call, status); });
    if (o.kind == Kind::kCancelled) {
      const auto at = SteadyClock::now() + std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 30)(rng));
      std::lock_guard<std::mutex> lock(mu_);
      cancels_.push({at, call});
      cv_.notify_all();
    }
  }

  void Done(const std::shared_ptr<Call>& call, const grpc::Status& status) {
    Outcome& o = call->outcome;
    o.code = status.error_code();
    o.finished = absl::Now();
    if (status.ok()) {
      o.answer = call->response;
      o.request_id = call->response.wechatpay_request_id();
    } else {
      o.message = status.error_message().substr(0, 200);
      ReadErrorInfo(status, &o);
    }
    std::lock_guard<std::mutex> lock(mu_);
    outcomes_.push_back(std::move(o));
    --in_flight_;
    cv_.notify_all();
  }

  // Cancels calls at their chosen moment (a call already finished ignores it).
  void CancelLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      if (cancels_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const auto at = cancels_.top().first;
      if (SteadyClock::now() < at) {
        cv_.wait_until(lock, at);
        continue;
      }
      std::shared_ptr<Call> call = cancels_.top().second;
      cancels_.pop();
      lock.unlock();
      call->context.TryCancel();
      lock.lock();
    }
  }

  const Population* const population_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<palmgate::v1::PalmAuthorization::Stub>> stubs_;
  std::atomic<int64_t> started_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  bool stopping_ = false;
  std::vector<Outcome> outcomes_;
  using Pending = std::pair<SteadyClock::time_point, std::shared_ptr<Call>>;
  struct Later {
    bool operator()(const Pending& a, const Pending& b) const { return a.first > b.first; }
  };
  std::priority_queue<Pending, std::vector<Pending>, Later> cancels_;
  std::thread canceller_;
};

// ---------------------------------------------------------------------------
// The run

int Setup(const std::string& what) {
  std::cerr << "soak: setup failed: " << what << std::endl;
  return 2;
}

// Sends an admin POST to the sandbox; returns its JSON answer or null.
nlohmann::json Admin(const SandboxProcess& sandbox, const std::string& target) {
  TestHttpRequest request;
  request.method = "POST";
  request.target = target;
  auto r = HttpFetch(sandbox.base_url(), request, sandbox.ca_cert_path());
  if (!r.ok() || r->status != 200) {
    std::cerr << "soak: " << target << ": " << (r.ok() ? r->body : std::string(r.status().message())) << std::endl;
    return nullptr;
  }
  return nlohmann::json::parse(r->body, nullptr, false);
}

// Polls the gateway log (bounded) for a line containing `text`.
bool WaitForLog(const std::string& path, const std::string& text, absl::Duration within) {
  const absl::Time until = absl::Now() + within;
  while (absl::Now() < until) {
    if (absl::StrContains(ReadFile(path, 1 << 30).value_or(""), text)) return true;
    absl::SleepFor(absl::Milliseconds(100));  // polling a condition with a deadline
  }
  return false;
}

int Run() {
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const double rate = absl::GetFlag(FLAGS_rate);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const double fault_rate = absl::GetFlag(FLAGS_fault_rate);
  if (duration < absl::Seconds(20) || rate <= 0 || concurrency <= 0 || absl::GetFlag(FLAGS_users) < 10) {
    return Setup("--duration >= 20s, --rate > 0, --concurrency > 0 and --users >= 10 are required");
  }
  const Population population = MakePopulation(absl::GetFlag(FLAGS_users));

  // The sandbox: HTTPS, faults of every kind at --fault_rate, plus seed faults.
  std::vector<std::string> kinds;
  for (const FaultKind& k : kFaultKinds) {
    if (!Excluded(k)) kinds.push_back(k.spec);
  }
  for (const std::string& e : absl::GetFlag(FLAGS_exclude_faults)) {
    if (FindFaultKind(e) == nullptr) return Setup("--exclude_faults: unknown fault " + e);
  }
  if (kinds.empty()) return Setup("--exclude_faults: nothing left to inject");
  SandboxProcessOptions sandbox_options;
  sandbox_options.tls = true;
  sandbox_options.faults = true;
  sandbox_options.seed_json = SeedJson(population);
  sandbox_options.threads = 2;
  sandbox_options.extra_flags = {absl::StrCat("--fault_rate=", fault_rate),
                                 absl::StrCat("--fault_kinds=", absl::StrJoin(kinds, ","))};
  auto sandbox = SandboxProcess::Start(sandbox_options);
  if (!sandbox.ok()) return Setup(std::string(sandbox.status().message()));
  auto merchant = SandboxMerchant::Load((*sandbox)->keys_dir());
  if (!merchant.ok()) return Setup(std::string(merchant.status().message()));

  // The gateway: platform-certificate mode (downloaded with the APIv3 key, so
  // that rotation is exercised; no WeChat Pay public key), the merchant key
  // in a file of its own that the key reload rewrites.
  auto dir = testing::MakeTempDir("palmgate-soak");
  if (!dir.ok()) return Setup(std::string(dir.status().message()));
  const std::string key_path = *dir + "/apiclient_key.pem";
  const std::string log_path = *dir + "/palmgate.log";
  auto key_pem = ReadFile((*sandbox)->keys_dir() + "/apiclient_key.pem");
  if (!key_pem.ok() || !WriteFile(key_path, *key_pem, 0600).ok()) return Setup("cannot copy the merchant key");
  const std::vector<std::string> args = {
      absl::GetFlag(FLAGS_gateway),
      "--merchant_private_key=" + key_path,
      "--wechatpay_public_key=",
      "--wechatpay_public_key_id=",
      "--platform_certificates=",
      "--apiv3_key_file=" + (*sandbox)->keys_dir() + "/apiv3_key.txt",
      // Every unknown serial may refresh at once: the sandbox's unknown_serial
      // fault would otherwise use up the 30 s production budget right before an
      // activation and fail the calls that follow it. (Production: WeChat Pay
      // lists a new certificate long before it signs with it.)
      "--certificate_refresh_min_interval=0s",
      "--key_reload_interval=0",  // reload on SIGHUP only: the one reload is ours
      "--log_level=info",
  };
  auto gateway = ListeningProcess::Start(args, absl::Seconds(60), log_path,
                                         testing::GatewayEnvironmentFor(**sandbox, *merchant));
  if (!gateway.ok()) return Setup(absl::StrCat(gateway.status().message(), " (log: ", log_path, ")"));
  const pid_t pid = (*gateway)->pid();
  std::cerr << "soak: gateway pid " << pid << " at " << (*gateway)->address() << ", sandbox "
            << (*sandbox)->base_url() << ", " << absl::FormatDuration(duration) << " at " << rate << " rpc/s, "
            << concurrency << " in flight, fault rate " << fault_rate << std::endl;

  Verdicts verdicts;
  SandboxLog log((*sandbox)->base_url(), (*sandbox)->ca_cert_path());
  Traffic traffic((*gateway)->address(), &population);
  const auto t0 = SteadyClock::now();
  const auto until = t0 + absl::ToChronoNanoseconds(duration);
  const auto at = [&](double fraction) { return t0 + absl::ToChronoNanoseconds(duration * fraction); };
  auto seconds_since_start = [&] {
    return std::chrono::duration<double>(SteadyClock::now() - t0).count();
  };

  std::atomic<bool> stop{false};
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  // Waits until `when` or the end of the run; returns false at the end.
  auto wait_until = [&](SteadyClock::time_point when) {
    std::unique_lock<std::mutex> lock(stop_mu);
    return !stop_cv.wait_until(lock, when, [&] { return stop.load(); });
  };

  // The sandbox log, every 250 ms (1000 records: room for 4000 upstream requests per second).
  std::thread log_poller([&] {
    while (wait_until(SteadyClock::now() + std::chrono::milliseconds(250))) log.Poll();
  });

  // RSS and fds of the gateway.
  std::vector<ProcSample> samples;
  std::mutex samples_mu;
  std::atomic<bool> died{false};
  std::thread sampler([&] {
    const auto period = absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_sample_interval));
    auto next = SteadyClock::now();
    do {
      ProcSample s = ReadProc(pid);
      s.t_s = seconds_since_start();
      if (s.rss_kb < 0 || s.state == 'Z' || s.state == 'X') died = true;
      std::lock_guard<std::mutex> lock(samples_mu);
      samples.push_back(s);
      next += period;
    } while (wait_until(next));
  });

  // Rotation (add at 30 %, activate at 40 %, retire the original at 55 %) and
  // the key reload at 70 % of the run.
  std::string new_serial;
  absl::Time activated = absl::InfiniteFuture();
  std::vector<std::string> event_errors;
  std::vector<std::string> events;
  std::thread operator_thread([&] {
    auto event = [&](const std::string& e) {
      events.push_back(absl::StrFormat("%.1fs %s", seconds_since_start(), e));
      std::cerr << "soak: " << events.back() << std::endl;
    };
    if (!wait_until(at(0.30))) return;
    nlohmann::json added = Admin(**sandbox, "/_sandbox/certificates/add");
    if (added.is_object()) new_serial = added.value("serial_no", "");
    if (new_serial.empty()) {
      event_errors.push_back("certificate add failed");
      return;
    }
    event("certificate added " + new_serial);
    if (!wait_until(at(0.40))) return;
    if (Admin(**sandbox, "/_sandbox/certificates/activate?serial_no=" + new_serial).is_null()) {
      event_errors.push_back("certificate activate failed");
      return;
    }
    activated = absl::Now();
    event("certificate activated");
    if (!wait_until(at(0.55))) return;
    if (Admin(**sandbox, "/_sandbox/certificates/retire?serial_no=" + merchant->platform_serial()).is_null()) {
      event_errors.push_back("certificate retire failed");
      return;
    }
    event("original certificate retired");
    if (!wait_until(at(0.70))) return;
    // As an operator (or a Kubernetes secret update) does: a new file renamed
    // over the old one, then SIGHUP. Same key: the sandbox knows only this one.
    const std::string tmp = key_path + ".new";
    if (!WriteFile(tmp, *key_pem, 0600).ok() || std::rename(tmp.c_str(), key_path.c_str()) != 0) {
      event_errors.push_back("cannot rewrite the key file");
      return;
    }
    (*gateway)->Signal(SIGHUP);
    if (!WaitForLog(log_path, "keys reloaded", absl::Seconds(30))) {
      event_errors.push_back("no \"keys reloaded\" in the gateway log within 30 s after SIGHUP");
      return;
    }
    event("keys reloaded (SIGHUP)");
  });

  traffic.Run(rate, concurrency, until);
  const double traffic_s = seconds_since_start();
  std::vector<Outcome> outcomes = traffic.Finish();
  {
    std::lock_guard<std::mutex> lock(stop_mu);
    stop = true;
  }
  stop_cv.notify_all();
  operator_thread.join();
  sampler.join();
  log_poller.join();
  log.Poll();  // the last records
  const ProcSample drained = ReadProc(pid);
  const bool alive_at_end = Alive(pid) && !died;

  for (const Outcome& o : outcomes) Judge(o, log, new_serial, activated, &verdicts);
  if (log.possible_gaps() > 0) verdicts.Fail("sandbox log gap", absl::StrCat(log.possible_gaps(), " polls"));
  for (const std::string& e : event_errors) verdicts.Fail("rotation/reload", e);
  if (new_serial.empty() || verdicts.note("ok verified by the rotated certificate") == 0) {
    verdicts.Fail("rotation/reload", "no answer was verified with the rotated certificate");
  }

  // Resources after warm-up. The baseline is the first sample after
  // --warmup of the run (connection pools, allocator arenas and gRPC's
  // per-thread caches fill during warm-up); the end is the last sample
  // taken while traffic ran. Allowed: RSS growth up to
  // --rss_growth_limit_pct of the baseline plus --rss_growth_limit_mb
  // (allocator fragmentation and glibc arena trimming move RSS by a few MB
  // without any leak; a leak of even 100 bytes per RPC at 100 rpc/s shows as
  // 6 MB per 10 minutes on top and grows with the run), fds up to
  // --fd_growth_limit (upstream connections come and go with faults and idle
  // timeouts; a leak of one fd per dropped connection would pass it within
  // the first minute of faults).
  // The sampler has stopped: `samples` is no longer written.
  const std::vector<ProcSample>& taken = samples;
  const double warmup_s = absl::ToDoubleSeconds(duration) * absl::GetFlag(FLAGS_warmup);
  const ProcSample* base = nullptr;
  const ProcSample* last = nullptr;
  int64_t max_rss = 0;
  int max_fds = 0;
  for (const ProcSample& s : taken) {
    if (s.t_s < warmup_s || s.t_s > traffic_s || s.rss_kb < 0) continue;
    if (base == nullptr) base = &s;
    last = &s;
    max_rss = std::max(max_rss, s.rss_kb);
    max_fds = std::max(max_fds, s.fds);
  }
  int64_t rss_growth_kb = 0;
  int fd_growth = 0;
  if (base == nullptr || last == nullptr || base == last) {
    verdicts.Fail("resources", "too few samples after warm-up");
  } else {
    rss_growth_kb = last->rss_kb - base->rss_kb;
    fd_growth = last->fds - base->fds;
    const double rss_limit_kb = static_cast<double>(base->rss_kb) * absl::GetFlag(FLAGS_rss_growth_limit_pct) / 100 +
                                static_cast<double>(absl::GetFlag(FLAGS_rss_growth_limit_mb)) * 1024;
    // Under AddressSanitizer (this driver and the gateway are built alike) freed
    // memory sits in ASan's quarantine (256 MB by default), so RSS grows by
    // design; leaks are LeakSanitizer's job in that build (scripts/test --asan).
    if (kAddressSanitizer) {
      std::cout << "soak: ASan build: RSS growth reported, not judged" << std::endl;
    } else if (static_cast<double>(rss_growth_kb) > rss_limit_kb) {
      verdicts.Fail("resources", absl::StrFormat("RSS grew by %d KB after warm-up (limit %.0f KB)", rss_growth_kb,
                                                 rss_limit_kb));
    }
    if (fd_growth > absl::GetFlag(FLAGS_fd_growth_limit)) {
      verdicts.Fail("resources", absl::StrFormat("open fds grew by %d after warm-up (limit %d)", fd_growth,
                                                 absl::GetFlag(FLAGS_fd_growth_limit)));
    }
  }

  // The sandbox's own counts.
  nlohmann::json stats;
  {
    TestHttpRequest request;
    request.target = "/_sandbox/stats";
    auto r = HttpFetch((*sandbox)->base_url(), request, (*sandbox)->ca_cert_path());
    if (r.ok()) stats = nlohmann::json::parse(r->body, nullptr, false);
  }

  // The process: same pid all along, then a clean exit on SIGTERM.
  traffic.ResetChannels();  // an idle client channel would see the GOAWAY only on its 5 s poll
  if (!alive_at_end) verdicts.Fail("gateway process", "the gateway exited during the run");
  if ((*gateway)->pid() != pid) verdicts.Fail("gateway process", "the gateway pid changed");
  auto exit_code = (*gateway)->Stop();
  if (!exit_code.ok() || *exit_code != 0) {
    verdicts.Fail("gateway process", absl::StrCat("SIGTERM exit: ", exit_code.ok() ? absl::StrCat(*exit_code)
                                                                                    : std::string(exit_code.status().message())));
  }

  // Summary.
  const int64_t ok = verdicts.note("code OK");
  const auto notes = verdicts.notes();
  const auto failures = verdicts.failure_counts();
  const int64_t wrong = verdicts.failures("wrong answer") + verdicts.failures("unverified answer");
  std::printf("soak: duration %.0f s, requests %zu (%.1f/s), OK %lld, failed %lld\n", traffic_s, outcomes.size(),
              static_cast<double>(outcomes.size()) / traffic_s, static_cast<long long>(ok),
              static_cast<long long>(outcomes.size()) - static_cast<long long>(ok));
  std::printf("soak: by code:");
  for (const auto& [k, n] : notes) {
    if (absl::StartsWith(k, "code ")) std::printf(" %s %lld", k.substr(5).c_str(), static_cast<long long>(n));
  }
  std::printf("\nsoak: by request kind:");
  for (const auto& [k, n] : notes) {
    if (absl::StartsWith(k, "kind ")) std::printf(" %s %lld", k.substr(5).c_str(), static_cast<long long>(n));
  }
  std::printf("\n");
  if (stats.is_object()) {
    std::printf("soak: sandbox: upstream requests %lld, faults injected %lld, dropped %lld\n",
                static_cast<long long>(stats.value("requests_total", 0LL)),
                static_cast<long long>(stats.value("faults_injected", 0LL)),
                static_cast<long long>(stats.value("dropped", 0LL)));
    std::printf("soak: faults by kind:");
    if (stats.contains("faults_by_spec")) {
      for (const auto& [spec, n] : stats["faults_by_spec"].items()) {
        std::printf(" %s %lld", spec.c_str(), static_cast<long long>(n.get<int64_t>()));
      }
    }
    std::printf("\n");
  }
  for (const auto& [k, n] : notes) {
    if (absl::StartsWith(k, "failure ") || absl::StartsWith(k, "ok ")) {
      std::printf("soak:   %s: %lld\n", k.c_str(), static_cast<long long>(n));
    }
  }
  for (const std::string& e : events) std::printf("soak: event at %s\n", e.c_str());
  if (base != nullptr && last != nullptr) {
    std::printf("soak: RSS after warm-up %lld KB -> %lld KB (growth %+lld KB, max %lld KB; after drain %lld KB)\n",
                static_cast<long long>(base->rss_kb), static_cast<long long>(last->rss_kb),
                static_cast<long long>(rss_growth_kb), static_cast<long long>(max_rss),
                static_cast<long long>(drained.rss_kb));
    std::printf("soak: open fds after warm-up %d -> %d (growth %+d, max %d; after drain %d)\n", base->fds, last->fds,
                fd_growth, max_fds, drained.fds);
  }
  std::printf("soak: gateway pid %d kept, exit on SIGTERM %s\n", pid,
              exit_code.ok() ? absl::StrCat(*exit_code).c_str() : "error");
  std::printf("soak: wrong or unverified answers %lld, unexpected codes %lld\n", static_cast<long long>(wrong),
              static_cast<long long>(verdicts.failures("unexpected code")));
  const auto samples_by_category = verdicts.samples();
  for (const auto& [category, n] : failures) {
    std::printf("soak: FAIL %s: %lld\n", category.c_str(), static_cast<long long>(n));
    for (const std::string& s : samples_by_category.at(category)) std::printf("soak:   e.g. %s\n", s.c_str());
  }

  if (const std::string json_path = absl::GetFlag(FLAGS_json); !json_path.empty()) {
    nlohmann::json j = {{"duration_s", traffic_s},
                        {"rate", rate},
                        {"concurrency", concurrency},
                        {"fault_rate", fault_rate},
                        {"requests", outcomes.size()},
                        {"ok", ok},
                        {"notes", notes},
                        {"failures", failures},
                        {"wrong_answers", wrong},
                        {"sandbox_stats", stats},
                        {"events", events},
                        {"rss_kb", {{"baseline", base ? base->rss_kb : -1}, {"end", last ? last->rss_kb : -1},
                                    {"growth", rss_growth_kb}, {"max", max_rss}, {"after_drain", drained.rss_kb}}},
                        {"fds", {{"baseline", base ? base->fds : -1}, {"end", last ? last->fds : -1},
                                 {"growth", fd_growth}, {"max", max_fds}, {"after_drain", drained.fds}}},
                        {"samples", nlohmann::json::array()}};
    for (const ProcSample& s : taken) j["samples"].push_back({s.t_s, s.rss_kb, s.fds});
    if (!WriteFile(json_path, j.dump(1), 0644).ok()) std::cerr << "soak: cannot write " << json_path << std::endl;
  }

  const bool passed = verdicts.total_failures() == 0;
  if (passed && !absl::GetFlag(FLAGS_keep_logs)) {
    std::error_code ec;
    std::filesystem::remove_all(*dir, ec);
  } else {
    std::printf("soak: gateway log kept in %s\n", log_path.c_str());
  }
  std::printf("soak: %s\n", passed ? "PASS" : "FAIL");
  return passed ? 0 : 1;
}

}  // namespace
}  // namespace palmgate::soak

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  return palmgate::soak::Run();
}
