// File: sandbox/main.cc
//
// palmgate-sandbox: a local WeChat Pay APIv3 simulator.
//
//   palmgate-sandbox keygen --out DIR [--mchid 1900000001] [--force]
//   palmgate-sandbox serve --keys DIR [--listen 127.0.0.1:0] [--tls] [--seed FILE]
//       [--faults [--fault_rate P] [--fault_kinds SPEC,...]] [--threads N] [--signature_cache_ms N] [--latency_ms N]
//       [--idle_timeout_ms 8000] [--public_key_only] [--clock_offset_s N]
//       [--max_body_log N] [--access_log=false] [--admin_from_any]
//
// `serve` prints exactly one line "LISTENING http://HOST:PORT" (or https://)
// on stdout once bound, HOST being the address really bound (0.0.0.0 when
// listening on every interface), then logs only to stderr; it exits 0 on
// SIGTERM/SIGINT.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "sandbox/handler.h"
#include "sandbox/keygen.h"
#include "sandbox/server.h"
#include "sandbox/store.h"
#include "server/common/clock.h"
#include "server/common/file_util.h"

ABSL_FLAG(std::string, out, "", "keygen: output directory (created if missing)");
ABSL_FLAG(std::string, mchid, palmgate::sandbox::kDefaultMchid, "keygen: merchant id");
ABSL_FLAG(bool, force, false, "keygen: overwrite an existing key set");
ABSL_FLAG(std::string, keys, "", "serve: key directory written by `keygen`");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "serve: HOST:PORT to listen on (port 0 = any free port)");
ABSL_FLAG(bool, tls, false, "serve: HTTPS with tls_cert.pem/tls_key.pem from --keys");
ABSL_FLAG(std::string, seed, "", "serve: seed JSON file with users");
ABSL_FLAG(bool, faults, false, "serve: honour X-Sandbox-Fault headers and seed faults");
ABSL_FLAG(double, fault_rate, 0,
          "serve, with --faults: share (0..1) of palm-authorization requests without a header or seed fault that "
          "get a fault drawn uniformly from --fault_kinds");
ABSL_FLAG(std::vector<std::string>, fault_kinds, {},
          "serve: comma-separated fault specs drawn from under --fault_rate (default: one of every kind, see "
          "sandbox/README.md)");
ABSL_FLAG(int, threads, 0, "serve: I/O threads (0 = hardware concurrency)");
ABSL_FLAG(int64_t, signature_cache_ms, 0, "serve: reuse a response signature (same key and body) for this long");
ABSL_FLAG(int64_t, latency_ms, 0, "serve: latency added to every API response (timer, non-blocking)");
ABSL_FLAG(int64_t, idle_timeout_ms, 8000, "serve: close idle keep-alive connections after this long");
ABSL_FLAG(bool, public_key_only, false,
          "serve: merchant without platform certificates (/v3/certificates is 404; responses signed by the "
          "WeChat Pay public key)");
ABSL_FLAG(int64_t, clock_offset_s, 0, "serve: shift the sandbox clock by this many seconds");
ABSL_FLAG(int64_t, max_body_log, 0, "serve: log up to this many bytes of each response body");
ABSL_FLAG(bool, access_log, true, "serve: log one line per API request on stderr");
ABSL_FLAG(bool, admin_from_any, false,
          "serve: answer the /_sandbox/* admin endpoints (log, reset, certificate rotation) from any client, not "
          "only from loopback addresses");

namespace palmgate::sandbox {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "palmgate-sandbox: %s\n", std::string(status.ToString()).c_str());
  return 1;
}

int Keygen() {
  KeygenOptions options;
  options.out_dir = absl::GetFlag(FLAGS_out);
  options.mchid = absl::GetFlag(FLAGS_mchid);
  options.force = absl::GetFlag(FLAGS_force);
  absl::Status s = GenerateKeys(options);
  if (!s.ok()) return Fail(s);
  std::fprintf(stderr, "palmgate-sandbox: wrote keys for mchid %s to %s\n", options.mchid.c_str(),
               options.out_dir.c_str());
  return 0;
}

