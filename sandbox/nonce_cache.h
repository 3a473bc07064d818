// File: sandbox/nonce_cache.h
//
// Remembers request nonces so that a replayed request (same mchid and
// nonce_str within the timestamp window) is rejected, with bounded memory:
// entries expire when their request timestamp leaves the window, and when
// `max_entries` is reached the oldest entries are evicted first.
//
// Thread safety: all methods are thread-safe.
#ifndef PALMGATE_SANDBOX_NONCE_CACHE_H_
#define PALMGATE_SANDBOX_NONCE_CACHE_H_

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace palmgate::sandbox {

class NonceCache {
 public:
  explicit NonceCache(size_t max_entries = 1 << 20) : max_entries_(max_entries) {}

  // Records `key` (e.g. "mchid|nonce") as seen until unix second
  // `expires_at_s`. Returns false, without changing anything, when the key is
  // already recorded and not expired at `now_s` (a replay).
  bool Insert(absl::string_view key, int64_t expires_at_s, int64_t now_s);

  size_t size() const;
  void Clear();

 private:
  void PurgeLocked(int64_t now_s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_entries_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> expiry_ ABSL_GUARDED_BY(mu_);
  // Insertion order, for expiry and eviction.
  std::deque<std::pair<int64_t, std::string>> order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_NONCE_CACHE_H_
