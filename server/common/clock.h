// File: server/common/clock.h
//
// A clock interface so that time-dependent checks (signature timestamps, skew
// windows) can be tested without the real clock.
#ifndef PALMGATE_SERVER_COMMON_CLOCK_H_
#define PALMGATE_SERVER_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace palmgate {

// Clock
//
// Returns the current time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// SystemClock
//
// The real wall clock. Stateless; use the shared instance from Get().
class SystemClock final : public Clock {
 public:
  static const Clock& Get() {
    static const SystemClock kClock;
    return kClock;
  }
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_CLOCK_H_
