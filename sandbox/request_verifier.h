// File: sandbox/request_verifier.h
//
// Verifies an APIv3 request signature the way WeChat Pay does: strict
// Authorization parsing, known mchid, merchant certificate serial, timestamp
// within +-window of the sandbox clock, nonce not reused within the window,
// and SHA256withRSA over "METHOD\nRAW-TARGET\nTS\nNONCE\nBODY\n" with the
// merchant certificate's public key (wechatpay-v3.md section 2).
//
// Thread safety: Verify() is thread-safe (the nonce cache is internally locked).
#ifndef PALMGATE_SANDBOX_REQUEST_VERIFIER_H_
#define PALMGATE_SANDBOX_REQUEST_VERIFIER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "sandbox/nonce_cache.h"
#include "server/common/clock.h"
#include "server/crypto/rsa.h"

namespace palmgate::sandbox {

struct MerchantIdentity {
  std::string mchid;
  std::string serial;  // merchant API certificate serial (hex)
  crypto::RsaPublicKey public_key;
};

// Result of RequestVerifier::Verify.
struct RequestVerification {
  // OK, or kUnauthenticated whose message is the precise issue
  // (e.g. "timestamp 1554208460 is 301 s away from the server clock").
  absl::Status status;
  // The message the signature was checked against (as far as it could be
  // built), for the SIGN_ERROR sign_information.
  std::string sign_message;
  std::string mchid;  // as sent, when parsed
};

class RequestVerifier {
 public:
  // `clock` must outlive the verifier.
  RequestVerifier(MerchantIdentity merchant, const Clock* clock, int64_t window_s = 300,
                  size_t max_nonces = 1 << 20);

  // Verifies a request with the given Authorization header value.
  RequestVerification Verify(absl::string_view method, absl::string_view raw_target,
                             absl::string_view body, absl::string_view authorization);

  void ClearNonces() { nonces_.Clear(); }
  const MerchantIdentity& merchant() const { return merchant_; }

 private:
  const MerchantIdentity merchant_;
  const Clock* const clock_;
  const int64_t window_s_;
  NonceCache nonces_;
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_REQUEST_VERIFIER_H_
