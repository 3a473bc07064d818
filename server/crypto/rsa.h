// File: server/crypto/rsa.h
//
// RSA-2048 keys and SHA256withRSA (RSASSA-PKCS1-v1_5 with SHA-256), the only
// signature scheme of WeChat Pay APIv3 (wechatpay-v3.md section 2.3), plus the
// X.509 certificate fields palmgate needs (serial, validity, public key).
//
// These are low-level primitives: they know nothing of WeChat Pay's message
// formats, so both the gateway and the sandbox may use them.
//
// Example:
//   PALMGATE_ASSIGN_OR_RETURN(RsaPrivateKey key, RsaPrivateKey::FromPem(pem));
//   PALMGATE_ASSIGN_OR_RETURN(std::string sig, key.SignSha256("message"));
#ifndef PALMGATE_SERVER_CRYPTO_RSA_H_
#define PALMGATE_SERVER_CRYPTO_RSA_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/crypto/ssl_ptr.h"

namespace palmgate::crypto {

// RsaPublicKey
//
// An immutable RSA-2048 public key. Copies share the underlying key; all
// methods are const and safe to call from any number of threads.
class RsaPublicKey {
 public:
  // Parses a PEM public key: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`, the form
  // of a WeChat Pay public key) or PKCS#1 (`BEGIN RSA PUBLIC KEY`), exactly one,
  // in strict PEM armor (DecodePem in server/crypto/pem.h, at most 1 KiB of DER).
  // kInvalidArgument if it is not a PEM public key, or not RSA-2048.
  static absl::StatusOr<RsaPublicKey> FromPem(absl::string_view pem);

  // Returns true when `signature` (raw bytes) is a valid SHA256withRSA
  // signature of `message`; false for any mismatch, including a signature of
  // the wrong length. Errors only when OpenSSL itself fails.
  absl::StatusOr<bool> VerifySha256(absl::string_view message, absl::string_view signature) const;

  // Returns the key as a SubjectPublicKeyInfo PEM.
  std::string ToPem() const;

  // True when both hold the same modulus and exponent.
  bool Equals(const RsaPublicKey& other) const;

  EVP_PKEY* get() const { return key_.get(); }

 private:
  explicit RsaPublicKey(std::shared_ptr<EVP_PKEY> key);
  friend class RsaPrivateKey;
  friend class Certificate;
  std::shared_ptr<EVP_PKEY> key_;
  std::shared_ptr<const EVP_MD_CTX> verify_template_;  // see InitDigestContext in rsa.cc; may be null
};

// RsaPrivateKey
//
// An immutable RSA-2048 private key. Copies share the key; signing is
// thread-safe.
class RsaPrivateKey {
 public:
  // Parses a PEM private key: PKCS#8 (the form of WeChat Pay's
  // apiclient_key.pem) or PKCS#1 (the traditional "RSA" PEM label).
  // kInvalidArgument when the text holds no private key, when the key is not
  // RSA, or when its modulus is not 2048 bits. Messages never include key bytes.
  // The text must hold exactly one such key, in strict PEM armor (DecodePem in
  // server/crypto/pem.h: canonical base64, no headers, at most 4 KiB of DER).
  // The key's parts must form a key pair (CheckConsistency).
  static absl::StatusOr<RsaPrivateKey> FromPem(absl::string_view pem);

  // FromPem without CheckConsistency, a private-key operation (~5 ms, ~40 ms
  // under ASan). For the fuzz target, which checks each distinct key it parses
  // once; code that signs with the key uses FromPem.
  static absl::StatusOr<RsaPrivateKey> ParsePemWithoutConsistencyCheck(absl::string_view pem);

  // kInvalidArgument unless the key's parts belong together (n = p*q, d
  // inverts e: OpenSSL's pairwise check).
  absl::Status CheckConsistency() const;

  // Generates a fresh RSA-2048 key (for test keys and the sandbox's key generator).
  static absl::StatusOr<RsaPrivateKey> Generate();

  // Returns the raw 256-byte SHA256withRSA signature of `message`.
  absl::StatusOr<std::string> SignSha256(absl::string_view message) const;

  // Returns the public half.
  RsaPublicKey PublicKey() const;

  // Returns the key as an unencrypted PKCS#8 PEM.
  std::string ToPkcs8Pem() const;

  EVP_PKEY* get() const { return key_.get(); }

 private:
  explicit RsaPrivateKey(std::shared_ptr<EVP_PKEY> key);
  std::shared_ptr<EVP_PKEY> key_;
  std::shared_ptr<const EVP_MD_CTX> sign_template_;  // see InitDigestContext in rsa.cc; may be null
};

// Certificate
//
// The parts of an X.509 certificate that palmgate uses. Immutable.
class Certificate {
 public:
  // Parses one PEM certificate. The public key must be RSA-2048.
  static absl::StatusOr<Certificate> FromPem(absl::string_view pem);

  // Serial number as upper-case hexadecimal without leading zeros beyond whole
  // bytes, the spelling WeChat Pay uses (e.g. "5157F09EFDC096DE15EBE81A47057A7232F1B8E1").
  const std::string& serial() const { return serial_; }
  absl::Time not_before() const { return not_before_; }
  absl::Time not_after() const { return not_after_; }
  const RsaPublicKey& public_key() const { return public_key_; }
  // Subject as a one-line string (e.g. "CN=Tenpay.com sign,O=Tenpay.com").
  const std::string& subject() const { return subject_; }
  // True when the certificate says it may sign other certificates (basicConstraints CA).
  bool is_ca() const { return is_ca_; }
  const std::string& pem() const { return pem_; }

 private:
  Certificate(std::string serial, absl::Time not_before, absl::Time not_after,
              RsaPublicKey public_key, std::string subject, bool is_ca, std::string pem)
      : serial_(std::move(serial)), not_before_(not_before), not_after_(not_after),
        public_key_(std::move(public_key)), subject_(std::move(subject)), is_ca_(is_ca),
        pem_(std::move(pem)) {}
  std::string serial_;
  absl::Time not_before_;
  absl::Time not_after_;
  RsaPublicKey public_key_;
  std::string subject_;
  bool is_ca_;
  std::string pem_;
};

// Options for IssueCertificate.
struct CertificateSpec {
  std::string common_name;
  std::string organization = "palmgate sandbox";
  std::string serial_hex;  // upper-case hex; random 20 bytes when empty
  absl::Time not_before;
  absl::Time not_after;
  bool is_ca = false;
  std::string dns_name;    // subjectAltName DNS entry, when not empty
  std::string ip_address;  // subjectAltName IP entry, when not empty
  // CA only: a critical NameConstraints extension whose permitted subtrees are
  // these, in OpenSSL's syntax ("DNS:localhost", "IP:127.0.0.1/255.255.255.255").
  // A verifier then refuses any certificate below this CA naming another host.
  std::vector<std::string> permitted_names;
};

// Issues an X.509 v3 certificate for `subject_key`, signed (SHA-256) by
// `issuer_key`. When `issuer` is null the certificate is self-signed. Used by
// the sandbox's key generator and by tests; returns the PEM.
absl::StatusOr<std::string> IssueCertificate(const CertificateSpec& spec,
                                             const RsaPublicKey& subject_key,
                                             const RsaPrivateKey& issuer_key,
                                             const Certificate* issuer);

}  // namespace palmgate::crypto

#endif  // PALMGATE_SERVER_CRYPTO_RSA_H_
