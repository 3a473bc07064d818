#include "server/wechatpay/rsa_signer.h"

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/crypto/base64.h"
#include "server/crypto/secret.h"

namespace palmgate::wechatpay {

absl::StatusOr<std::unique_ptr<RsaSha256Signer>> RsaSha256Signer::FromPemFile(const std::string& path) {
  // The PEM copy is wiped when `pem` goes: the key then lives in OpenSSL's memory only.
  PALMGATE_ASSIGN_OR_RETURN(crypto::SecretString pem, crypto::ReadSecretFile(path));
  absl::StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::FromPem(pem.view());
  if (!key.ok()) {
    return absl::Status(key.status().code(), absl::StrCat("\"", path, "\": ", key.status().message()));
  }
  return std::make_unique<RsaSha256Signer>(*std::move(key));
}

absl::StatusOr<std::string> RsaSha256Signer::Sign(absl::string_view message) const {
  PALMGATE_ASSIGN_OR_RETURN(std::string raw, key_.SignSha256(message));
  return crypto::Base64Encode(raw);
}

}  // namespace palmgate::wechatpay
