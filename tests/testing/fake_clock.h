// File: tests/testing/fake_clock.h
//
// A Clock that tests set by hand. Thread-safe.
#ifndef PALMGATE_TESTS_TESTING_FAKE_CLOCK_H_
#define PALMGATE_TESTS_TESTING_FAKE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "server/common/clock.h"

namespace palmgate::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time now = absl::FromUnixSeconds(1700000000))
      : nanos_(absl::ToUnixNanos(now)) {}
  absl::Time Now() const override { return absl::FromUnixNanos(nanos_.load()); }
  void Set(absl::Time t) { nanos_.store(absl::ToUnixNanos(t)); }
  void Advance(absl::Duration d) { nanos_.fetch_add(absl::ToInt64Nanoseconds(d)); }

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_FAKE_CLOCK_H_
