// palmgate: the gRPC gateway for WeChat Pay's palm-scan authorization query.
//
//   palmgate --mchid 1900000001 --merchant_serial 5157F0…
//            --merchant_private_key /secrets/apiclient_key.pem
//            --wechatpay_public_key /secrets/pub_key.pem --wechatpay_public_key_id PUB_KEY_ID_…
//
// Every flag can also be set through the environment as PALMGATE_<FLAG>
// (e.g. PALMGATE_MCHID); a command-line flag wins. Secrets are only ever read
// from files. Prints "LISTENING host:port" on stdout once serving.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/core_dumps.h"
#include "server/common/logging.h"
#include "server/file_watcher.h"
#include "server/gateway.h"
#include "server/grpc_server.h"
#include "server/ops/metrics.h"
#include "server/ops/observed_transport.h"
#include "server/ops/rpc_interceptor.h"
#include "server/ops/server_credentials.h"
#include "server/service/palmgate_service.h"
#include "server/wechatpay/rsa_signer.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC listen address (host:port or [IPv6]:port; 0.0.0.0 and [::] are IPv4 and IPv6; port 0 picks one; "
          "a port in use: exit 2)");
ABSL_FLAG(std::string, mchid, "", "merchant id (mchid) that signs requests");
ABSL_FLAG(std::string, merchant_serial, "", "serial number of the merchant API certificate");
ABSL_FLAG(std::string, merchant_private_key, "", "file: the merchant API private key (apiclient_key.pem)");
ABSL_FLAG(std::string, merchant_certificate, "", "file (optional): the merchant API certificate, checked against the key and serial");
ABSL_FLAG(std::string, wechatpay_public_key, "", "file: the WeChat Pay public key (SPKI PEM)");
ABSL_FLAG(std::string, wechatpay_public_key_id, "", "id of the WeChat Pay public key (PUB_KEY_ID_…)");
ABSL_FLAG(std::vector<std::string>, platform_certificates, {}, "files: WeChat Pay platform certificates (comma-separated)");
ABSL_FLAG(std::string, upstream, "https://api.mch.weixin.qq.com",
          "WeChat Pay API base URL (https://; http:// only to 127.0.0.0/8, [::1] or localhost, unless "
          "--allow_insecure_upstream)");
ABSL_FLAG(bool, allow_insecure_upstream, false,
          "allow an http:// --upstream/--upstream_backup to a non-loopback host (requests and answers, openids "
          "included, then cross the network unencrypted)");
ABSL_FLAG(std::string, upstream_backup, "auto",
          "failover base URL (\"auto\": https://api2.mch.weixin.qq.com when --upstream is the production host; \"none\")");
ABSL_FLAG(int, upstream_attempts, 3, "attempts per call (retries on connection failure, the attempt's own timeout, 5xx, 202; never 429)");
ABSL_FLAG(absl::Duration, upstream_attempt_timeout, absl::ZeroDuration(),
          "time for one attempt, counted from when it gets an upstream connection; a timed-out attempt counts against "
          "the host and is retried (on the backup) while the deadline allows (0: half of --upstream_timeout with a "
          "backup host, so that a hung primary fails over within the call; all of it without one)");
ABSL_FLAG(absl::Duration, upstream_max_idle, absl::Seconds(7),
          "pooled upstream connections idle longer are not reused (WeChat Pay closes them at 8 s)");
ABSL_FLAG(int, upstream_max_connections, 512,
          "upstream connections (and calls running upstream) at once (0: no limit); further calls wait in line, first come first served, "
          "within --upstream_timeout (UNAVAILABLE UPSTREAM_CONNECTIONS_BUSY when it runs out there; never counted against the host)");
ABSL_FLAG(std::string, apiv3_key_file, "",
          "file: the 32-byte APIv3 key; enables platform certificate download and refresh (/v3/certificates)");
ABSL_FLAG(absl::Duration, certificate_refresh_interval, absl::Hours(11),
          "platform certificate refresh period (jitter ±min(30m, 10%); must stay under 12h)");
ABSL_FLAG(absl::Duration, certificate_refresh_min_interval, absl::Seconds(30),
          "at most 3 unknown-serial certificate downloads that bring none of the serials asked for start per "
          "this interval, and such a serial is not looked for again within it (start-up, periodic downloads "
          "and real rotations never count)");
