#include "tests/testing/sandbox_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/common/file_util.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"

namespace palmgate::testing {
namespace {

absl::StatusOr<std::string> MakeTempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/palmgate-sandbox-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  return pattern;
}

// fork/exec `argv` with stdout to `stdout_fd` (or inherited when -1).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, int stdout_fd, int close_fd) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);
    if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
    if (stdout_fd >= 0 && stdout_fd != STDOUT_FILENO) ::close(stdout_fd);
    if (close_fd >= 0) ::close(close_fd);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

absl::StatusOr<int> WaitExit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return absl::InternalError(absl::StrCat("palmgate-sandbox died from signal ", WTERMSIG(status)));
}

}  // namespace

std::string SandboxBinaryPath() { return PALMGATE_SANDBOX_BINARY; }

absl::StatusOr<int> RunSandboxCommand(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SandboxBinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<pid_t> pid = Spawn(argv, -1, -1);
  if (!pid.ok()) return pid.status();
  return WaitExit(*pid);
}

absl::Status RunSandboxKeygen(const std::string& dir, const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {"keygen", "--out", dir};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  absl::StatusOr<int> code = RunSandboxCommand(args);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("palmgate-sandbox keygen exited with ", *code));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SandboxProcess>> SandboxProcess::Start(const SandboxProcessOptions& options) {
  std::unique_ptr<SandboxProcess> p(new SandboxProcess());
  const bool need_temp = options.keys_dir.empty() || !options.seed_json.empty();
  if (need_temp) {
    absl::StatusOr<std::string> dir = MakeTempDir();
    if (!dir.ok()) return dir.status();
    p->temp_dir_ = *dir;
  }
  if (options.keys_dir.empty()) {
    p->keys_dir_ = p->temp_dir_ + "/keys";
    std::vector<std::string> extra;
    if (!options.mchid.empty()) extra = {"--mchid", options.mchid};
    absl::Status s = RunSandboxKeygen(p->keys_dir_, extra);
    if (!s.ok()) return s;
  } else {
    p->keys_dir_ = options.keys_dir;
  }

  std::vector<std::string> args = {options.binary.empty() ? SandboxBinaryPath() : options.binary,
                                   "serve",
                                   "--keys",
                                   p->keys_dir_,
                                   "--listen",
                                   "127.0.0.1:0",
                                   absl::StrCat("--threads=", options.threads),
                                   absl::StrCat("--access_log=", options.access_log ? "true" : "false")};
  if (options.tls) args.push_back("--tls");
  if (options.faults) args.push_back("--faults");
  if (options.public_key_only) args.push_back("--public_key_only");
  if (!options.seed_json.empty()) {
    const std::string seed_path = p->temp_dir_ + "/seed.json";
    absl::Status s = WriteFile(seed_path, options.seed_json);
    if (!s.ok()) return s;
    args.push_back("--seed");
    args.push_back(seed_path);
  }
  args.insert(args.end(), options.extra_flags.begin(), options.extra_flags.end());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  absl::StatusOr<pid_t> pid = Spawn(args, fds[1], fds[0]);
  ::close(fds[1]);
  if (!pid.ok()) {
    ::close(fds[0]);
    return pid.status();
  }
  p->pid_ = *pid;
  p->stdout_fd_ = fds[0];

  // Read the handshake line with a deadline.
  std::string line;
  const absl::Time deadline = absl::Now() + options.startup_timeout;
  while (line.find('\n') == std::string::npos) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("palmgate-sandbox did not print LISTENING within the startup timeout: ", absl::StrJoin(args, " ")));
    }
    pollfd pfd = {p->stdout_fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (rc < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (rc <= 0) continue;
    char buf[512];
    ssize_t n = ::read(p->stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::StatusOr<int> code = WaitExit(p->pid_);
      p->pid_ = -1;
      return absl::InternalError(absl::StrCat("palmgate-sandbox exited before LISTENING (",
                                              code.ok() ? absl::StrCat("exit ", *code) : code.status().ToString(),
                                              "): ", absl::StrJoin(args, " ")));
    }
    line.append(buf, static_cast<size_t>(n));
  }
  absl::string_view first(line.data(), line.find('\n'));
  if (!absl::ConsumePrefix(&first, "LISTENING ")) {
    return absl::InternalError(absl::StrCat("unexpected sandbox handshake: ", first));
  }
  p->base_url_ = std::string(first);
  return p;
}

absl::StatusOr<int> SandboxProcess::Stop() {
  if (pid_ < 0) return absl::FailedPreconditionError("not running");
  ::kill(pid_, SIGTERM);
  absl::StatusOr<int> code = WaitExit(pid_);
  pid_ = -1;
  return code;
}

