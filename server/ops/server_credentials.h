// File: server/ops/server_credentials.h
//
// Transport security for palmgate's callers: plain text (loopback, or behind a
// mesh sidecar that does mTLS), TLS, or mTLS (client certificates required and
// verified against --tls_client_ca). Certificate, key and CA files are watched
// and reloaded without a restart (gRPC's FileWatcherCertificateProvider):
// replace them atomically (write + rename, as Kubernetes secret volumes do).
#ifndef PALMGATE_SERVER_OPS_SERVER_CREDENTIALS_H_
#define PALMGATE_SERVER_OPS_SERVER_CREDENTIALS_H_

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace palmgate::ops {

struct ServerTlsFiles {
  std::string cert;       // PEM certificate chain; empty: plain text
  std::string key;        // PEM private key of `cert`
  std::string client_ca;  // PEM CA bundle; set: client certificates are required (mTLS)
  absl::Duration reload_interval = absl::Seconds(10);
};

// Returns the credentials for the listening port. Checks the files once at
// start-up: kInvalidArgument naming the flag when one is missing, unreadable,
// not PEM, or the key does not belong to the certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const ServerTlsFiles& files);

}  // namespace palmgate::ops

#endif  // PALMGATE_SERVER_OPS_SERVER_CREDENTIALS_H_