ABSL_FLAG(std::string, upstream_ca, "", "file: CA bundle trusted for the upstream TLS (default: system CAs)");
ABSL_FLAG(std::string, proxy, "",
          "egress proxy URL for upstream calls (default: HTTPS_PROXY/NO_PROXY); a URL with credentials (user:password@) "
          "is refused: use --proxy_credentials_file");
ABSL_FLAG(std::string, proxy_credentials_file, "",
          "file: the egress proxy's credentials, one line \"user:password\" (the first ':' splits)");
ABSL_FLAG(absl::Duration, upstream_timeout, absl::Seconds(10), "maximum time for one upstream call");
ABSL_FLAG(bool, coalesce, true,
          "identical concurrent queries (same openid and organization_id) share one upstream call; results are never cached");
ABSL_FLAG(absl::Duration, clock_skew, absl::Seconds(300), "allowed |Wechatpay-Timestamp - local clock|");
ABSL_FLAG(absl::Duration, deadline_margin, absl::Milliseconds(20), "kept from the caller's deadline to answer in time (0 to 1s)");
ABSL_FLAG(absl::Duration, key_reload_interval, absl::Seconds(10),
          "how often key files are checked for changes (reloaded without a restart; also on SIGHUP); 0: only SIGHUP");
ABSL_FLAG(absl::Duration, drain_delay, absl::ZeroDuration(),
          "on SIGTERM, time to keep serving while health says NOT_SERVING (for load balancers to notice); not negative");
ABSL_FLAG(bool, drain_refuse_connections, false,
          "on SIGTERM, refuse new connections at once (listening socket closed) while established ones keep being "
          "served through --drain_delay; for balancers without active health checks (open-source nginx), which "
          "move traffic on a refused connect");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10), "on SIGTERM, time allowed for in-flight RPCs; not negative");
ABSL_FLAG(std::string, tls_cert, "", "file: PEM certificate chain for the gRPC port (TLS; empty: plain text)");
ABSL_FLAG(std::string, tls_key, "", "file: PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "", "file: PEM CA bundle; client certificates are then required (mTLS)");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(10),
          "how often the TLS files are checked for changes (reloaded without a restart)");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address, IPv4:PORT with the host required (127.0.0.1:9090; 0.0.0.0:9090 "
          "for every interface); port 0 picks one; empty: off");
ABSL_FLAG(bool, allow_core_dumps, false,
          "let the process dump core (by default RLIMIT_CORE is 0 and PR_SET_DUMPABLE is off, so key material never "
          "lands in a core file)");
ABSL_FLAG(std::string, log_level, "info", "least level logged: debug, info, warning, error");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(60),
          "server keepalive ping on idle connections (keeps L4 balancer and NAT idle timers from dropping them)");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20), "close a connection whose keepalive ping got no ack");
ABSL_FLAG(absl::Duration, max_connection_age, absl::Minutes(5),
          "GOAWAY connections older than this (±10% jitter) so clients behind L4 balancers spread over replicas; 0: never");
ABSL_FLAG(absl::Duration, max_connection_age_grace, absl::Seconds(30),
          "time RPCs on an aged connection get to finish; 0: unlimited");
ABSL_FLAG(int, max_concurrent_streams, 1000, "concurrent RPCs per client connection");
ABSL_FLAG(int, max_connections, 4096,
          "client connections open at once; beyond it new connections are reset at once (0: no cap)");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "close a connection that has not sent its HTTP/2 preface and SETTINGS (TLS handshake included) in this time "
          "(must be positive)");
ABSL_FLAG(int, max_request_bytes, palmgate::kDefaultMaxReceiveMessageBytes,
          "larger request messages are refused with RESOURCE_EXHAUSTED (a valid request is under 300 bytes)");
ABSL_FLAG(int, max_metadata_bytes, palmgate::kDefaultMaxMetadataBytes,
          "larger request metadata (headers, counted as HTTP/2 does: name + value + 32 each) is refused with RESOURCE_EXHAUSTED");

