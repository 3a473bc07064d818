#include "sandbox/certificates.h"

#include <nlohmann/json.hpp>

#include "server/common/status_macros.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"

namespace palmgate::sandbox {

std::string FormatRfc3339Cst(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%S+08:00", t, absl::FixedTimeZone(8 * 3600));
}

absl::StatusOr<std::string> BuildCertificatesBody(const std::vector<crypto::Certificate>& certs,
                                                  absl::string_view apiv3_key) {
  if (apiv3_key.size() != 32) return absl::InvalidArgumentError("the APIv3 key must be 32 bytes");
  nlohmann::ordered_json data = nlohmann::ordered_json::array();
  for (const crypto::Certificate& cert : certs) {
    const std::string nonce = crypto::RandomAlphanumeric(12);
    PALMGATE_ASSIGN_OR_RETURN(std::string sealed, crypto::AesGcmSeal(apiv3_key, nonce, "certificate", cert.pem()));
    data.push_back({{"serial_no", cert.serial()},
                    {"effective_time", FormatRfc3339Cst(cert.not_before())},
                    {"expire_time", FormatRfc3339Cst(cert.not_after())},
                    {"encrypt_certificate",
                     {{"algorithm", "AEAD_AES_256_GCM"},
                      {"nonce", nonce},
                      {"associated_data", "certificate"},
                      {"ciphertext", crypto::Base64Encode(sealed)}}}});
  }
  nlohmann::ordered_json body = {{"data", std::move(data)}};
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace palmgate::sandbox
