#include "server/ops/server_credentials.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "server/common/file_util.h"
#include "server/crypto/secret.h"

namespace palmgate::ops {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> Bio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::Status CheckFiles(const ServerTlsFiles& files) {
  absl::StatusOr<std::string> cert_pem = ReadFile(files.cert);
  if (!cert_pem.ok()) return Bad("tls_cert", cert_pem.status().message());
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(Bio(*cert_pem).get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return Bad("tls_cert", absl::StrCat(files.cert, " holds no PEM certificate"));
  absl::StatusOr<crypto::SecretString> key_pem = crypto::ReadSecretFile(files.key);  // wiped when it goes
  if (!key_pem.ok()) return Bad("tls_key", key_pem.status().message());
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(Bio(key_pem->value()).get(), nullptr, nullptr, nullptr));
  if (key == nullptr) return Bad("tls_key", absl::StrCat(files.key, " holds no PEM private key"));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return Bad("tls_key", "does not belong to the certificate in --tls_cert");
  }
  if (!files.client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadFile(files.client_ca);
    if (!ca_pem.ok()) return Bad("tls_client_ca", ca_pem.status().message());
    std::unique_ptr<X509, X509Free> ca(PEM_read_bio_X509(Bio(*ca_pem).get(), nullptr, nullptr, nullptr));
    if (ca == nullptr) return Bad("tls_client_ca", absl::StrCat(files.client_ca, " holds no PEM certificate"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const ServerTlsFiles& files) {
  if (files.cert.empty() && files.key.empty()) {
    if (!files.client_ca.empty()) return Bad("tls_client_ca", "needs --tls_cert and --tls_key");
    return grpc::InsecureServerCredentials();
  }
  if (files.cert.empty()) return Bad("tls_cert", "required with --tls_key");
  if (files.key.empty()) return Bad("tls_key", "required with --tls_cert");
  if (files.reload_interval < absl::Seconds(1)) return Bad("tls_reload_interval", "must be at least 1s");
  absl::Status checked = CheckFiles(files);
  if (!checked.ok()) return checked;

  const auto interval = static_cast<unsigned int>(absl::ToInt64Seconds(files.reload_interval));
  auto provider = files.client_ca.empty()
                      ? std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.key, files.cert, interval)
                      : std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.key, files.cert,
                                                                                             files.client_ca, interval);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (files.client_ca.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::experimental::TlsServerCredentials(options);
  if (creds == nullptr) return Bad("tls_cert", "gRPC refused the TLS settings");
  return creds;
}

}  // namespace palmgate::ops