namespace palmgate {
namespace {

constexpr const char* kEnvFlags[] = {
    "listen", "mchid", "merchant_serial", "merchant_private_key", "merchant_certificate",
    "wechatpay_public_key", "wechatpay_public_key_id", "platform_certificates", "upstream", "allow_insecure_upstream",
    "upstream_backup",
    "upstream_attempts", "upstream_attempt_timeout", "upstream_max_idle", "upstream_max_connections", "coalesce", "apiv3_key_file", "certificate_refresh_interval",
    "certificate_refresh_min_interval", "upstream_ca",
    "proxy", "proxy_credentials_file", "upstream_timeout", "clock_skew", "deadline_margin", "key_reload_interval",
    "drain_delay", "drain_refuse_connections", "shutdown_grace", "tls_cert", "tls_key", "tls_client_ca",
    "tls_reload_interval", "metrics_listen", "allow_core_dumps", "log_level", "keepalive_time", "keepalive_timeout",
    "max_connection_age", "max_connection_age_grace", "max_concurrent_streams", "max_connections",
    "handshake_timeout", "max_request_bytes", "max_metadata_bytes"};

// --deadline_margin's upper bound (the default is 20ms).
constexpr absl::Duration kMaxDeadlineMargin = absl::Seconds(1);

// PALMGATE_<FLAG> environment variables set flag defaults; the command line then overrides.
bool ApplyEnvironment() {
  for (const char* name : kEnvFlags) {
    const std::string env = absl::StrCat("PALMGATE_", absl::AsciiStrToUpper(name));
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      std::cerr << "palmgate: " << env << ": " << error << std::endl;
      return false;
    }
  }
  return true;
}

// RLIMIT_NOFILE before and after RaiseOpenFilesLimit().
struct OpenFilesLimit {
  int64_t soft_at_start = 0;
  int64_t soft = 0;
  int64_t hard = 0;
};

// Raises the soft limit of open descriptors to the hard one: every client
// connection and every upstream connection is one, and the default soft limit
// (1024 on many systems) is far below what the gateway is sized for.
OpenFilesLimit RaiseOpenFilesLimit() {
  OpenFilesLimit out;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return out;
  auto value = [](rlim_t v) { return v == RLIM_INFINITY ? int64_t{-1} : static_cast<int64_t>(v); };
  out.soft_at_start = value(limit.rlim_cur);
  if (limit.rlim_cur != limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  out.soft = value(limit.rlim_cur);
  out.hard = value(limit.rlim_max);
  return out;
}

// Health and key-load state the metrics read on scrape.
struct OpsState {
  std::atomic<bool> serving{true};
  absl::Mutex mu;
  absl::Time last_key_load ABSL_GUARDED_BY(mu) = absl::Now();
};

ops::StatsSnapshot Snapshot(const GatewayCore& core, OpsState& state) {
  ops::StatsSnapshot s;
  const wechatpay::PalmServiceClient::Stats client = core.client->GetStats();
  s.upstream_attempts = client.attempts;
  s.upstream_retries = client.retries;
  s.upstream_failovers = client.failovers;
  s.key_refreshes = client.key_refreshes;
  const wechatpay::RsaSha256Signer::Totals signing = wechatpay::RsaSha256Signer::ProcessTotals();
  s.signatures = signing.signatures;
  s.signing_cpu = signing.cpu;
  s.coalesced_calls = client.coalesced;
  s.breaker_open = client.breaker_open;
  if (client.attempts > 0) s.clock_skew = client.last_clock_skew;
  std::shared_ptr<const wechatpay::KeyRing> ring = core.keys->Current();
  s.verification_keys = ring != nullptr ? static_cast<int64_t>(ring->size()) : 0;
  if (ring != nullptr) {
    for (const wechatpay::VerificationKey& key : ring->keys()) {
      if (key.kind != wechatpay::VerificationKey::Kind::kPlatformCertificate) continue;
      if (!s.earliest_certificate_expiry.has_value() || key.not_after < *s.earliest_certificate_expiry) {
        s.earliest_certificate_expiry = key.not_after;
      }
    }
  }
  {
    absl::MutexLock lock(&state.mu);
    s.last_key_refresh = state.last_key_load;
  }
  if (core.certificates != nullptr) {
    const absl::Time downloaded = core.certificates->GetStats().last_success;
    if (downloaded != absl::InfinitePast() && downloaded > *s.last_key_refresh) s.last_key_refresh = downloaded;
  }
  s.serving = state.serving.load();
  return s;
}

int Run() {
  const OpenFilesLimit open_files = RaiseOpenFilesLimit();
  LogLevel level;
  if (!ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::cerr << "palmgate: --log_level: must be debug, info, warning or error" << std::endl;
    return 2;
  }
  SetMinLogLevel(level);
  // Before any key is read.
  if (!absl::GetFlag(FLAGS_allow_core_dumps)) {
    if (absl::Status s = DisableCoreDumps(); !s.ok()) {
      std::cerr << "palmgate: cannot disable core dumps (--allow_core_dumps to start anyway): " << s.message()
                << std::endl;
      return 2;
    }
  }

  ops::ServerTlsFiles tls;
  tls.cert = absl::GetFlag(FLAGS_tls_cert);
  tls.key = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  tls.reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ops::MakeServerCredentials(tls);
  if (!credentials.ok()) {
    std::cerr << "palmgate: " << credentials.status().message() << std::endl;
    return 2;
  }
  for (const auto& [name, value, least] :
       {std::tuple<const char*, int, int>{"max_concurrent_streams", absl::GetFlag(FLAGS_max_concurrent_streams), 1},
        {"max_connections", absl::GetFlag(FLAGS_max_connections), 0},
        {"max_request_bytes", absl::GetFlag(FLAGS_max_request_bytes), 1},
        {"max_metadata_bytes", absl::GetFlag(FLAGS_max_metadata_bytes), 1024}}) {
    if (value < least) {
      std::cerr << "palmgate: --" << name << ": must be at least " << least << std::endl;
      return 2;
    }
  }
  for (const auto& [name, value] : {std::pair<const char*, absl::Duration>{"keepalive_time", absl::GetFlag(FLAGS_keepalive_time)},
                                    {"keepalive_timeout", absl::GetFlag(FLAGS_keepalive_timeout)},
                                    {"max_connection_age", absl::GetFlag(FLAGS_max_connection_age)},
                                    {"max_connection_age_grace", absl::GetFlag(FLAGS_max_connection_age_grace)},
                                    {"drain_delay", absl::GetFlag(FLAGS_drain_delay)},
                                    {"shutdown_grace", absl::GetFlag(FLAGS_shutdown_grace)},
                                    {"key_reload_interval", absl::GetFlag(FLAGS_key_reload_interval)},
                                    {"tls_reload_interval", absl::GetFlag(FLAGS_tls_reload_interval)},
                                    {"deadline_margin", absl::GetFlag(FLAGS_deadline_margin)}}) {
    if (value < absl::ZeroDuration()) {
      std::cerr << "palmgate: --" << name << ": must not be negative" << std::endl;
      return 2;
    }
  }
  // 0 would mean gRPC's own default (2 minutes), not "no timeout".
  if (absl::GetFlag(FLAGS_handshake_timeout) <= absl::ZeroDuration()) {
    std::cerr << "palmgate: --handshake_timeout: must be positive" << std::endl;
    return 2;
  }
  // Kept from every caller's deadline: a large one fails every call at once.
  if (absl::GetFlag(FLAGS_deadline_margin) > kMaxDeadlineMargin) {
    std::cerr << "palmgate: --deadline_margin: must be at most " << absl::FormatDuration(kMaxDeadlineMargin)
              << std::endl;
    return 2;
  }

  // Outlives the core: upstream transfers report to it until the transport is gone.
  std::unique_ptr<ops::Metrics> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    absl::StatusOr<std::unique_ptr<ops::Metrics>> created = ops::Metrics::Create(absl::GetFlag(FLAGS_metrics_listen));
    if (!created.ok()) {
      std::cerr << "palmgate: " << created.status().message() << std::endl;
      return 2;
    }
    metrics = *std::move(created);
  }
  OpsState ops_state;

  GatewayConfig config;
  config.mchid = absl::GetFlag(FLAGS_mchid);
  config.merchant_serial = absl::GetFlag(FLAGS_merchant_serial);
  config.merchant_private_key = absl::GetFlag(FLAGS_merchant_private_key);
  config.merchant_certificate = absl::GetFlag(FLAGS_merchant_certificate);
  config.wechatpay_public_key = absl::GetFlag(FLAGS_wechatpay_public_key);
  config.wechatpay_public_key_id = absl::GetFlag(FLAGS_wechatpay_public_key_id);
  config.platform_certificates = absl::GetFlag(FLAGS_platform_certificates);
  config.upstream = absl::GetFlag(FLAGS_upstream);
  config.allow_insecure_upstream = absl::GetFlag(FLAGS_allow_insecure_upstream);
  config.upstream_backup = absl::GetFlag(FLAGS_upstream_backup);
  config.upstream_attempts = absl::GetFlag(FLAGS_upstream_attempts);
  config.upstream_attempt_timeout = absl::GetFlag(FLAGS_upstream_attempt_timeout);
  config.upstream_max_idle = absl::GetFlag(FLAGS_upstream_max_idle);
  config.upstream_max_connections = absl::GetFlag(FLAGS_upstream_max_connections);
  config.coalesce = absl::GetFlag(FLAGS_coalesce);
  config.apiv3_key_file = absl::GetFlag(FLAGS_apiv3_key_file);
  config.certificate_refresh_interval = absl::GetFlag(FLAGS_certificate_refresh_interval);
  config.certificate_refresh_min_interval = absl::GetFlag(FLAGS_certificate_refresh_min_interval);
  config.upstream_ca = absl::GetFlag(FLAGS_upstream_ca);
  config.proxy = absl::GetFlag(FLAGS_proxy);
  config.proxy_credentials_file = absl::GetFlag(FLAGS_proxy_credentials_file);
  config.upstream_timeout = absl::GetFlag(FLAGS_upstream_timeout);
  config.clock_skew = absl::GetFlag(FLAGS_clock_skew);
  if (metrics != nullptr) {
    ops::Metrics* m = metrics.get();
    config.wrap_transport = [m](wechatpay::HttpTransport* inner) -> std::unique_ptr<wechatpay::HttpTransport> {
      return std::make_unique<ops::ObservedTransport>(inner, m);
    };
  }

  absl::StatusOr<std::unique_ptr<GatewayCore>> core = LoadGateway(config, SystemClock::Get());
  if (!core.ok()) {
    std::cerr << "palmgate: " << core.status().message() << std::endl;
    return 2;
  }

  service::PalmAuthorizationService::Options sopts;
  sopts.deadline_margin = absl::GetFlag(FLAGS_deadline_margin);
  service::PalmAuthorizationService service((*core)->client.get(), SystemClock::Get(), sopts);

  GrpcServerOptions server_options;
  server_options.credentials = *credentials;
  server_options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  server_options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  server_options.max_connection_age = absl::GetFlag(FLAGS_max_connection_age);
  server_options.max_connection_age_grace = absl::GetFlag(FLAGS_max_connection_age_grace);
  server_options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  server_options.max_connections = absl::GetFlag(FLAGS_max_connections);
  server_options.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  server_options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  server_options.max_metadata_bytes = absl::GetFlag(FLAGS_max_metadata_bytes);
  if (metrics != nullptr) server_options.interceptors.push_back(ops::MakeRpcMetricsInterceptorFactory(metrics.get()));
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start(absl::GetFlag(FLAGS_listen), &service, std::move(server_options));
  if (!server.ok()) {
    std::cerr << "palmgate: " << server.status().message() << std::endl;
    return 2;
  }
  const int port = (*server)->port();
  if ((*core)->certificates != nullptr) {
    // NOT_SERVING while no verification key is usable (all certificates expired and refresh failing).
    GrpcServer* grpc_server = server->get();
    (*core)->certificates->SetUsabilityListener([grpc_server, &ops_state](bool usable) {
      grpc_server->SetServing(usable);
      ops_state.serving = usable;
      if (!usable) Log(LogLevel::kError, "no usable WeChat Pay verification key: health NOT_SERVING");
    });
  }

  std::string listen = absl::GetFlag(FLAGS_listen);
  std::string host = listen.substr(0, listen.rfind(':'));
  if (metrics != nullptr) {
    GatewayCore* gateway_core = core->get();
    metrics->SetStatsSource([gateway_core, &ops_state] { return Snapshot(*gateway_core, ops_state); });
    const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
    Log(LogLevel::kInfo, "metrics serving",
        LogFields()
            .Add("address", absl::StrCat(metrics_listen.substr(0, metrics_listen.rfind(':')), ":", metrics->port()))
            .Add("path", "/metrics"));
  }
  Log(LogLevel::kInfo, "palmgate serving",
      LogFields()
          .Add("address", absl::StrCat(host, ":", port))
          .Add("transport_security", tls.cert.empty() ? "plaintext" : tls.client_ca.empty() ? "tls" : "mtls")
          .Add("upstream", config.upstream)
          .Add("verification_keys", static_cast<int64_t>((*core)->keys->Current()->size()))
          .Add("max_connections", absl::GetFlag(FLAGS_max_connections))
          .Add("open_files_limit", open_files.soft)  // -1: unlimited
          .Add("open_files_limit_hard", open_files.hard)
          .Add("open_files_limit_at_start", open_files.soft_at_start));
  // After the log line: whoever waits for LISTENING finds "palmgate serving" in the log already.
  std::cout << "LISTENING " << host << ":" << port << std::endl;
  // Client connections beyond the descriptor limit are shed one by one at
  // accept (tcp_listener.h); a cap below it sheds them before upstream
  // connections and key reloads run out of descriptors.
  const int64_t needed = int64_t{absl::GetFlag(FLAGS_max_connections)} + config.upstream_max_connections + 64;
  if (open_files.soft >= 0 && absl::GetFlag(FLAGS_max_connections) > 0 && needed > open_files.soft) {
    Log(LogLevel::kWarning, "open files limit below --max_connections + --upstream_max_connections + 64",
        LogFields().Add("open_files_limit", open_files.soft).Add("needed", needed));
  }

  // Reloads every key file (SIGHUP, or a changed file: both call it). Serialised: the
  // watcher's thread and the signal loop may both reload.
  absl::Mutex reload_mu;
  auto reload = [&config, &core, &ops_state, &reload_mu]() -> absl::Status {
    absl::MutexLock lock(&reload_mu);
    absl::Status reloaded = ReloadKeys(config, **core, SystemClock::Get());
    if (!reloaded.ok()) {
      return absl::Status(reloaded.code(),
                          absl::StrCat("key reload failed, keeping the running keys: ", reloaded.message()));
    }
    {
      absl::MutexLock state_lock(&ops_state.mu);
      ops_state.last_key_load = absl::Now();
    }
    Log(LogLevel::kInfo, absl::StrCat("keys reloaded; verification keys: ", (*core)->keys->Current()->size()));
    return absl::OkStatus();
  };

  // Key files changed: reload; a failed reload is retried at every later check
  // until it succeeds (file_watcher.h), which also logs the failures.
  std::unique_ptr<FileWatcher> watcher;
  if (absl::GetFlag(FLAGS_key_reload_interval) > absl::ZeroDuration()) {
    std::vector<std::string> files = {config.merchant_private_key, config.merchant_certificate,
                                      config.wechatpay_public_key, config.apiv3_key_file};
    files.insert(files.end(), config.platform_certificates.begin(), config.platform_certificates.end());
    watcher = std::make_unique<FileWatcher>(std::move(files), absl::GetFlag(FLAGS_key_reload_interval), reload);
  }

  // SIGHUP: reload keys, keeping the old ones when that fails.
  // SIGTERM/SIGINT: stop advertising, let in-flight RPCs finish, exit 0.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    if (absl::Status reloaded = reload(); !reloaded.ok()) Log(LogLevel::kError, reloaded.message());
  }
  watcher.reset();
  Log(LogLevel::kInfo, absl::StrCat("signal ", sig, ": draining (grace ", absl::FormatDuration(absl::GetFlag(FLAGS_shutdown_grace)), ")"));
  (*server)->SetNotServing();
  ops_state.serving = false;
  if (absl::GetFlag(FLAGS_drain_refuse_connections)) {
    const int closed = (*server)->StopListening();
    Log(closed > 0 ? LogLevel::kInfo : LogLevel::kWarning, "draining: new connections refused",
        LogFields().Add("listening_sockets_closed", static_cast<int64_t>(closed)));
  }
  absl::SleepFor(absl::GetFlag(FLAGS_drain_delay));  // still serving: balancers move traffic away
  (*server)->Shutdown(absl::GetFlag(FLAGS_shutdown_grace));
  const TcpListener::Stats connections = (*server)->ConnectionStats();
  Log(LogLevel::kInfo, "server shut down",
      LogFields()
          .Add("connections_accepted", connections.accepted)
          .Add("connections_shed_at_max_connections", connections.shed_at_cap)
          .Add("connections_shed_at_open_files_limit", connections.shed_at_descriptor_limit));
  if ((*core)->certificates != nullptr) (*core)->certificates->Stop();  // no health update after this
  server->reset();
  if (metrics != nullptr) metrics->SetStatsSource({});  // a scrape must not read the core being destroyed
  core->reset();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace palmgate

int main(int argc, char** argv) {
  // Block the stop signals in every thread (gRPC's and libcurl's included); main waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detector on: a lock-order graph update on every lock (~1 % of CPU under
  // load, profiled). The test builds keep it (they never call this).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  absl::SetProgramUsageMessage("palmgate: gRPC gateway for WeChat Pay palm-scan authorization (see README.md)");
  if (!palmgate::ApplyEnvironment()) return 2;
  absl::ParseCommandLine(argc, argv);
  return palmgate::Run();
}
