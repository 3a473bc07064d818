#include "server/ops/metrics.h"

#include <exception>
#include <utility>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/common/net_util.h"
#include "server/wechatpay/error_mapping.h"

namespace palmgate::ops {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets =
      new prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *buckets;
}

// Method label: a fixed set, so that callers cannot create label values.
absl::string_view MethodLabel(absl::string_view method) {
  static constexpr absl::string_view kKnown[] = {
      "/palmgate.v1.PalmAuthorization/GetAuthorization",
      "/grpc.health.v1.Health/Check",
      "/grpc.health.v1.Health/Watch",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  };
  for (absl::string_view m : kKnown) {
    if (m == method) return m;
  }
  return "other";
}

// WeChat Pay code label: error bodies are not signed, so whoever answers picks
// the code; only a fixed list of codes becomes a label value (one series each
// at most), every other code is OTHER.
std::string CodeLabel(absl::string_view code) {
  if (code.empty()) return "none";
  return wechatpay::IsKnownWechatpayCode(code) ? std::string(code) : "OTHER";
}

// HTTP status label: anything on the path can answer with any 3-digit status
// (299, 418, 999 each made a series of their own), so only the statuses WeChat
// Pay documents for APIv3 (wechatpay-v3.md section 5.2; 504 from the gateways
// in front of it) are label values of their own; any other is counted by
// class, and what is no HTTP status at all as "other". 0: no response.
std::string StatusLabel(int http_status) {
  static constexpr int kDocumented[] = {200, 202, 204, 400, 401, 403, 404, 405, 429, 500, 502, 503, 504};
  if (http_status == 0) return "0";
  for (int documented : kDocumented) {
    if (http_status == documented) return absl::StrCat(http_status);
  }
  if (http_status >= 200 && http_status <= 599) return absl::StrCat(http_status / 100, "xx");
  return "other";
}

// Reason label: palmgate's own ErrorInfo reasons are UPPER_SNAKE; anything
// else is not used as a label value.
std::string ReasonLabel(absl::string_view reason) {
  if (reason.empty() || reason.size() > 64) return "other";
  for (char c : reason) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return "other";
  }
  return std::string(reason);
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

}  // namespace

const char* GrpcCodeName(int code) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",  "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
      "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

