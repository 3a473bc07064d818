// File: tests/testing/sandbox_process.h
//
// Runs a real palmgate-sandbox process for integration tests: generates keys
// (`palmgate-sandbox keygen`) into a fresh temporary directory (or reuses a
// given one), fork/execs `palmgate-sandbox serve` on 127.0.0.1 port 0, and
// waits (poll with a timeout, no sleeps) for its "LISTENING <url>" line on
// stdout. The destructor sends SIGTERM and reaps the child; a fresh key
// directory is removed. The child gets PR_SET_PDEATHSIG(SIGTERM), so a
// crashed test never leaves a sandbox behind; note that Linux sends it when the
// *thread* that called Start() exits, so call Start() from a thread that
// outlives the sandbox (e.g. the test's main thread, SetUpTestSuite).
// Child stderr goes to the test's stderr.
//
// Also: SandboxMerchant, which signs requests with the key directory's
// merchant key (apiclient_key.pem) and verifies signed responses with the
// platform certificate or the WeChat Pay public key.
//
// Example:
//   SandboxProcessOptions options;
//   options.faults = true;
//   options.seed_json = R"({"users":[{"openid":"o1","organization_id":"1004",
//                                     "state":"AUTHORIZATION_STATE_ON"}]})";
//   PALMGATE_ASSERT_OK_AND_ASSIGN(auto sandbox, SandboxProcess::Start(options));
//   PALMGATE_ASSERT_OK_AND_ASSIGN(auto merchant, SandboxMerchant::Load(sandbox->keys_dir()));
//   auto response = HttpFetch(sandbox->base_url(),
//       merchant.SignedGet("/v3/palmservice/authorization/openid/o1?organization_id=1004"),
//       sandbox->ca_cert_path());
//   EXPECT_THAT(merchant.VerifyResponse(*response), IsOk());
//
// Thread safety: not thread-safe; one owner per instance.
#ifndef PALMGATE_TESTS_TESTING_SANDBOX_PROCESS_H_
#define PALMGATE_TESTS_TESTING_SANDBOX_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/crypto/rsa.h"
#include "tests/testing/child_process.h"
#include "tests/testing/http_test_client.h"

namespace palmgate::testing {

// Path of the palmgate-sandbox binary this build produced.
std::string SandboxBinaryPath();

struct SandboxProcessOptions {
  std::string keys_dir;        // reuse these keys; empty: keygen into a fresh temp dir
  std::string mchid;           // keygen --mchid (default 1900000001)
  bool tls = false;            // serve --tls
  bool faults = false;         // serve --faults
  bool public_key_only = false;
  std::string seed_json;       // when set, written to a temp file and passed as --seed
  int threads = 2;
  std::vector<std::string> extra_flags;  // e.g. {"--latency_ms=100"}
  bool access_log = false;     // the sandbox's per-request stderr lines
  absl::Duration startup_timeout = absl::Seconds(30);
  std::string binary;          // default: SandboxBinaryPath()
};

class SandboxProcess {
 public:
  static absl::StatusOr<std::unique_ptr<SandboxProcess>> Start(const SandboxProcessOptions& options);
  ~SandboxProcess();

  SandboxProcess(const SandboxProcess&) = delete;
  SandboxProcess& operator=(const SandboxProcess&) = delete;

  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  const std::string& base_url() const { return base_url_; }
  const std::string& keys_dir() const { return keys_dir_; }
  // keys_dir()/ca_cert.pem: the CA that issued the TLS certificate.
  std::string ca_cert_path() const { return keys_dir_ + "/ca_cert.pem"; }
  pid_t pid() const;

  // Sends SIGTERM and waits; returns the exit status (0 for a clean stop),
  // or kInternal if it died from a signal.
  absl::StatusOr<int> Stop();

 private:
  SandboxProcess() = default;

  std::unique_ptr<ListeningProcess> process_;
  std::string base_url_;
  std::string keys_dir_;
  std::string temp_dir_;  // removed in the destructor when not empty
};

// Runs `palmgate-sandbox keygen --out dir` (plus `extra_args`) and waits.
absl::Status RunSandboxKeygen(const std::string& dir, const std::vector<std::string>& extra_args = {});

// Runs the sandbox binary with `args` to completion; returns its exit code.
absl::StatusOr<int> RunSandboxCommand(const std::vector<std::string>& args);

// SandboxMerchant
//
// The merchant side of a sandbox key directory. Immutable; thread-safe.
class SandboxMerchant {
 public:
  static absl::StatusOr<SandboxMerchant> Load(const std::string& keys_dir);

  // Authorization header value (GO field order).
  std::string Authorization(const std::string& method, const std::string& target, int64_t timestamp,
                            const std::string& nonce, const std::string& body = "") const;

  // A GET for `target` with Accept, User-Agent and a fresh Authorization
  // (current time, or `timestamp` when non-zero).
  TestHttpRequest SignedGet(const std::string& target, int64_t timestamp = 0) const;

  // Verifies a signed response: the four Wechatpay-* headers present, the
  // serial is the platform certificate's or the public key id, the signature
  // valid over "TS\nNONCE\nBODY\n". kFailedPrecondition / kUnauthenticated otherwise.
  absl::Status VerifyResponse(const TestHttpResponse& response) const;

  const std::string& mchid() const { return mchid_; }
  const std::string& merchant_serial() const { return merchant_serial_; }
  const std::string& platform_serial() const { return platform_serial_; }
  const std::string& public_key_id() const { return public_key_id_; }
  const std::string& apiv3_key() const { return apiv3_key_; }
  const crypto::RsaPrivateKey& merchant_key() const { return merchant_key_; }

 private:
  SandboxMerchant(std::string mchid, std::string merchant_serial, std::string platform_serial,
                  std::string public_key_id, std::string apiv3_key, crypto::RsaPrivateKey merchant_key,
                  crypto::RsaPublicKey platform_key, crypto::RsaPublicKey public_key)
      : mchid_(std::move(mchid)), merchant_serial_(std::move(merchant_serial)),
        platform_serial_(std::move(platform_serial)), public_key_id_(std::move(public_key_id)),
        apiv3_key_(std::move(apiv3_key)), merchant_key_(std::move(merchant_key)),
        platform_key_(std::move(platform_key)), public_key_(std::move(public_key)) {}

  std::string mchid_;
  std::string merchant_serial_;
  std::string platform_serial_;
  std::string public_key_id_;
  std::string apiv3_key_;
  crypto::RsaPrivateKey merchant_key_;
  crypto::RsaPublicKey platform_key_;
  crypto::RsaPublicKey public_key_;
};

// Returns the PALMGATE_* environment ("NAME=value") that points a palmgate
// binary at `sandbox`: listen on 127.0.0.1:0, the merchant key, the WeChat Pay
// public key and the platform certificate of its key directory, its URL and CA.
std::vector<std::string> GatewayEnvironmentFor(const SandboxProcess& sandbox, const SandboxMerchant& merchant);

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_SANDBOX_PROCESS_H_
