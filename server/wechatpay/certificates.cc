#include "server/wechatpay/certificates.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/common/utf8.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "server/crypto/secret.h"

namespace palmgate::wechatpay {
namespace {

constexpr size_t kMaxCertificates = 64;

absl::StatusOr<std::string> StringField(const nlohmann::json& obj, const char* name, size_t index) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("certificates: data[", index, "].", name, " missing or not a string"));
  }
  return it->get<std::string>();
}

}  // namespace

absl::StatusOr<std::string> DecryptAeadAes256Gcm(absl::string_view apiv3_key, absl::string_view nonce,
                                                 absl::string_view associated_data,
                                                 absl::string_view ciphertext_base64) {
  if (apiv3_key.size() != kApiV3KeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("APIv3 key is ", apiv3_key.size(), " bytes; it must be 32"));
  }
  absl::StatusOr<std::string> ct = crypto::Base64Decode(ciphertext_base64);
  if (!ct.ok()) return absl::InvalidArgumentError("AEAD ciphertext is not standard Base64");
  return crypto::AesGcmOpen(apiv3_key, nonce, associated_data, *ct);
}

absl::StatusOr<std::vector<crypto::Certificate>> ParseCertificatesResponse(absl::string_view body,
                                                                          absl::string_view apiv3_key) {
  nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return absl::InvalidArgumentError("certificates: body is not a JSON object");
  auto data = doc.find("data");
  if (data == doc.end() || !data->is_array()) {
    return absl::InvalidArgumentError("certificates: \"data\" missing or not an array");
  }
  if (data->size() > kMaxCertificates) {
    return absl::InvalidArgumentError(absl::StrCat("certificates: ", data->size(), " entries; at most ", kMaxCertificates));
  }
  std::vector<crypto::Certificate> out;
  for (size_t i = 0; i < data->size(); ++i) {
    const nlohmann::json& entry = (*data)[i];
    if (!entry.is_object()) return absl::InvalidArgumentError(absl::StrCat("certificates: data[", i, "] is not an object"));
    PALMGATE_ASSIGN_OR_RETURN(std::string serial_no, StringField(entry, "serial_no", i));
    auto enc = entry.find("encrypt_certificate");
    if (enc == entry.end() || !enc->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("certificates: data[", i, "].encrypt_certificate missing"));
    }
    PALMGATE_ASSIGN_OR_RETURN(std::string algorithm, StringField(*enc, "algorithm", i));
    if (algorithm != "AEAD_AES_256_GCM") {
      return absl::InvalidArgumentError(absl::StrCat("certificates: data[", i, "] uses unsupported algorithm \"",
                                                     ToBoundedUtf8(algorithm, 40), "\""));
    }
    PALMGATE_ASSIGN_OR_RETURN(std::string nonce, StringField(*enc, "nonce", i));
    PALMGATE_ASSIGN_OR_RETURN(std::string aad, StringField(*enc, "associated_data", i));
    PALMGATE_ASSIGN_OR_RETURN(std::string ciphertext, StringField(*enc, "ciphertext", i));
    absl::StatusOr<std::string> pem = DecryptAeadAes256Gcm(apiv3_key, nonce, aad, ciphertext);
    if (!pem.ok()) {
      return absl::Status(pem.status().code(),
                          absl::StrCat("certificates: data[", i, "] (", ToBoundedUtf8(serial_no, 64), "): ", pem.status().message()));
    }
    absl::StatusOr<crypto::Certificate> cert = crypto::Certificate::FromPem(*pem);
    crypto::WipeString(*pem);  // decrypted under the APIv3 key: no plaintext copy stays in freed memory
    if (!cert.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("certificates: data[", i, "]: ", cert.status().message()));
    }
    if (absl::AsciiStrToUpper(serial_no) != cert->serial()) {
      return absl::InvalidArgumentError(absl::StrCat("certificates: data[", i, "] says serial ", ToBoundedUtf8(serial_no, 64),
                                                     " but the certificate has ", cert->serial()));
    }
    out.push_back(*std::move(cert));
  }
  return out;
}

}  // namespace palmgate::wechatpay
