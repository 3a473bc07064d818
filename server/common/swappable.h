// File: server/common/swappable.h
//
// Swappable<T>: a shared, immutable T that is replaced as a whole
// (copy-on-write). Readers take a snapshot and keep using it while a writer
// swaps in a new value; nobody ever sees a half-built T. Used for the key ring
// and the signing credential, both replaced on refresh or reload.
//
// Thread safety: thread-safe.
#ifndef PALMGATE_SERVER_COMMON_SWAPPABLE_H_
#define PALMGATE_SERVER_COMMON_SWAPPABLE_H_

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace palmgate {

template <typename T>
class Swappable {
 public:
  explicit Swappable(std::shared_ptr<const T> value) : value_(std::move(value)) {}

  // Returns the current value (a snapshot: later swaps do not change it).
  std::shared_ptr<const T> Current() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return value_;
  }

  // Replaces the value; the old one lives on while snapshots of it exist, and
  // is released outside the lock.
  void Replace(std::shared_ptr<const T> value) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      value_.swap(value);
    }
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const T> value_ ABSL_GUARDED_BY(mu_);
};

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_SWAPPABLE_H_
