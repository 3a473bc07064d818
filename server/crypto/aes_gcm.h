// File: server/crypto/aes_gcm.h
//
// AES-GCM authenticated encryption with a 16-byte tag appended to the
// ciphertext: WeChat Pay's AEAD_AES_256_GCM (wechatpay-v3.md section 4.2) used
// for /v3/certificates and notifications. The key length picks AES-128/192/256;
// WeChat Pay's APIv3 key is 32 bytes (AES-256).
#ifndef PALMGATE_SERVER_CRYPTO_AES_GCM_H_
#define PALMGATE_SERVER_CRYPTO_AES_GCM_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::crypto {

inline constexpr size_t kGcmTagBytes = 16;

// Returns ciphertext || tag. kInvalidArgument for a key that is not 16, 24 or
// 32 bytes or an empty nonce.
absl::StatusOr<std::string> AesGcmSeal(absl::string_view key, absl::string_view nonce,
                                       absl::string_view associated_data, absl::string_view plaintext);

// Opens ciphertext || tag. kInvalidArgument for bad sizes; kDataLoss when
// authentication fails (wrong key, nonce, associated data or a tampered text).
absl::StatusOr<std::string> AesGcmOpen(absl::string_view key, absl::string_view nonce,
                                       absl::string_view associated_data,
                                       absl::string_view ciphertext_and_tag);

// Returns `length` characters drawn uniformly from [0-9A-Za-z] with the OpenSSL
// CSPRNG (the nonce format of every official SDK). The CSPRNG is read 1 KB at a
// time into a per-thread pool; a forked child never reuses its parent's pool.
std::string RandomAlphanumeric(size_t length);

// Returns `length` random bytes from the OpenSSL CSPRNG.
std::string RandomBytes(size_t length);

}  // namespace palmgate::crypto

#endif  // PALMGATE_SERVER_CRYPTO_AES_GCM_H_