SandboxProcess::~SandboxProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    (void)WaitExit(pid_);
  }
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  if (!temp_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
  }
}

// SandboxMerchant

absl::StatusOr<SandboxMerchant> SandboxMerchant::Load(const std::string& keys_dir) {
  auto read = [&](const char* name) { return ReadFile(absl::StrCat(keys_dir, "/", name)); };
  absl::StatusOr<std::string> info_text = read("sandbox.json");
  if (!info_text.ok()) return info_text.status();
  nlohmann::json info = nlohmann::json::parse(*info_text, nullptr, false);
  if (info.is_discarded() || !info.is_object()) return absl::InvalidArgumentError("sandbox.json");
  auto field = [&](const char* k) { return info.value(k, std::string()); };
  absl::StatusOr<std::string> key_pem = read("apiclient_key.pem");
  absl::StatusOr<std::string> platform_pem = read("platform_cert.pem");
  absl::StatusOr<std::string> pub_pem = read("pub_key.pem");
  absl::StatusOr<std::string> apiv3 = read("apiv3_key.txt");
  for (const auto* s : {&key_pem, &platform_pem, &pub_pem, &apiv3}) {
    if (!s->ok()) return s->status();
  }
  absl::StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::FromPem(*key_pem);
  absl::StatusOr<crypto::Certificate> platform = crypto::Certificate::FromPem(*platform_pem);
  absl::StatusOr<crypto::RsaPublicKey> pub = crypto::RsaPublicKey::FromPem(*pub_pem);
  if (!key.ok()) return key.status();
  if (!platform.ok()) return platform.status();
  if (!pub.ok()) return pub.status();
  return SandboxMerchant(field("mchid"), field("merchant_serial"), field("platform_serial"), field("public_key_id"),
                         *apiv3, *key, platform->public_key(), *pub);
}

std::string SandboxMerchant::Authorization(const std::string& method, const std::string& target, int64_t timestamp,
                                           const std::string& nonce, const std::string& body) const {
  // Written out independently of sandbox/authorization_parser.cc on purpose.
  const std::string message = method + "\n" + target + "\n" + std::to_string(timestamp) + "\n" + nonce + "\n" +
                              body + "\n";
  absl::StatusOr<std::string> sig = merchant_key_.SignSha256(message);
  return absl::StrCat("WECHATPAY2-SHA256-RSA2048 mchid=\"", mchid_, "\",nonce_str=\"", nonce, "\",timestamp=\"",
                      timestamp, "\",serial_no=\"", merchant_serial_, "\",signature=\"",
                      sig.ok() ? crypto::Base64Encode(*sig) : std::string("signing-failed"), "\"");
}

TestHttpRequest SandboxMerchant::SignedGet(const std::string& target, int64_t timestamp) const {
  if (timestamp == 0) timestamp = absl::ToUnixSeconds(absl::Now());
  TestHttpRequest r;
  r.method = "GET";
  r.target = target;
  r.headers = {{"Accept", "application/json"},
               {"User-Agent", "palmgate-sandbox-test/1.0"},
               {"Authorization", Authorization("GET", target, timestamp, crypto::RandomAlphanumeric(32))}};
  return r;
}

absl::Status SandboxMerchant::VerifyResponse(const TestHttpResponse& response) const {
  auto ts = response.Header("Wechatpay-Timestamp");
  auto nonce = response.Header("Wechatpay-Nonce");
  auto serial = response.Header("Wechatpay-Serial");
  auto signature = response.Header("Wechatpay-Signature");
  if (!ts || !nonce || !serial || !signature) {
    return absl::FailedPreconditionError("response lacks a Wechatpay-* signature header");
  }
  const crypto::RsaPublicKey* key = nullptr;
  if (*serial == public_key_id_) key = &public_key_;
  if (*serial == platform_serial_) key = &platform_key_;
  if (key == nullptr) return absl::FailedPreconditionError(absl::StrCat("unknown Wechatpay-Serial ", *serial));
  absl::StatusOr<std::string> raw = crypto::Base64Decode(*signature);
  if (!raw.ok()) return absl::UnauthenticatedError("signature is not Base64");
  absl::StatusOr<bool> ok = key->VerifySha256(*ts + "\n" + *nonce + "\n" + response.body + "\n", *raw);
  if (!ok.ok()) return ok.status();
  if (!*ok) return absl::UnauthenticatedError("response signature does not verify");
  return absl::OkStatus();
}

}  // namespace palmgate::testing
