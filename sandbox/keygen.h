// File: sandbox/keygen.h
//
// Generates and loads the sandbox's key directory: a test CA, the merchant's
// API key and certificate, the WeChat Pay platform key and certificate, the
// WeChat Pay public key (and, sandbox only, its private half), the APIv3 key,
// a TLS server certificate for localhost/127.0.0.1 and sandbox.json:
//
//   ca_cert.pem ca_key.pem apiclient_key.pem apiclient_cert.pem
//   platform_key.pem platform_cert.pem pub_key.pem pub_key_private.pem
//   apiv3_key.txt tls_cert.pem tls_key.pem sandbox.json
//
// sandbox.json: {"mchid","merchant_serial","platform_serial","public_key_id"}.
// Private keys (and the APIv3 key) are written with mode 0600, each through a
// fresh temporary file (WriteFile: O_EXCL, no symlink followed) renamed into
// place. The CA carries critical name constraints (DNS localhost, IP
// 127.0.0.1 and ::1): a certificate minted with ca_key.pem for any other name
// does not verify, so trusting ca_cert.pem trusts nothing beyond the sandbox.
//
// Thread safety: free functions without shared state.
#ifndef PALMGATE_SANDBOX_KEYGEN_H_
#define PALMGATE_SANDBOX_KEYGEN_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/crypto/rsa.h"

namespace palmgate::sandbox {

inline constexpr char kDefaultMchid[] = "1900000001";

struct KeygenOptions {
  std::string out_dir;
  std::string mchid = kDefaultMchid;
  bool force = false;        // overwrite an existing sandbox.json
  absl::Time now = absl::Now();
};

// Writes a complete, consistent key set into `options.out_dir` (created if
// needed). kAlreadyExists when sandbox.json exists and !force.
absl::Status GenerateKeys(const KeygenOptions& options);

// Everything the server needs, loaded and cross-checked from a key directory.
struct SandboxKeys {
  std::string dir;
  std::string mchid;
  std::string merchant_serial;
  crypto::RsaPublicKey merchant_public_key;  // from apiclient_cert.pem
  crypto::Certificate platform_cert;
  crypto::RsaPrivateKey platform_key;
  std::string public_key_id;
  crypto::RsaPublicKey public_key;
  crypto::RsaPrivateKey public_key_private;
  std::string apiv3_key;
  std::string tls_cert_path;
  std::string tls_key_path;
};

// Loads `dir`. kInvalidArgument/kNotFound naming the file when something is
// missing or inconsistent (a key that does not match its certificate, a serial
// that differs from sandbox.json, an APIv3 key that is not 32 bytes).
absl::StatusOr<SandboxKeys> LoadKeys(const std::string& dir);

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_KEYGEN_H_
