#include "server/wechatpay/call_coalescer.h"

#include "absl/strings/str_cat.h"
#include "server/wechatpay/error.h"

namespace palmgate::wechatpay {
namespace {

// openid and organization_id never contain NUL (validated UTF-8 without control characters).
std::string Key(absl::string_view openid, absl::string_view organization_id) {
  return absl::StrCat(openid, absl::string_view("\0", 1), organization_id);
}

}  // namespace

uint64_t CallCoalescer::Join(absl::string_view openid, absl::string_view organization_id, absl::Time deadline,
                             Callback done) {
  std::string key = Key(openid, organization_id);
  std::shared_ptr<Flight> flight;
  uint64_t id;
  bool start = false;
  uint64_t extend_id = 0;
  std::vector<std::pair<uint64_t, absl::Time>> timers;
  {
    absl::MutexLock lock(&mu_);
    id = ++next_id_;
    ++stat_waiters_;
    auto it = flights_.find(key);
    if (it == flights_.end()) {
      flight = std::make_shared<Flight>();
      flight->key = key;
      flight->deadline = deadline;
      flight->started_deadline = deadline;
      flights_.emplace(std::move(key), flight);
      start = true;
      ++stat_shared_;
    } else {
      flight = it->second;
      if (deadline > flight->deadline) {
        // Everyone already waiting now ends before the shared call: each gets its own timer.
        for (auto& [wid, w] : flight->waiters) {
          if (!w.timer) {
            w.timer = true;
            timers.emplace_back(wid, w.deadline);
          }
        }
        flight->deadline = deadline;
        if (flight->start_returned) extend_id = flight->upstream_id;
      }
    }
    Waiter& w = flight->waiters[id];
    w.deadline = deadline;
    w.done = std::move(done);
    if (deadline < flight->deadline) {
      w.timer = true;
      timers.emplace_back(id, deadline);
    }
    by_waiter_[id] = flight;
  }
  ScheduleTimers(timers);
  if (extend_id != 0) upstream_->ExtendShared(extend_id, deadline);
  if (!start) return id;

  const uint64_t upstream_id =
      upstream_->StartShared(openid, organization_id, deadline,
                             [this, flight](absl::StatusOr<AuthorizationResult> r) { OnShared(flight, std::move(r)); });
  bool cancel = false;
  absl::Time extend_to = absl::InfinitePast();
  bool still_waiting;
  {
    absl::MutexLock lock(&mu_);
    flight->upstream_id = upstream_id;
    flight->start_returned = true;
    if (!flight->finished && upstream_id != 0) {
      cancel = flight->cancel_pending;
      if (flight->deadline > flight->started_deadline) extend_to = flight->deadline;
    }
    still_waiting = by_waiter_.count(id) != 0;
  }
  if (cancel) {
    upstream_->CancelShared(upstream_id);
  } else if (extend_to != absl::InfinitePast()) {
    upstream_->ExtendShared(upstream_id, extend_to);
  }
  return still_waiting ? id : 0;
}

void CallCoalescer::Cancel(uint64_t id) {
  Callback done;
  uint64_t cancel_id = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_waiter_.find(id);
    if (it == by_waiter_.end()) return;
    std::shared_ptr<Flight> flight = it->second;
    if (flight->waiters.size() > 1) {
      auto w = flight->waiters.find(id);
      done = std::move(w->second.done);
      flight->waiters.erase(w);
      by_waiter_.erase(it);
    } else {
      // The last waiter: the shared call is cancelled and reports to it, as an unshared call would.
      // Later identical callers start a call of their own.
      auto f = flights_.find(flight->key);
      if (f != flights_.end() && f->second == flight) flights_.erase(f);
      if (flight->start_returned) {
        cancel_id = flight->upstream_id;
      } else {
        flight->cancel_pending = true;
      }
    }
  }
  if (done) {
    std::move(done)(MakeError(absl::StatusCode::kCancelled, ErrorReason::kCancelled, "upstream: call cancelled"));
  }
  if (cancel_id != 0) upstream_->CancelShared(cancel_id);
}

void CallCoalescer::OnTimer(uint64_t id) {
  Callback done;
  uint64_t cancel_id = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_waiter_.find(id);
    if (it == by_waiter_.end()) return;  // answered already
    std::shared_ptr<Flight> flight = it->second;
    auto w = flight->waiters.find(id);
    done = std::move(w->second.done);
    flight->waiters.erase(w);
    by_waiter_.erase(it);
    if (flight->waiters.empty()) {
      // Nobody is left to answer: stop the shared call (its result goes nowhere).
      auto f = flights_.find(flight->key);
      if (f != flights_.end() && f->second == flight) flights_.erase(f);
      if (flight->start_returned) {
        cancel_id = flight->upstream_id;
      } else {
        flight->cancel_pending = true;
      }
    }
  }
  std::move(done)(MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                            "upstream: deadline reached before the answer"));
  if (cancel_id != 0) upstream_->CancelShared(cancel_id);
}

void CallCoalescer::OnShared(const std::shared_ptr<Flight>& flight, absl::StatusOr<AuthorizationResult> result) {
  std::map<uint64_t, Waiter> waiters;
  {
    absl::MutexLock lock(&mu_);
    flight->finished = true;
    auto f = flights_.find(flight->key);
    if (f != flights_.end() && f->second == flight) flights_.erase(f);  // never cached
    waiters.swap(flight->waiters);
    for (const auto& [id, w] : waiters) by_waiter_.erase(id);
  }
  size_t left = waiters.size();
  for (auto& [id, w] : waiters) {
    if (--left == 0) {
      std::move(w.done)(std::move(result));
    } else {
      std::move(w.done)(result);
    }
  }
}

void CallCoalescer::ScheduleTimers(const std::vector<std::pair<uint64_t, absl::Time>>& timers) {
  for (const auto& [id, when] : timers) {
    upstream_->ScheduleAt(when, [this, id = id] { OnTimer(id); });
  }
}

CallCoalescer::Stats CallCoalescer::GetStats() const {
  absl::MutexLock lock(&mu_);
  return Stats{stat_waiters_, stat_shared_};
}

}  // namespace palmgate::wechatpay
