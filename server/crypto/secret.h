// File: server/crypto/secret.h
//
// Key material in palmgate's own buffers. The merchant private key file, the
// TLS key file and the APIv3 key are read into a SecretString, which wipes its
// whole allocation (OPENSSL_cleanse) when it is destroyed, reassigned, moved
// from or cleared, so a replaced key (SIGHUP reload) or a freed one leaves no
// copy in freed heap memory. ReadSecretFile reads a file straight into such a
// buffer: no stack buffer, and a reallocation copies then wipes the old block.
// Keys parsed from it live in OpenSSL's EVP_PKEY objects, which clear their
// BIGNUMs when freed (BN_clear_free).
//
// Example:
//   PALMGATE_ASSIGN_OR_RETURN(crypto::SecretString pem, crypto::ReadSecretFile(path));
//   PALMGATE_ASSIGN_OR_RETURN(RsaPrivateKey key, RsaPrivateKey::FromPem(pem.view()));
//   // `pem` is wiped when it goes out of scope.
#ifndef PALMGATE_SERVER_CRYPTO_SECRET_H_
#define PALMGATE_SERVER_CRYPTO_SECRET_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::crypto {

// Overwrites every byte `s` has allocated (up to its capacity, not only its
// size) with zeros through OPENSSL_cleanse, which the compiler cannot elide,
// then empties it. The allocation itself is kept (the caller may reuse it).
void WipeString(std::string& s);

// SecretString
//
// A std::string holding key material; wiped (WipeString) by its destructor,
// by assignment before taking a new value, and in a moved-from source.
// Copies are separate secrets, each wiped in turn. Thread-compatible.
class SecretString {
 public:
  SecretString() = default;
  // Takes `value`'s allocation (a short value's inline bytes are copied, then wiped in `value`).
  explicit SecretString(std::string value);
  ~SecretString() { WipeString(value_); }

  SecretString(const SecretString& other) = default;
  SecretString& operator=(const SecretString& other);
  SecretString(SecretString&& other) noexcept;
  SecretString& operator=(SecretString&& other) noexcept;

  const std::string& value() const { return value_; }
  absl::string_view view() const { return value_; }
  size_t size() const { return value_.size(); }
  bool empty() const { return value_.empty(); }

  // Removes trailing ASCII whitespace in place (no copy is made).
  void StripTrailingWhitespace();
  // Wipes and empties.
  void Clear() { WipeString(value_); }

 private:
  std::string value_;
};

// Reads the file at `path` into a SecretString. kNotFound, kPermissionDenied
// or kInvalidArgument (not a regular file, larger than `max_bytes`), each
// naming the path and never the contents. Nothing read stays behind in
// memory on any path (growth and errors wipe what was read).
absl::StatusOr<SecretString> ReadSecretFile(const std::string& path, size_t max_bytes = 1 << 20);

}  // namespace palmgate::crypto

#endif  // PALMGATE_SERVER_CRYPTO_SECRET_H_
