// File: server/crypto/pem.h
//
// A strict reader of PEM armor (RFC 7468) for key files, so that only bounded,
// well-formed DER of the expected kind ever reaches OpenSSL's key decoders.
//
// Example:
//   PALMGATE_ASSIGN_OR_RETURN(PemBlock block, DecodePem(text, {"PRIVATE KEY", "RSA PRIVATE KEY"}, 8192));
//   // block.label is one of the two; block.der is the decoded body.
#ifndef PALMGATE_SERVER_CRYPTO_PEM_H_
#define PALMGATE_SERVER_CRYPTO_PEM_H_

#include <cstddef>
#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/crypto/secret.h"

namespace palmgate::crypto {

// One decoded PEM block.
struct PemBlock {
  std::string label;  // e.g. "PRIVATE KEY"
  SecretString der;   // the base64 body, decoded; wiped when the block goes (it may be a private key)
};

// Finds the one block of `text` whose label is in `labels` and decodes it.
//
// Accepted: explanatory text before and after blocks, blocks of other labels
// (ignored, e.g. a certificate next to a key), CR LF line ends, spaces and tabs
// at the end of lines. The block itself must be strict:
//   - "-----BEGIN L-----" and "-----END L-----" each alone on a line, same L;
//   - no header lines (e.g. "Proc-Type: 4,ENCRYPTED" of an encrypted PKCS#1 key);
//   - a body of base64 only (RFC 4648 alphabet, no spaces inside a line), padded,
//     canonical (unused bits zero), decoding to 1 to `max_der` bytes.
// kInvalidArgument when no block of an accepted label is present, when there is
// more than one (which key was meant?), or when the block breaks a rule above.
// Messages name the rule broken, never the text. The copies of the body made
// while decoding are wiped before returning.
absl::StatusOr<PemBlock> DecodePem(absl::string_view text, std::initializer_list<absl::string_view> labels,
                                   size_t max_der);

}  // namespace palmgate::crypto

#endif  // PALMGATE_SERVER_CRYPTO_PEM_H_
