// File: tests/testing/fake_clock.h
//
// A Clock that tests set by hand. Thread-safe. With set_tick(d), every Now()
// also moves it by d, as a real clock moves between two reads.
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
  absl::Time Now() const override {
    const int64_t tick = tick_nanos_.load();
    return absl::FromUnixNanos(nanos_.fetch_add(tick) + tick);
  }
  void set_tick(absl::Duration d) { tick_nanos_.store(absl::ToInt64Nanoseconds(d)); }
  void Set(absl::Time t) { nanos_.store(absl::ToUnixNanos(t)); }
  void Advance(absl::Duration d) { nanos_.fetch_add(absl::ToInt64Nanoseconds(d)); }

 private:
  mutable std::atomic<int64_t> nanos_;
  std::atomic<int64_t> tick_nanos_{0};
};

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_FAKE_CLOCK_H_
