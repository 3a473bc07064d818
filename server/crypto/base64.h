// File: server/crypto/base64.h
//
// Standard Base64 (RFC 4648 section 4, with padding), as used by WeChat Pay for
// signatures and AEAD ciphertexts.
#ifndef PALMGATE_SERVER_CRYPTO_BASE64_H_
#define PALMGATE_SERVER_CRYPTO_BASE64_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::crypto {

// Returns the padded standard Base64 encoding of `data`, on one line.
std::string Base64Encode(absl::string_view data);

// Decodes strict standard Base64: only the RFC 4648 alphabet, a length that is
// a multiple of 4, at most two '=' at the end, and zero bits in the unused part
// of the last group. Anything else is kInvalidArgument (never a crash), which is
// how a `WECHATPAY/SIGNTEST/...` probe value usually ends.
absl::StatusOr<std::string> Base64Decode(absl::string_view text);

}  // namespace palmgate::crypto

#endif  // PALMGATE_SERVER_CRYPTO_BASE64_H_
