#include "sandbox/nonce_cache.h"

namespace palmgate::sandbox {

void NonceCache::PurgeLocked(int64_t now_s) {
  // Timestamps inside the window are within a few minutes of each other, so
  // insertion order is close to expiry order; a stale entry behind a newer one
  // is dropped a little late, never early.
  while (!order_.empty() && (order_.front().first <= now_s || order_.size() > max_entries_)) {
    auto it = expiry_.find(order_.front().second);
    if (it != expiry_.end() && it->second == order_.front().first) expiry_.erase(it);
    order_.pop_front();
  }
}

bool NonceCache::Insert(absl::string_view key, int64_t expires_at_s, int64_t now_s) {
  absl::MutexLock lock(&mu_);
  PurgeLocked(now_s);
  auto it = expiry_.find(key);
  if (it != expiry_.end() && it->second > now_s) return false;
  expiry_[key] = expires_at_s;
  order_.emplace_back(expires_at_s, std::string(key));
  if (order_.size() > max_entries_) PurgeLocked(now_s);
  return true;
}

size_t NonceCache::size() const {
  absl::MutexLock lock(&mu_);
  return expiry_.size();
}

void NonceCache::Clear() {
  absl::MutexLock lock(&mu_);
  expiry_.clear();
  order_.clear();
}

}  // namespace palmgate::sandbox
