// File: sandbox/response_signer.h
//
// Signs sandbox responses as WeChat Pay does (wechatpay-v3.md 3.1-3.3):
// Wechatpay-Signature = Base64(SHA256withRSA("TIMESTAMP\nNONCE\nBODY\n")),
// with a 32-lower-hex Wechatpay-Nonce and the sandbox clock's unix seconds as
// Wechatpay-Timestamp. An optional cache reuses the signature of an identical
// (key, body) pair for a bounded time, so that the sandbox is never the
// bottleneck of a benchmark.
//
// Thread safety: Sign() is thread-safe.
#ifndef PALMGATE_SANDBOX_RESPONSE_SIGNER_H_
#define PALMGATE_SANDBOX_RESPONSE_SIGNER_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/crypto/rsa.h"

namespace palmgate::sandbox {

// A private key with the serial (platform certificate serial or PUB_KEY_ID_…)
// reported in Wechatpay-Serial.
struct SigningKey {
  std::string serial;
  crypto::RsaPrivateKey key;
};

// The four Wechatpay-* values of a signed response.
struct ResponseSignature {
  std::string timestamp;
  std::string nonce;
  std::string serial;
  std::string signature;  // Base64
};

// Returns "TIMESTAMP\nNONCE\nBODY\n".
std::string BuildResponseSignMessage(absl::string_view timestamp, absl::string_view nonce,
                                     absl::string_view body);

// Returns Base64(SHA256withRSA(BuildResponseSignMessage(...))) with `key`.
absl::StatusOr<std::string> SignResponse(const crypto::RsaPrivateKey& key, absl::string_view timestamp,
                                         absl::string_view nonce, absl::string_view body);

// Returns 32 random lower-case hex characters (WeChat Pay's response nonce form).
std::string RandomLowerHex32();

class ResponseSigner {
 public:
  // `clock` (the sandbox clock) must outlive the signer. A zero `cache_ttl`
  // disables the cache.
  ResponseSigner(const Clock* clock, absl::Duration cache_ttl);

  // Signs `body` with `key`, the timestamp shifted by `timestamp_shift_s`
  // seconds (fault injection). Cached only when the shift is zero.
  absl::StatusOr<ResponseSignature> Sign(const SigningKey& key, absl::string_view body,
                                         int64_t timestamp_shift_s = 0);

 private:
  struct CacheEntry {
    ResponseSignature signature;
    absl::Time created;
  };
  static constexpr size_t kMaxCacheEntries = 4096;

  const Clock* const clock_;
  const absl::Duration cache_ttl_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, CacheEntry> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_RESPONSE_SIGNER_H_
