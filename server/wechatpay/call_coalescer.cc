#include "server/wechatpay/call_coalescer.h"

#include <algorithm>

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
  if (extend_id != 0) upstream_->SetSharedDeadline(extend_id, deadline);
  if (!start) return id;

  const uint64_t upstream_id =
      upstream_->StartShared(openid, organization_id, deadline,
                             [this, flight](absl::StatusOr<AuthorizationResult> r) { OnShared(flight, std::move(r)); });
  bool cancel = false;
  absl::Time move_to = absl::InfinitePast();
  bool still_waiting;
  {
    absl::MutexLock lock(&mu_);
    flight->upstream_id = upstream_id;
    flight->start_returned = true;
    if (!flight->finished && upstream_id != 0) {
      cancel = flight->cancel_pending;
      // Waiters came or left while the call was starting.
      if (flight->deadline != flight->started_deadline) move_to = flight->deadline;
    }
    still_waiting = by_waiter_.count(id) != 0;
  }
  if (cancel) {
    upstream_->CancelShared(upstream_id);
  } else if (move_to != absl::InfinitePast()) {
    upstream_->SetSharedDeadline(upstream_id, move_to);
  }
  return still_waiting ? id : 0;
}

uint64_t CallCoalescer::RemoveWaiter(const std::shared_ptr<Flight>& flight, uint64_t id, uint64_t* cancel_id) {
  flight->waiters.erase(id);
  by_waiter_.erase(id);
  if (flight->waiters.empty()) {
    // Nobody is left to answer: the shared call stops. Later identical callers start a call of their own.
    auto f = flights_.find(flight->key);
    if (f != flights_.end() && f->second == flight) flights_.erase(f);
    if (flight->start_returned) {
      *cancel_id = flight->upstream_id;
    } else {
      flight->cancel_pending = true;
    }
    return 0;
  }
  absl::Time latest = absl::InfinitePast();
  for (const auto& [wid, w] : flight->waiters) latest = std::max(latest, w.deadline);
  if (latest >= flight->deadline) return 0;
  // Every waiter left has a timer of its own (its deadline was earlier than the call's).
  flight->deadline = latest;
  return flight->start_returned && !flight->finished ? flight->upstream_id : 0;
}

void CallCoalescer::Cancel(uint64_t id) {
  Callback done;
  uint64_t cancel_id = 0;
  uint64_t move_id = 0;
  absl::Time move_to;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_waiter_.find(id);
    if (it == by_waiter_.end()) return;
    std::shared_ptr<Flight> flight = it->second;
    if (flight->waiters.size() > 1) {
      done = std::move(flight->waiters[id].done);
      move_id = RemoveWaiter(flight, id, &cancel_id);
      move_to = flight->deadline;
    } else {
      // The last waiter: the shared call is cancelled and reports to it, as an unshared call would.
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
  if (move_id != 0) upstream_->SetSharedDeadline(move_id, move_to);
  if (cancel_id != 0) upstream_->CancelShared(cancel_id);
}

void CallCoalescer::OnTimer(uint64_t id) {
  Callback done;
  uint64_t cancel_id = 0;
  uint64_t move_id = 0;
  absl::Time move_to;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_waiter_.find(id);
    if (it == by_waiter_.end()) return;  // answered already
    std::shared_ptr<Flight> flight = it->second;
    done = std::move(flight->waiters[id].done);
    // Its result, if the shared call is cancelled now, goes nowhere.
    move_id = RemoveWaiter(flight, id, &cancel_id);
    move_to = flight->deadline;
  }
  std::move(done)(MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                            "upstream: deadline reached before the answer"));
  if (move_id != 0) upstream_->SetSharedDeadline(move_id, move_to);
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
