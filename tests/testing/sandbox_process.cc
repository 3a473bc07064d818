#include "tests/testing/sandbox_process.h"

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
#include "tests/testing/test_logs.h"

namespace palmgate::testing {

std::string SandboxBinaryPath() { return PALMGATE_SANDBOX_BINARY; }

absl::StatusOr<int> RunSandboxCommand(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SandboxBinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

absl::Status RunSandboxKeygen(const std::string& dir, const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {"keygen", "--out", dir};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  absl::StatusOr<int> code = RunSandboxCommand(args);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("palmgate-sandbox keygen exited with ", *code));
  // Whatever the tests' processes get from this key set must never show up in their logs.
  std::vector<std::string> secrets;
  for (const char* name : {"apiclient_key.pem", "platform_key.pem", "pub_key_private.pem", "ca_key.pem", "tls_key.pem",
                           "apiv3_key.txt"}) {
    secrets.push_back(absl::StrCat(dir, "/", name));
  }
  RecordTestSecretFiles(secrets);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SandboxProcess>> SandboxProcess::Start(const SandboxProcessOptions& options) {
  std::unique_ptr<SandboxProcess> p(new SandboxProcess());
  const bool need_temp = options.keys_dir.empty() || !options.seed_json.empty();
  if (need_temp) {
    absl::StatusOr<std::string> dir = MakeTempDir("palmgate-sandbox");
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

  absl::StatusOr<std::unique_ptr<ListeningProcess>> process = ListeningProcess::Start(args, options.startup_timeout);
  if (!process.ok()) return process.status();
  p->process_ = *std::move(process);
  p->base_url_ = p->process_->address();
  return p;
}

absl::StatusOr<int> SandboxProcess::Stop() {
  if (process_ == nullptr) return absl::FailedPreconditionError("not running");
  absl::StatusOr<int> code = process_->Stop();
  process_.reset();
  return code;
}

pid_t SandboxProcess::pid() const { return process_ != nullptr ? process_->pid() : -1; }

SandboxProcess::~SandboxProcess() {
  process_.reset();  // SIGTERM and reap before the key directory goes
  if (!temp_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
  }
}

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

std::vector<std::string> GatewayEnvironmentFor(const SandboxProcess& sandbox, const SandboxMerchant& merchant) {
  const std::string keys = sandbox.keys_dir();
  return {
      "PALMGATE_LISTEN=127.0.0.1:0",
      "PALMGATE_MCHID=" + merchant.mchid(),
      "PALMGATE_MERCHANT_SERIAL=" + merchant.merchant_serial(),
      "PALMGATE_MERCHANT_PRIVATE_KEY=" + keys + "/apiclient_key.pem",
      "PALMGATE_WECHATPAY_PUBLIC_KEY=" + keys + "/pub_key.pem",
      "PALMGATE_WECHATPAY_PUBLIC_KEY_ID=" + merchant.public_key_id(),
      "PALMGATE_PLATFORM_CERTIFICATES=" + keys + "/platform_cert.pem",
      "PALMGATE_UPSTREAM=" + sandbox.base_url(),
      "PALMGATE_UPSTREAM_CA=" + sandbox.ca_cert_path(),
  };
}

}  // namespace palmgate::testing