int Serve() {
  const std::string dir = absl::GetFlag(FLAGS_keys);
  if (dir.empty()) return Fail(absl::InvalidArgumentError("serve: --keys DIR is required"));
  absl::StatusOr<SandboxKeys> keys = LoadKeys(dir);
  if (!keys.ok()) return Fail(keys.status());
  UserStore users;
  if (const std::string seed = absl::GetFlag(FLAGS_seed); !seed.empty()) {
    absl::StatusOr<std::string> text = ReadFile(seed, 64 << 20);
    if (!text.ok()) return Fail(text.status());
    absl::StatusOr<UserStore> parsed = UserStore::FromJson(*text);
    if (!parsed.ok()) return Fail(parsed.status());
    users = std::move(*parsed);
  }
  const int64_t latency = absl::GetFlag(FLAGS_latency_ms);
  const int64_t cache_ms = absl::GetFlag(FLAGS_signature_cache_ms);
  const int64_t idle_ms = absl::GetFlag(FLAGS_idle_timeout_ms);
  if (latency < 0 || cache_ms < 0 || idle_ms <= 0 || absl::GetFlag(FLAGS_max_body_log) < 0) {
    return Fail(absl::InvalidArgumentError(
        "serve: --latency_ms, --signature_cache_ms, --max_body_log must be >= 0 and --idle_timeout_ms > 0"));
  }
  ShiftedClock clock(&SystemClock::Get(), absl::Seconds(absl::GetFlag(FLAGS_clock_offset_s)));
  HandlerOptions handler_options;
  handler_options.faults_enabled = absl::GetFlag(FLAGS_faults);
  handler_options.fault_rate = absl::GetFlag(FLAGS_fault_rate);
  handler_options.random_faults = absl::GetFlag(FLAGS_fault_kinds);
  handler_options.public_key_only = absl::GetFlag(FLAGS_public_key_only);
  handler_options.latency_ms = latency;
  handler_options.signature_cache_ttl = absl::Milliseconds(cache_ms);
  handler_options.admin_from_any = absl::GetFlag(FLAGS_admin_from_any);
  ServerOptions server_options;
  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.tls = absl::GetFlag(FLAGS_tls);
  server_options.tls_cert_path = keys->tls_cert_path;
  server_options.tls_key_path = keys->tls_key_path;
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  server_options.threads = threads;
  server_options.idle_timeout = absl::Milliseconds(idle_ms);
  server_options.access_log = absl::GetFlag(FLAGS_access_log);
  server_options.max_body_log = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_log));

  absl::StatusOr<std::unique_ptr<Handler>> handler =
      Handler::Create(std::move(*keys), std::move(users), handler_options, &clock);
  if (!handler.ok()) return Fail(handler.status());
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(handler->get(), server_options);
  if (!server.ok()) return Fail(server.status());
  std::fprintf(stderr, "palmgate-sandbox: mchid %s, %d threads, faults %s (random rate %g), public_key_only %s\n",
               (*handler)->keys().mchid.c_str(), threads, handler_options.faults_enabled ? "on" : "off",
               handler_options.fault_rate,
               handler_options.public_key_only ? "on" : "off");
  std::printf("LISTENING %s\n", (*server)->base_url().c_str());
  std::fflush(stdout);
  (*server)->Run();
  std::fprintf(stderr, "palmgate-sandbox: stopped\n");
  return 0;
}

}  // namespace
}  // namespace palmgate::sandbox

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "WeChat Pay APIv3 sandbox.\n"
      "  palmgate-sandbox keygen --out DIR [--mchid 1900000001] [--force]\n"
      "  palmgate-sandbox serve --keys DIR [--listen 127.0.0.1:0] [--tls] [--seed FILE] [--faults] ...");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "usage: %s keygen|serve [flags]  (--help for flags)\n", argv[0]);
    return 2;
  }
  const std::string command = args[1];
  if (command == "keygen") return palmgate::sandbox::Keygen();
  if (command == "serve") return palmgate::sandbox::Serve();
  std::fprintf(stderr, "palmgate-sandbox: unknown command \"%s\" (expected keygen or serve)\n", command.c_str());
  return 2;
}
