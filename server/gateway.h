// File: server/gateway.h
//
// GatewayConfig and LoadGateway: everything the palmgate binary runs on,
// loaded from files and checked before the server starts, so that a missing
// or inconsistent setting stops start-up with one clear line naming the
// setting (a merchant certificate given where a platform certificate is
// needed, a key that does not match its certificate, no verification key…).
#ifndef PALMGATE_SERVER_GATEWAY_H_
#define PALMGATE_SERVER_GATEWAY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/crypto/secret.h"
#include "server/wechatpay/certificate_manager.h"
#include "server/wechatpay/curl_transport.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/palm_service_client.h"

namespace palmgate {

struct GatewayConfig {
  std::string mchid;
  std::string merchant_serial;
  std::string merchant_private_key;   // PEM file (PKCS#8 or PKCS#1)
  std::string merchant_certificate;   // optional PEM file: checked against the key and serial
  std::string wechatpay_public_key;   // PEM file (SPKI)
  std::string wechatpay_public_key_id;
  std::vector<std::string> platform_certificates;  // PEM files
  // https://, or http:// for a loopback host only (127.0.0.0/8, [::1], localhost: net_util.h)
  // unless allow_insecure_upstream. The same rule holds for upstream_backup.
  std::string upstream = std::string(wechatpay::kProductionBaseUrl);
  // Allows http:// to any host (requests and answers, openids included, then cross the network in clear text).
  bool allow_insecure_upstream = false;
  // "auto": WeChat Pay's backup host when `upstream` is the production host, else none;
  // "" or "none": no failover.
  std::string upstream_backup = "auto";
  int upstream_attempts = 3;
  absl::Duration upstream_attempt_timeout = absl::ZeroDuration();  // zero: upstream_timeout, or half of it with a backup
  absl::Duration upstream_max_idle = absl::Seconds(7);             // below WeChat Pay's 8 s keep-alive
  int upstream_max_connections = 512;                               // open at once; 0: no limit
  std::string upstream_ca;            // PEM bundle; empty: system CAs
  // Proxy URL; empty: HTTPS_PROXY/NO_PROXY from the environment. A URL holding
  // credentials ("user:password@") is refused, here and in the environment's
  // proxy variables: the command line is readable by every local user
  // (/proc/PID/cmdline). They go in proxy_credentials_file.
  std::string proxy;
  // Optional file: one line "user:password" (the first ':' splits; a trailing
  // newline is ignored), the proxy's Basic credentials. Read like the key files
  // (regular file, kept in wiped memory), at start only.
  std::string proxy_credentials_file;
  absl::Duration upstream_timeout = absl::Seconds(10);
  absl::Duration clock_skew = absl::Seconds(300);
  // Identical concurrent queries (same openid and organization_id) share one upstream call.
  bool coalesce = true;
  // Platform certificate auto-management (certificate_manager.h): on when set.
  std::string apiv3_key_file;         // file holding the 32-byte APIv3 key
  absl::Duration certificate_refresh_interval = absl::Hours(11);  // ± min(30 min, interval/10); < 12 h
  absl::Duration certificate_refresh_min_interval = absl::Seconds(30);  // unknown-serial refreshes
  // Optional: wraps the upstream transport (e.g. ops::ObservedTransport for metrics);
  // the client and the certificate manager then send through the wrapper.
  std::function<std::unique_ptr<wechatpay::HttpTransport>(wechatpay::HttpTransport*)> wrap_transport;
};

// The loaded gateway core. Shut the gRPC server down first.
struct GatewayCore {
  // The transport goes first: it cancels what is still in flight and runs
  // those callbacks while the client and keys still exist.
  // The certificate manager stops before that (its timer must not send on a
  // transport that is going away).
  ~GatewayCore() {
    if (certificates != nullptr) certificates->Stop();
    transport.reset();
  }

  // Destroyed last: callbacks the transport runs at its shutdown pass through it.
  std::unique_ptr<wechatpay::HttpTransport> wrapped_transport;
  std::unique_ptr<wechatpay::CurlTransport> transport;
  std::unique_ptr<wechatpay::SwappableKeyStore> keys;
  std::unique_ptr<wechatpay::PalmServiceClient> client;
  // Set when --apiv3_key_file is: downloads and refreshes platform certificates into `keys`.
  std::unique_ptr<wechatpay::PlatformCertificateManager> certificates;
};

// The key files' contents: everything a key reload replaces.
struct KeyMaterial {
  std::shared_ptr<const wechatpay::Credential> credential;
  wechatpay::StaticVerificationKeys static_keys;          // configured public key and pinned certificates
  std::shared_ptr<const wechatpay::KeyRing> static_ring;  // built from static_keys; null when there are none
  crypto::SecretString apiv3_key;                         // empty without --apiv3_key_file; wiped when freed
};

// Reads and checks the merchant key (and certificate), the WeChat Pay public
// key, the pinned platform certificates and the APIv3 key. Errors name the flag.
absl::StatusOr<KeyMaterial> LoadKeyMaterial(const GatewayConfig& config, const Clock& clock);

// Reloads every key file without a restart (SIGHUP, or a changed file): the
// merchant private key and credential, the verification keys, the APIv3 key.
// On any error nothing changes and the running keys stay in use.
absl::Status ReloadKeys(const GatewayConfig& config, GatewayCore& core, const Clock& clock);

// Loads keys and certificates and builds the core. Errors are
// kInvalidArgument / kNotFound whose message starts with the flag name, e.g.
// "--platform_certificates: /k/apiclient_cert.pem is the merchant's own API
// certificate (serial = --merchant_serial); a WeChat Pay platform certificate is needed".
absl::StatusOr<std::unique_ptr<GatewayCore>> LoadGateway(const GatewayConfig& config, const Clock& clock);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_GATEWAY_H_
