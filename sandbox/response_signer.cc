#include "sandbox/response_signer.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"

namespace palmgate::sandbox {

std::string BuildResponseSignMessage(absl::string_view timestamp, absl::string_view nonce,
                                     absl::string_view body) {
  return absl::StrCat(timestamp, "\n", nonce, "\n", body, "\n");
}

absl::StatusOr<std::string> SignResponse(const crypto::RsaPrivateKey& key, absl::string_view timestamp,
                                         absl::string_view nonce, absl::string_view body) {
  PALMGATE_ASSIGN_OR_RETURN(std::string raw, key.SignSha256(BuildResponseSignMessage(timestamp, nonce, body)));
  return crypto::Base64Encode(raw);
}

std::string RandomLowerHex32() { return absl::BytesToHexString(crypto::RandomBytes(16)); }

ResponseSigner::ResponseSigner(const Clock* clock, absl::Duration cache_ttl)
    : clock_(clock), cache_ttl_(cache_ttl) {}

absl::StatusOr<ResponseSignature> ResponseSigner::Sign(const SigningKey& key, absl::string_view body,
                                                       int64_t timestamp_shift_s) {
  const absl::Time now = clock_->Now();
  const bool use_cache = cache_ttl_ > absl::ZeroDuration() && timestamp_shift_s == 0;
  std::string cache_key;
  if (use_cache) {
    cache_key = absl::StrCat(key.serial, "\n", body);
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(cache_key);
    if (it != cache_.end() && now - it->second.created < cache_ttl_) return it->second.signature;
  }
  ResponseSignature sig;
  sig.timestamp = absl::StrCat(absl::ToUnixSeconds(now) + timestamp_shift_s);
  sig.nonce = RandomLowerHex32();
  sig.serial = key.serial;
  PALMGATE_ASSIGN_OR_RETURN(sig.signature, SignResponse(key.key, sig.timestamp, sig.nonce, body));
  if (use_cache) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_[cache_key] = CacheEntry{sig, now};
  }
  return sig;
}

}  // namespace palmgate::sandbox
