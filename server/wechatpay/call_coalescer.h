// File: server/wechatpay/call_coalescer.h
//
// CallCoalescer: identical concurrent authorization queries — same openid and
// organization_id — share one upstream call. The first caller's call is
// shared by every identical caller arriving while it is in flight; once it
// completes, its result (or error) goes to every waiter and nothing is kept:
// results are never cached.
//
// Each waiter keeps its own deadline and its own cancellation:
//  - the shared call runs until the latest deadline of the waiters still
//    waiting: it is moved later when a waiter with a later deadline joins, and
//    earlier when the waiter with the latest one leaves; a waiter whose own
//    deadline passes first gets kDeadlineExceeded (kUpstreamTimeout) on its
//    own, and the shared call goes on for the others (the first caller's
//    short deadline never cuts it short while others wait);
//  - a cancelled waiter gets kCancelled at once; the shared call is cancelled
//    only when no waiter is left (the last one then receives what the
//    cancelled call reports, exactly as without coalescing).
// With a single waiter the shared call is exactly that caller's call.
//
// Example:
//   CallCoalescer coalescer(&upstream);   // upstream: CallCoalescer::Upstream
//   uint64_t id = coalescer.Join("oUpF8…", "1004", deadline, std::move(done));
//   coalescer.Cancel(id);
//
// Thread safety: thread-safe. Callbacks run without the coalescer's lock held.
#ifndef PALMGATE_SERVER_WECHATPAY_CALL_COALESCER_H_
#define PALMGATE_SERVER_WECHATPAY_CALL_COALESCER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/wechatpay/palm_service_client.h"  // AuthorizationResult

namespace palmgate::wechatpay {

class CallCoalescer {
 public:
  using Callback = absl::AnyInvocable<void(absl::StatusOr<AuthorizationResult>) &&>;

  // What the coalescer shares: the real upstream calls, and a timer.
  class Upstream {
   public:
    virtual ~Upstream() = default;
    // Starts one upstream call ending by `deadline`; `done` runs exactly once,
    // possibly before this returns. Returns an id (0 when already finished).
    virtual uint64_t StartShared(absl::string_view openid, absl::string_view organization_id, absl::Time deadline,
                                 Callback done) = 0;
    // Cancels a started call (its callback then runs with kCancelled unless it already ran).
    virtual void CancelShared(uint64_t id) = 0;
    // Moves the deadline of a started call to `deadline` (later or earlier).
    virtual void SetSharedDeadline(uint64_t id, absl::Time deadline) = 0;
    // Runs `fn` at `when`, without holding a thread meanwhile.
    virtual void ScheduleAt(absl::Time when, absl::AnyInvocable<void() &&> fn) = 0;
  };

  struct Stats {
    int64_t waiters = 0;       // Join calls
    int64_t shared_calls = 0;  // upstream calls started
  };

  // `upstream` must outlive the coalescer (and the timers it schedules).
  explicit CallCoalescer(Upstream* upstream) : upstream_(upstream) {}
  CallCoalescer(const CallCoalescer&) = delete;
  CallCoalescer& operator=(const CallCoalescer&) = delete;

  // Waits for the answer about (openid, organization_id), starting an upstream
  // call unless an identical one is in flight. `done` runs exactly once.
  // Returns an id for Cancel (0 when `done` already ran).
  uint64_t Join(absl::string_view openid, absl::string_view organization_id, absl::Time deadline, Callback done);

  // Cancels one waiter: its callback runs with kCancelled now, or — when it is
  // the last waiter of its call — with what the cancelled upstream call
  // reports. Unknown or finished ids are ignored.
  void Cancel(uint64_t id);

  Stats GetStats() const;

 private:
  struct Waiter {
    absl::Time deadline;
    Callback done;
    bool timer = false;  // a deadline timer is scheduled
  };
  struct Flight {
    std::string key;
    absl::Time deadline;              // the latest deadline of its waiters
    absl::Time started_deadline;      // the deadline the upstream call started with
    uint64_t upstream_id = 0;         // 0 until StartShared returned
    bool start_returned = false;
    bool cancel_pending = false;      // the last waiter cancelled before StartShared returned
    bool finished = false;
    std::map<uint64_t, Waiter> waiters;
  };

  void OnShared(const std::shared_ptr<Flight>& flight, absl::StatusOr<AuthorizationResult> result);
  void OnTimer(uint64_t id);
  // Removes waiter `id` of `flight`. When others remain and the shared call's
  // deadline was the leaver's, moves it to the latest remaining one and
  // returns the upstream id to tell (else 0). When none remains, ends the
  // flight and sets `*cancel_id` (or cancel_pending before StartShared returned).
  uint64_t RemoveWaiter(const std::shared_ptr<Flight>& flight, uint64_t id, uint64_t* cancel_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Schedules the deadline timers of `ids`.
  void ScheduleTimers(const std::vector<std::pair<uint64_t, absl::Time>>& timers);

  Upstream* const upstream_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Flight>> flights_ ABSL_GUARDED_BY(mu_);  // in flight, by key
  std::map<uint64_t, std::shared_ptr<Flight>> by_waiter_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t stat_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t stat_shared_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_CALL_COALESCER_H_
