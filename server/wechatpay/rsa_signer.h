// File: server/wechatpay/rsa_signer.h
//
// RsaSha256Signer: SHA256withRSA with the merchant's RSA-2048 API key
// (apiclient_key.pem), the signature scheme "WECHATPAY2-SHA256-RSA2048".
#ifndef PALMGATE_SERVER_WECHATPAY_RSA_SIGNER_H_
#define PALMGATE_SERVER_WECHATPAY_RSA_SIGNER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/crypto/rsa.h"
#include "server/wechatpay/signer.h"

namespace palmgate::wechatpay {

// RsaSha256Signer
//
// Immutable and thread-safe.
class RsaSha256Signer final : public Signer {
 public:
  explicit RsaSha256Signer(crypto::RsaPrivateKey key) : key_(std::move(key)) {}

  // Loads the key from a PEM file (PKCS#8 or PKCS#1). Errors name the file,
  // never its contents.
  static absl::StatusOr<std::unique_ptr<RsaSha256Signer>> FromPemFile(const std::string& path);

  // Signer
  absl::StatusOr<std::string> Sign(absl::string_view message) const override;
  absl::string_view Algorithm() const override { return "SHA256-RSA2048"; }

  const crypto::RsaPrivateKey& key() const { return key_; }

  // Signatures made by every RsaSha256Signer of this process (key reloads
  // included) and the thread CPU time they took: RSA signing is most of the
  // gateway's CPU, so this is what capacity planning (and the benchmark's
  // breakdown of CPU per call) needs.
  struct Totals {
    int64_t signatures = 0;
    absl::Duration cpu;
  };
  static Totals ProcessTotals();

 private:
  const crypto::RsaPrivateKey key_;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_RSA_SIGNER_H_
