// File: server/ops/metrics.h
//
// Metrics: palmgate's Prometheus metrics (prometheus-cpp), served in the text
// format on a separate port (--metrics_listen) at /metrics.
//
// Recorded as they happen: RPCs by method and code, RPC latency, in-flight
// RPCs, upstream requests by host / HTTP status / WeChat Pay code, upstream
// latency, verification failures by reason. Read on each scrape from a
// StatsSnapshot source: upstream attempts, retries, failovers, key refreshes,
// coalesced calls (calls that joined an identical call in flight), breaker
// state, keys in the ring, seconds until the earliest certificate expires,
// last key refresh, measured clock skew.
//
// No label ever holds an openid or other user data: label values are method
// names from a fixed set, gRPC code names, configured hosts, HTTP statuses
// from a fixed list (those WeChat Pay documents: 200, 202, 204, 400, 401, 403,
// 404, 405, 429, 500, 502, 503, 504; any other by class, "2xx" to "5xx", else
// "other"; "0" for no response), WeChat Pay codes from a fixed list
// (wechatpay::IsKnownWechatpayCode; any other code is "OTHER", no code "none")
// and palmgate's error reasons. Every label value comes from a bounded set:
// unsigned statuses and error bodies cannot add series.
//
// Thread safety: thread-safe.
#ifndef PALMGATE_SERVER_OPS_METRICS_H_
#define PALMGATE_SERVER_OPS_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace palmgate::ops {

// Values read at scrape time (GetStats() snapshots of the gateway core).
struct StatsSnapshot {
  int64_t upstream_attempts = 0;
  int64_t upstream_retries = 0;
  int64_t upstream_failovers = 0;
  int64_t key_refreshes = 0;          // unknown-serial refreshes requested
  int64_t signatures = 0;             // request signatures made (RSA-2048)
  absl::Duration signing_cpu;         // thread CPU time they took
  int64_t coalesced_calls = 0;        // calls that joined an identical call in flight (--coalesce)
  bool breaker_open = false;
  int64_t verification_keys = 0;
  std::optional<absl::Time> earliest_certificate_expiry;  // none: no certificate in the ring
  std::optional<absl::Time> last_key_refresh;             // last successful download or key (re)load
  std::optional<absl::Duration> clock_skew;               // Wechatpay-Timestamp minus local time
  bool serving = true;
};

class Metrics {
 public:
  // Creates the registry. With a non-empty `listen` (IPv4:PORT, the host
  // required: 127.0.0.1:9090, 0.0.0.0:9090 for every interface; port 0 picks
  // one) it also serves /metrics there; kInvalidArgument for a bare port, a
  // host name, a list, an IPv6 address (Debian's civetweb has no IPv6), or
  // when it cannot listen.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const std::string& listen);
  ~Metrics();

  // The port /metrics is served on (0 without an exposer).
  int port() const { return port_; }

  // Sets the source read at each scrape; it must stay valid until it is
  // replaced or the Metrics object is destroyed (pass {} to detach).
  void SetStatsSource(std::function<StatsSnapshot()> source);

  void RpcStarted();
  // `method` is the full method name; unknown names are counted as "other".
  void RpcFinished(absl::string_view method, int grpc_code, absl::Duration latency);
  void VerificationFailure(absl::string_view reason);
  // `http_status` (0: no response) and `wechatpay_code`, the `code` of an
  // error body, are as sent (unsigned): the status is counted under its own
  // number only when WeChat Pay documents it (above), else by class; the code
  // under its own name only when IsKnownWechatpayCode, else as OTHER.
  void UpstreamResponse(absl::string_view host, int http_status, absl::string_view wechatpay_code,
                        absl::Duration latency);

  // The text exposition of everything (what /metrics serves).
  std::string Render() const;

 private:
  class StatsCollectable;
  Metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StatsCollectable> stats_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  prometheus::Family<prometheus::Counter>* rpcs_;
  prometheus::Family<prometheus::Histogram>* rpc_latency_;
  prometheus::Gauge* in_flight_;
  prometheus::Family<prometheus::Counter>* upstream_requests_;
  prometheus::Family<prometheus::Histogram>* upstream_latency_;
  prometheus::Family<prometheus::Counter>* verification_failures_;
};

// Returns the canonical name of a gRPC status code ("OK", "NOT_FOUND"…).
const char* GrpcCodeName(int code);

}  // namespace palmgate::ops

#endif  // PALMGATE_SERVER_OPS_METRICS_H_
