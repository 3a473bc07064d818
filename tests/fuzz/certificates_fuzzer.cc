// Fuzz target: the /v3/certificates document and its decryption
// (ParseCertificatesResponse, DecryptAeadAes256Gcm, Certificate::FromPem of
// the decrypted text).
//
// Input, by its first byte:
//   'D' + a /v3/certificates body, parsed with the APIv3 key of
//       wechatpay-java's vector (its encrypted entries decrypt);
//   'S' + entries separated by "\n%%\n", each "serial_no\nnonce\nassociated_data\nPLAINTEXT":
//       this target seals each plaintext with the APIv3 key and builds the
//       document, so that the fuzzer reaches the certificate parsing and the
//       serial comparison behind the AEAD tag.
//
// Invariants:
//   - every certificate returned is RSA-2048, has an upper-case hexadecimal
//     serial of whole bytes, and its PEM parses back to the same serial;
//   - in 'S' mode: success returns one certificate per entry, each with the
//     serial its entry names; a document whose every entry holds a certificate
//     that parses alone, under its own serial, is accepted.
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "server/common/utf8.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/wechatpay/certificates.h"
#include "tests/fuzz/fuzz_util.h"

namespace palmgate::fuzz {
namespace {

bool IsSerialSpelling(absl::string_view s) {
  if (s.empty() || s.size() % 2 != 0) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && !(c >= 'A' && c <= 'F')) return false;
  }
  return true;
}

void CheckCertificate(const crypto::Certificate& cert) {
  PALMGATE_FUZZ_CHECK(IsSerialSpelling(cert.serial()));
  PALMGATE_FUZZ_CHECK(EVP_PKEY_get_base_id(cert.public_key().get()) == EVP_PKEY_RSA);
  PALMGATE_FUZZ_CHECK(EVP_PKEY_get_bits(cert.public_key().get()) == 2048);
  absl::StatusOr<crypto::Certificate> again = crypto::Certificate::FromPem(cert.pem());
  PALMGATE_FUZZ_CHECK(again.ok() && again->serial() == cert.serial());
}

struct Entry {
  std::string serial_no;
  std::string nonce;
  std::string aad;
  std::string plaintext;
};

}  // namespace
}  // namespace palmgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return -1;
  const char mode = in[0];
  in.remove_prefix(1);

  if (mode == 'D') {
    absl::StatusOr<std::vector<crypto::Certificate>> certs = wechatpay::ParseCertificatesResponse(in, kApiV3Key);
    if (!certs.ok()) {
      PALMGATE_FUZZ_CHECK(certs.status().code() == absl::StatusCode::kInvalidArgument ||
                          certs.status().code() == absl::StatusCode::kDataLoss);
      return 0;
    }
    for (const crypto::Certificate& c : *certs) CheckCertificate(c);
    return 0;
  }
  if (mode != 'S') return -1;

  std::vector<Entry> entries;
  for (absl::string_view part : absl::StrSplit(in, "\n%%\n")) {
    std::vector<absl::string_view> f = absl::StrSplit(part, absl::MaxSplits('\n', 3));
    if (f.size() != 4) return -1;
    entries.push_back({std::string(f[0]), std::string(f[1]), std::string(f[2]), std::string(f[3])});
  }
  nlohmann::json doc = {{"data", nlohmann::json::array()}};
  bool all_good = entries.size() <= 64;
  for (const Entry& e : entries) {
    absl::StatusOr<std::string> sealed = crypto::AesGcmSeal(kApiV3Key, e.nonce, e.aad, e.plaintext);
    if (!sealed.ok()) return -1;  // empty nonce: nothing to build
    // nlohmann-json refuses to dump invalid UTF-8 (it would throw): keep to what a real body can hold.
    if (!IsValidUtf8(e.serial_no) || !IsValidUtf8(e.nonce) || !IsValidUtf8(e.aad)) return -1;
    doc["data"].push_back({{"serial_no", e.serial_no},
                           {"effective_time", "2024-01-01T00:00:00+08:00"},
                           {"expire_time", "2029-01-01T00:00:00+08:00"},
                           {"encrypt_certificate",
                            {{"algorithm", "AEAD_AES_256_GCM"},
                             {"nonce", e.nonce},
                             {"associated_data", e.aad},
                             {"ciphertext", crypto::Base64Encode(*sealed)}}}});
    absl::StatusOr<crypto::Certificate> alone = crypto::Certificate::FromPem(e.plaintext);
    all_good = all_good && alone.ok() && alone->serial() == absl::AsciiStrToUpper(e.serial_no);
  }
  absl::StatusOr<std::vector<crypto::Certificate>> certs = wechatpay::ParseCertificatesResponse(doc.dump(), kApiV3Key);
  if (all_good) PALMGATE_FUZZ_CHECK(certs.ok());
  if (!certs.ok()) return 0;
  PALMGATE_FUZZ_CHECK(certs->size() == entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    CheckCertificate((*certs)[i]);
    PALMGATE_FUZZ_CHECK((*certs)[i].serial() == absl::AsciiStrToUpper(entries[i].serial_no));
  }
  return 0;
}
