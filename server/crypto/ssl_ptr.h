// File: server/crypto/ssl_ptr.h
//
// Owning pointers for OpenSSL objects, and the conversion of OpenSSL's error
// queue into an absl::Status. Every OpenSSL object in palmgate is owned from
// creation by an SslPtr<T>; no *_free call appears outside a deleter.
//
// Example:
//   SslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
//   if (ctx == nullptr) return SslErrorStatus("EVP_MD_CTX_new");
#ifndef PALMGATE_SERVER_CRYPTO_SSL_PTR_H_
#define PALMGATE_SERVER_CRYPTO_SSL_PTR_H_

#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace palmgate::crypto {

template <typename T>
struct SslDeleter;

#define PALMGATE_SSL_DELETER_(T, fn) \
  template <>                        \
  struct SslDeleter<T> {             \
    void operator()(T* p) const { fn(p); } \
  }

PALMGATE_SSL_DELETER_(BIO, BIO_free_all);
PALMGATE_SSL_DELETER_(BIGNUM, BN_free);
PALMGATE_SSL_DELETER_(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free);
PALMGATE_SSL_DELETER_(EVP_MD_CTX, EVP_MD_CTX_free);
PALMGATE_SSL_DELETER_(EVP_PKEY, EVP_PKEY_free);
PALMGATE_SSL_DELETER_(EVP_PKEY_CTX, EVP_PKEY_CTX_free);
PALMGATE_SSL_DELETER_(X509, X509_free);
PALMGATE_SSL_DELETER_(X509_NAME, X509_NAME_free);
PALMGATE_SSL_DELETER_(X509_EXTENSION, X509_EXTENSION_free);
PALMGATE_SSL_DELETER_(ASN1_TIME, ASN1_TIME_free);
PALMGATE_SSL_DELETER_(EVP_MD, EVP_MD_free);

#undef PALMGATE_SSL_DELETER_

// SslPtr<T>
//
// A std::unique_ptr that frees an OpenSSL object with its own free function.
template <typename T>
using SslPtr = std::unique_ptr<T, SslDeleter<T>>;

// Returns a Status with `code` whose message is `where` followed by the first
// reason found in OpenSSL's error queue. Drains the queue, so that a stale error
// never leaks into a later, unrelated call.
absl::Status SslErrorStatus(absl::string_view where,
                            absl::StatusCode code = absl::StatusCode::kInternal);

// Discards everything in the calling thread's OpenSSL error queue.
void ClearSslErrors();

}  // namespace palmgate::crypto

#endif  // PALMGATE_SERVER_CRYPTO_SSL_PTR_H_
