// File: sandbox/request_log.h
//
// Introspection for tests: counters (GET /_sandbox/stats) and the last 1000
// API requests (GET /_sandbox/requests), cleared by POST /_sandbox/reset.
// Admin requests under /_sandbox/ are neither counted nor logged, so polling
// does not disturb what a test observes. Records never hold the
// Authorization header.
//
// Thread safety: all methods are thread-safe.
#ifndef PALMGATE_SANDBOX_REQUEST_LOG_H_
#define PALMGATE_SANDBOX_REQUEST_LOG_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace palmgate::sandbox {

struct RequestRecord {
  std::string request_id;
  std::string method;
  std::string target;                          // raw request-target
  std::string endpoint;                        // "palm_authorization", "certificates", "not_found", ...
  std::optional<std::string> openid;           // decoded, when parsed
  std::optional<std::string> organization_id;  // decoded, when parsed
  int status = 0;                              // 0 when the connection was dropped
  std::string fault;                           // the fault spec applied, or empty
  std::string response_serial;                 // Wechatpay-Serial sent, when signed
  std::string error_code;                      // WeChat error code, for non-2xx
  std::string sign_error_issue;                // for 401 SIGN_ERROR from verification
  int64_t unix_ms = 0;
};

class RequestLog {
 public:
  static constexpr size_t kMaxRecords = 1000;

  void Record(RequestRecord record);
  // {"requests_total":N,"by_endpoint":{"palm_authorization":{"200":3}},
  //  "by_status":{"200":3},"sign_errors":N,"faults_injected":N,
  //  "faults_by_spec":{"status=500":N},"dropped":N}
  std::string StatsJson() const;
  // JSON array, oldest first.
  std::string RequestsJson() const;
  void Reset();

 private:
  mutable absl::Mutex mu_;
  std::deque<RequestRecord> records_ ABSL_GUARDED_BY(mu_);
  uint64_t requests_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sign_errors_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t faults_injected_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::map<int, uint64_t>> by_endpoint_ ABSL_GUARDED_BY(mu_);
  std::map<int, uint64_t> by_status_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> faults_by_spec_ ABSL_GUARDED_BY(mu_);
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_REQUEST_LOG_H_
