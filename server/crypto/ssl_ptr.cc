#include "server/crypto/ssl_ptr.h"

#include <openssl/err.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace palmgate::crypto {

absl::Status SslErrorStatus(absl::string_view where, absl::StatusCode code) {
  unsigned long first = ERR_get_error();
  ClearSslErrors();
  if (first == 0) return absl::Status(code, where);
  char buf[256];
  ERR_error_string_n(first, buf, sizeof(buf));
  return absl::Status(code, absl::StrCat(where, ": ", buf));
}

void ClearSslErrors() { ERR_clear_error(); }

}  // namespace palmgate::crypto
