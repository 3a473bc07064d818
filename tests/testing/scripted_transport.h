// File: tests/testing/scripted_transport.h
//
// ScriptedTransport: an HttpTransport for unit tests that runs on the test's
// own thread and on a FakeClock. Sent requests stay open until the test
// answers them (Respond, Fail); Schedule'd functions and request timeouts
// fire only when the test calls RunDue() after moving the clock, in the order
// of their due times. A request still open when its `timeout` has passed
// fails with kDeadlineExceeded (kUpstreamTimeout), and Cancel fails it with
// kCancelled, as CurlTransport does. With set_max_running(n), as
// CurlTransport's max_connections: requests beyond n wait in line (oldest
// first; `running()` lists the others), their `timeout` starts when they leave
// it, and one whose `budget` runs out in line, or while running with less than
// its `timeout` because it waited, fails with kUnavailable
// (kUpstreamConnectionsBusy).
//
// Example:
//   FakeClock clock;
//   ScriptedTransport transport(clock);
//   client.GetAuthorization(...);                 // sends through `transport`
//   transport.Respond(transport.open().front(), response);
//   clock.Advance(absl::Milliseconds(150));
//   transport.RunDue();                           // timers and timeouts due by now
//
// Thread safety: thread-safe, but callbacks run on whichever thread calls
// Respond, Fail, Cancel or RunDue (never under the transport's lock).
#ifndef PALMGATE_TESTS_TESTING_SCRIPTED_TRANSPORT_H_
#define PALMGATE_TESTS_TESTING_SCRIPTED_TRANSPORT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/http_transport.h"

namespace palmgate::testing {

class ScriptedTransport final : public wechatpay::HttpTransport {
 public:
  using TransferId = wechatpay::TransferId;

  // What the transport was asked to send.
  struct Sent {
    TransferId id = 0;
    wechatpay::HttpRequest request;
    absl::Time at;
  };

  explicit ScriptedTransport(const Clock& clock) : clock_(clock) {}

  // At most `n` transfers run at once (0: no limit); set before the first Send.
  void set_max_running(size_t n) {
    absl::MutexLock lock(&mu_);
    max_running_ = n;
  }

  // HttpTransport
  TransferId Send(wechatpay::HttpRequest request, Callback done) override {
    absl::MutexLock lock(&mu_);
    const TransferId id = ++next_id_;
    const absl::Time now = clock_.Now();
    Open o;
    o.timeout = request.timeout;
    o.budget_end = now + (request.budget > absl::ZeroDuration() ? request.budget : request.timeout);
    o.expires = o.budget_end;
    o.done = std::move(done);
    open_.emplace(id, std::move(o));
    sent_.push_back(Sent{id, std::move(request), now});
    StartWaitingLocked(now);
    return id;
  }
  void Cancel(TransferId id) override {
    ++cancels_;
    Complete(id, wechatpay::MakeError(absl::StatusCode::kCancelled, wechatpay::ErrorReason::kCancelled,
                                      "transport: cancelled"));
  }
  void Schedule(absl::Duration delay, absl::AnyInvocable<void() &&> fn) override {
    absl::MutexLock lock(&mu_);
    timers_.emplace(std::make_pair(clock_.Now() + delay, ++next_timer_), std::move(fn));
  }

  // Answers open transfer `id` (false when it is not open).
  bool Respond(TransferId id, wechatpay::HttpResponse response) { return Complete(id, std::move(response)); }
  // Fails open transfer `id` with `status` (which should carry an UpstreamError, as the real transport's do).
  bool Fail(TransferId id, absl::Status status) { return Complete(id, std::move(status)); }

  // Runs, in due order, every timer due by the clock's time and fails every
  // transfer whose timeout has passed; also those that running them adds.
  void RunDue() {
    while (true) {
      absl::AnyInvocable<void() &&> fn;
      TransferId expired = 0;
      {
        absl::MutexLock lock(&mu_);
        const absl::Time now = clock_.Now();
        absl::Time timer_due = timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.first;
        absl::Time transfer_due = absl::InfiniteFuture();
        for (const auto& [id, o] : open_) {
          if (o.expires < transfer_due) {
            transfer_due = o.expires;
            expired = id;
          }
        }
        if (std::min(timer_due, transfer_due) > now) return;
        if (timer_due <= transfer_due) {
          expired = 0;
          fn = std::move(timers_.begin()->second);
          timers_.erase(timers_.begin());
        }
      }
      if (expired != 0) {
        bool busy;
        {
          absl::MutexLock lock(&mu_);
          busy = !open_.at(expired).running || open_.at(expired).budget_bound;
        }
        wechatpay::UpstreamError busy_error;
        busy_error.reason = wechatpay::ErrorReason::kUpstreamConnectionsBusy;
        busy_error.retry_after = absl::Seconds(1);  // as CurlTransport's
        Complete(expired, busy ? wechatpay::MakeError(absl::StatusCode::kUnavailable, "transport: connections busy",
                                                      std::move(busy_error))
                               : wechatpay::MakeError(absl::StatusCode::kDeadlineExceeded,
                                                      wechatpay::ErrorReason::kUpstreamTimeout, "transport: timed out"));
      } else {
        std::move(fn)();
      }
    }
  }

  // Ids of the open transfers, oldest first.
  std::vector<TransferId> open() const {
    absl::MutexLock lock(&mu_);
    std::vector<TransferId> ids;
    for (const auto& [id, o] : open_) ids.push_back(id);
    return ids;
  }
  // Ids of the open transfers out of the line, oldest first.
  std::vector<TransferId> running() const {
    absl::MutexLock lock(&mu_);
    std::vector<TransferId> ids;
    for (const auto& [id, o] : open_) {
      if (o.running) ids.push_back(id);
    }
    return ids;
  }
  // Everything sent so far, in order.
  std::vector<Sent> sent() const {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  // The request of transfer `id`; `id` must have been sent.
  wechatpay::HttpRequest request(TransferId id) const {
    absl::MutexLock lock(&mu_);
    return sent_.at(id - 1).request;
  }
  int cancels() const { return cancels_; }
  size_t pending_timers() const {
    absl::MutexLock lock(&mu_);
    return timers_.size();
  }

 private:
  struct Open {
    absl::Duration timeout;
    absl::Time budget_end;
    absl::Time expires;  // in line: budget_end; running: when its own timeout or the budget ends
    bool running = false;
    bool budget_bound = false;  // the budget ends its run before its own timeout
    Callback done;
  };

  void StartWaitingLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t running = 0;
    for (const auto& [id, o] : open_) running += o.running;
    for (auto& [id, o] : open_) {
      if (o.running) continue;
      if (max_running_ != 0 && running >= max_running_) return;
      o.running = true;
      ++running;
      o.expires = std::min(now + o.timeout, o.budget_end);
      o.budget_bound = o.budget_end < now + o.timeout;
    }
  }

  bool Complete(TransferId id, absl::StatusOr<wechatpay::HttpResponse> result) {
    Callback done;
    {
      absl::MutexLock lock(&mu_);
      auto it = open_.find(id);
      if (it == open_.end()) return false;
      done = std::move(it->second.done);
      open_.erase(it);
      StartWaitingLocked(clock_.Now());
    }
    std::move(done)(std::move(result));
    return true;
  }

  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::map<TransferId, Open> open_ ABSL_GUARDED_BY(mu_);
  std::vector<Sent> sent_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<absl::Time, uint64_t>, absl::AnyInvocable<void() &&>> timers_ ABSL_GUARDED_BY(mu_);
  TransferId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  size_t max_running_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_timer_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> cancels_{0};
};

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_SCRIPTED_TRANSPORT_H_
