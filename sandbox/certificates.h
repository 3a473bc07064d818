// File: sandbox/certificates.h
//
// The body of GET /v3/certificates (wechatpay-v3.md 4.1, 4.2): each platform
// certificate's PEM sealed with AEAD_AES_256_GCM under the APIv3 key, a fresh
// 12-character alphanumeric nonce and associated data "certificate":
//
//   {"data":[{"serial_no":"…","effective_time":"2024-…+08:00","expire_time":"…",
//     "encrypt_certificate":{"algorithm":"AEAD_AES_256_GCM","nonce":"…",
//       "associated_data":"certificate","ciphertext":"Base64(ct||tag)"}}]}
//
// Thread safety: stateless free functions.
#ifndef PALMGATE_SANDBOX_CERTIFICATES_H_
#define PALMGATE_SANDBOX_CERTIFICATES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/crypto/rsa.h"

namespace palmgate::sandbox {

// Formats `t` as RFC 3339 in China Standard Time, e.g. "2024-05-01T10:00:00+08:00".
std::string FormatRfc3339Cst(absl::Time t);

// Returns the compact JSON body listing `certs`. kInvalidArgument when the
// APIv3 key is not 32 bytes.
absl::StatusOr<std::string> BuildCertificatesBody(const std::vector<crypto::Certificate>& certs,
                                                  absl::string_view apiv3_key);

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_CERTIFICATES_H_
