// File: sandbox/handler.h
//
// The sandbox's request handling, independent of any HTTP library: a parsed
// request in, a response plan (status, headers, body, extra delay, or "drop
// the connection") out. server.h feeds it from Beast; tests call it directly.
//
// Endpoints (see sandbox/README.md for the full contract):
//   GET  /v3/palmservice/authorization/openid/{openid}?organization_id=…
//   GET  /v3/certificates[?algorithm_type=RSA]
//   GET  /_sandbox/stats, GET /_sandbox/requests, POST /_sandbox/reset
//   GET  /_sandbox/certificates, POST /_sandbox/certificates/{add,activate,retire}
//        (platform certificate rotation, see sandbox/README.md)
// /_sandbox/* answers loopback peers only (403 FORBIDDEN to others) unless
// HandlerOptions::admin_from_any.
// Checks for /v3 endpoints, in order: Accept and User-Agent present (400
// INVALID_REQUEST); Authorization signature (401 SIGN_ERROR); request
// Wechatpay-Serial (400 INVALID_REQUEST); fault spec (400
// SANDBOX_FAULT_INVALID); path and query (400 PARAM_ERROR); then the answer,
// with fault injection applied last. 2xx answers are signed; errors are not.
//
// Thread safety: Handle() is thread-safe; a Handler is shared by all I/O threads.
#ifndef PALMGATE_SANDBOX_HANDLER_H_
#define PALMGATE_SANDBOX_HANDLER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sandbox/fault.h"
#include "sandbox/keygen.h"
#include "sandbox/request_log.h"
#include "sandbox/request_verifier.h"
#include "sandbox/response_signer.h"
#include "sandbox/store.h"
#include "server/common/clock.h"

namespace palmgate::sandbox {

inline constexpr absl::string_view kPalmPathPrefix = "/v3/palmservice/authorization/openid/";
inline constexpr size_t kMaxOpenidBytes = 128;
inline constexpr size_t kMaxOrganizationIdBytes = 64;

// ShiftedClock
//
// `base` shifted by a fixed offset (--clock_offset_s). Thread-safe.
class ShiftedClock final : public Clock {
 public:
  ShiftedClock(const Clock* base, absl::Duration offset) : base_(base), offset_(offset) {}
  absl::Time Now() const override { return base_->Now() + offset_; }

 private:
  const Clock* const base_;
  const absl::Duration offset_;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

struct SandboxRequest {
  std::string method;  // upper case as received
  std::string target;  // raw request-target
  std::vector<HttpHeader> headers;
  std::string body;
  // The peer's address is loopback (127.0.0.0/8, ::1, ::ffff:127.x; see
  // server/common/net_util.h). Admin endpoints answer only such peers unless
  // HandlerOptions::admin_from_any.
  bool from_loopback = false;
};

struct SandboxResponse {
  int status = 200;
  std::vector<HttpHeader> headers;  // includes Content-Type
  std::string body;
  bool drop = false;      // close the connection without answering
  int64_t delay_ms = 0;   // wait this long (asio timer) before answering
};

struct HandlerOptions {
  bool faults_enabled = false;
  // With faults_enabled: the share (0..1) of palm-authorization requests that
  // carry neither an X-Sandbox-Fault header nor a seed fault and get one fault
  // drawn uniformly from `random_faults` (DefaultRandomFaultSpecs() when empty).
  // /v3/certificates is never faulted at random.
  double fault_rate = 0;
  std::vector<std::string> random_faults;
  bool public_key_only = false;
  int64_t latency_ms = 0;
  absl::Duration signature_cache_ttl = absl::ZeroDuration();
  int64_t timestamp_window_s = 300;
  // Answer /_sandbox/* (log, reset, certificate rotation) from any peer; by
  // default a peer that is not loopback gets 403 FORBIDDEN there.
  bool admin_from_any = false;
};

class Handler {
 public:
  // `clock` is the sandbox clock (already shifted) and must outlive the handler.
  // kInvalidArgument for a fault_rate outside 0..1, a fault_rate without
  // faults_enabled, or a random fault spec that does not parse.
  static absl::StatusOr<std::unique_ptr<Handler>> Create(SandboxKeys keys, UserStore users,
                                                         HandlerOptions options, const Clock* clock);

  SandboxResponse Handle(const SandboxRequest& request);

  RequestLog& log() { return log_; }
  const SandboxKeys& keys() const { return keys_; }

 private:
  Handler(SandboxKeys keys, UserStore users, HandlerOptions options, const Clock* clock,
          std::optional<SigningKey> stranger_key, std::vector<FaultPlan> random_faults);

  // A fault drawn for one request under options_.fault_rate, or nullopt.
  std::optional<FaultPlan> DrawRandomFault() const;

  struct Context;  // per-request state, defined in handler.cc
  // One platform certificate with its private key; `listed` until retired.
  struct PlatformEntry {
    crypto::Certificate cert;
    SigningKey signing_key;
    bool listed = true;
  };
  SandboxResponse HandleCertificatesAdmin(const SandboxRequest& request, absl::string_view path);
  SandboxResponse HandleAdmin(const SandboxRequest& request, absl::string_view path, Context& ctx);
  SandboxResponse HandleApi(const SandboxRequest& request, Context& ctx);
  std::string NextRequestId();

  const SandboxKeys keys_;
  const UserStore users_;
  const HandlerOptions options_;
  const Clock* const clock_;
  // Platform certificates: rotated through the admin API.
  mutable absl::Mutex platform_mu_;
  std::vector<PlatformEntry> platform_ ABSL_GUARDED_BY(platform_mu_);
  std::string active_serial_ ABSL_GUARDED_BY(platform_mu_);
  const SigningKey public_signing_key_;
  const std::optional<SigningKey> stranger_key_;  // for the unknown_serial fault
  const std::vector<FaultPlan> random_faults_;     // drawn from under options_.fault_rate
  RequestVerifier verifier_;
  ResponseSigner signer_;
  RequestLog log_;
  const std::string request_id_prefix_;
  std::atomic<uint64_t> request_counter_{0};
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_HANDLER_H_
