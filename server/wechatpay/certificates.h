// File: server/wechatpay/certificates.h
//
// Parsing of the `GET /v3/certificates` answer (wechatpay-v3.md 4.1–4.2):
//   {"data":[{"serial_no","effective_time","expire_time",
//             "encrypt_certificate":{"algorithm":"AEAD_AES_256_GCM","nonce",
//                                    "associated_data","ciphertext"}}]}
// Each certificate is decrypted with the APIv3 key (AES-256-GCM, 16-byte tag
// at the end of the Base64 ciphertext) and checked: it parses, it is RSA-2048,
// and its serial equals `serial_no`. The download loop is built on top of this.
//
// The response must already have been validated (ValidateResponse) by the
// caller with a key it holds, except for a download made while it holds no
// usable key (trust on first use), whose trust decision is the certificate
// manager's (certificate_manager.h, TRUST DECISION).
#ifndef PALMGATE_SERVER_WECHATPAY_CERTIFICATES_H_
#define PALMGATE_SERVER_WECHATPAY_CERTIFICATES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/crypto/rsa.h"

namespace palmgate::wechatpay {

inline constexpr size_t kApiV3KeyBytes = 32;

// Decrypts one AEAD_AES_256_GCM envelope. kInvalidArgument for a key that is
// not 32 bytes or a ciphertext that is not Base64; kDataLoss when
// authentication fails.
absl::StatusOr<std::string> DecryptAeadAes256Gcm(absl::string_view apiv3_key, absl::string_view nonce,
                                                 absl::string_view associated_data,
                                                 absl::string_view ciphertext_base64);

// Returns the certificates of a /v3/certificates body, in document order.
// kInvalidArgument for malformed JSON or fields, an unsupported algorithm, or
// a serial mismatch; kDataLoss when decryption fails. One bad entry fails the
// whole document: a partial key set would be silently wrong.
absl::StatusOr<std::vector<crypto::Certificate>> ParseCertificatesResponse(absl::string_view body,
                                                                          absl::string_view apiv3_key);

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_CERTIFICATES_H_