// Gauges and counters read from GetStats() snapshots on each scrape.
class Metrics::StatsCollectable final : public prometheus::Collectable {
 public:
  void SetSource(std::function<StatsSnapshot()> source) {
    absl::MutexLock lock(&mu_);
    source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    StatsSnapshot s;
    {
      absl::MutexLock lock(&mu_);
      if (!source_) return {};
      s = source_();
    }
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Family("palmgate_upstream_attempts_total", "Upstream HTTP attempts (first tries and retries).",
                         MetricType::Counter, static_cast<double>(s.upstream_attempts)));
    out.push_back(Family("palmgate_upstream_retries_total", "Upstream attempts that were retries.", MetricType::Counter,
                         static_cast<double>(s.upstream_retries)));
    out.push_back(Family("palmgate_upstream_failovers_total", "Upstream attempts sent to the backup host.",
                         MetricType::Counter, static_cast<double>(s.upstream_failovers)));
    out.push_back(Family("palmgate_key_refreshes_total",
                         "Platform certificate refreshes requested for an unknown Wechatpay-Serial.",
                         MetricType::Counter, static_cast<double>(s.key_refreshes)));
    out.push_back(Family("palmgate_signatures_total", "Request signatures made (SHA256withRSA, RSA-2048).",
                         MetricType::Counter, static_cast<double>(s.signatures)));
    out.push_back(Family("palmgate_signing_cpu_seconds_total",
                         "CPU time spent making request signatures (most of the gateway's CPU).", MetricType::Counter,
                         absl::ToDoubleSeconds(s.signing_cpu)));
    out.push_back(Family("palmgate_coalesced_calls_total",
                         "Calls answered from an identical call already in flight (no upstream request of their own).",
                         MetricType::Counter, static_cast<double>(s.coalesced_calls)));
    out.push_back(Family("palmgate_upstream_breaker_open", "1 while the primary host's circuit breaker is open.",
                         MetricType::Gauge, s.breaker_open ? 1 : 0));
    out.push_back(Family("palmgate_verification_keys", "WeChat Pay verification keys in the key ring.",
                         MetricType::Gauge, static_cast<double>(s.verification_keys)));
    out.push_back(Family("palmgate_serving", "1 while health says SERVING.", MetricType::Gauge, s.serving ? 1 : 0));
    const absl::Time now = absl::Now();
    if (s.earliest_certificate_expiry.has_value()) {
      out.push_back(Family("palmgate_certificate_expiry_seconds",
                           "Seconds until the earliest WeChat Pay platform certificate in the ring expires.",
                           MetricType::Gauge, absl::ToDoubleSeconds(*s.earliest_certificate_expiry - now)));
    }
    if (s.last_key_refresh.has_value()) {
      out.push_back(Family("palmgate_last_key_refresh_timestamp_seconds",
                           "Unix time of the last successful verification key download or load.", MetricType::Gauge,
                           absl::ToDoubleSeconds(*s.last_key_refresh - absl::UnixEpoch())));
    }
    if (s.clock_skew.has_value()) {
      out.push_back(Family("palmgate_clock_skew_seconds",
                           "Wechatpay-Timestamp minus the local clock, from the last verified response.",
                           MetricType::Gauge, absl::ToDoubleSeconds(*s.clock_skew)));
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::function<StatsSnapshot()> source_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), stats_(std::make_shared<StatsCollectable>()) {
  rpcs_ = &prometheus::BuildCounter()
               .Name("palmgate_rpc_requests_total")
               .Help("Finished RPCs by full method name and gRPC status code.")
               .Register(*registry_);
  rpc_latency_ = &prometheus::BuildHistogram()
                      .Name("palmgate_rpc_duration_seconds")
                      .Help("RPC latency, from the request's arrival to its status.")
                      .Register(*registry_);
  in_flight_ = &prometheus::BuildGauge()
                    .Name("palmgate_rpc_in_flight")
                    .Help("RPCs started and not yet finished.")
                    .Register(*registry_)
                    .Add({});
  upstream_requests_ = &prometheus::BuildCounter()
                            .Name("palmgate_upstream_requests_total")
                            .Help("Upstream HTTP requests by host, HTTP status (0: no response) and WeChat Pay code.")
                            .Register(*registry_);
  upstream_latency_ = &prometheus::BuildHistogram()
                           .Name("palmgate_upstream_duration_seconds")
                           .Help("Upstream HTTP request latency by host.")
                           .Register(*registry_);
  verification_failures_ = &prometheus::BuildCounter()
                                .Name("palmgate_verification_failures_total")
                                .Help("Calls failed because a WeChat Pay response could not be trusted, by reason.")
                                .Register(*registry_);
}

Metrics::~Metrics() { exposer_.reset(); }

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(const std::string& listen) {
  std::unique_ptr<Metrics> metrics(new Metrics());
  if (listen.empty()) return metrics;
  // civetweb would take a bare port (or ":PORT") as every interface, and a
  // comma-separated list as several listeners: only one IP:PORT is accepted.
  absl::StatusOr<HostPort> parsed = ParseIpHostPort(listen);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat("--metrics_listen: ", parsed.status().message()));
  // Debian's civetweb (under prometheus-cpp) is built without IPv6: it fails
  // with "null context when constructing CivetServer".
  if (parsed->ipv6) {
    return absl::InvalidArgumentError(
        "--metrics_listen: IPv6 addresses are not supported (the HTTP server library is built without IPv6); "
        "use an IPv4 address such as 127.0.0.1:9090");
  }
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics_listen: cannot listen on ", listen, ": ", e.what()));
  }
  std::vector<int> ports = metrics->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::InvalidArgumentError(absl::StrCat("--metrics_listen: cannot listen on ", listen));
  metrics->port_ = ports.front();
  metrics->exposer_->RegisterCollectable(metrics->registry_);
  metrics->exposer_->RegisterCollectable(metrics->stats_);
  return metrics;
}

void Metrics::SetStatsSource(std::function<StatsSnapshot()> source) { stats_->SetSource(std::move(source)); }

void Metrics::RpcStarted() { in_flight_->Increment(); }

void Metrics::RpcFinished(absl::string_view method, int grpc_code, absl::Duration latency) {
  in_flight_->Decrement();
  const std::string m(MethodLabel(method));
  rpcs_->Add({{"method", m}, {"code", GrpcCodeName(grpc_code)}}).Increment();
  rpc_latency_->Add({{"method", m}}, LatencyBuckets()).Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::VerificationFailure(absl::string_view reason) {
  verification_failures_->Add({{"reason", ReasonLabel(reason)}}).Increment();
}

void Metrics::UpstreamResponse(absl::string_view host, int http_status, absl::string_view wechatpay_code,
                               absl::Duration latency) {
  upstream_requests_
      ->Add({{"host", std::string(host)},
             {"status", StatusLabel(http_status)},
             {"wechatpay_code", CodeLabel(wechatpay_code)}})
      .Increment();
  upstream_latency_->Add({{"host", std::string(host)}}, LatencyBuckets()).Observe(absl::ToDoubleSeconds(latency));
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& f : stats_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace palmgate::ops
