#include "server/wechatpay/call_coalescer.h"

#include <map>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/wechatpay/error.h"

namespace palmgate::wechatpay {
namespace {

using Result = absl::StatusOr<AuthorizationResult>;

// An in-process upstream: calls stay open until the test completes them; timers fire when the test says.
class FakeUpstream final : public CallCoalescer::Upstream {
 public:
  struct Started {
    std::string openid;
    std::string organization_id;
    absl::Time deadline;
    CallCoalescer::Callback done;
  };

  uint64_t StartShared(absl::string_view openid, absl::string_view organization_id, absl::Time deadline,
                       CallCoalescer::Callback done) override {
    const uint64_t id = ++next_;
    if (fail_at_once) {
      std::move(done)(absl::InvalidArgumentError("bad openid"));
      return 0;
    }
    calls[id] = Started{std::string(openid), std::string(organization_id), deadline, std::move(done)};
    return id;
  }
  void CancelShared(uint64_t id) override {
    cancelled.push_back(id);
    Complete(id, MakeError(absl::StatusCode::kCancelled, ErrorReason::kCancelled, "upstream: call cancelled"));
  }
  void SetSharedDeadline(uint64_t id, absl::Time deadline) override { calls[id].deadline = deadline; }
  void ScheduleAt(absl::Time when, absl::AnyInvocable<void() &&> fn) override {
    timers.emplace(when, std::move(fn));
  }

  void Complete(uint64_t id, Result r) {
    auto it = calls.find(id);
    if (it == calls.end()) return;
    CallCoalescer::Callback done = std::move(it->second.done);
    calls.erase(it);
    std::move(done)(std::move(r));
  }
  // Fires the timers due by `now`.
  void RunTimersUntil(absl::Time now) {
    while (!timers.empty() && timers.begin()->first <= now) {
      auto fn = std::move(timers.begin()->second);
      timers.erase(timers.begin());
      std::move(fn)();
    }
  }

  bool fail_at_once = false;
  std::map<uint64_t, Started> calls;  // open calls
  std::vector<uint64_t> cancelled;
  std::multimap<absl::Time, absl::AnyInvocable<void() &&>> timers;
  uint64_t next_ = 0;
};

AuthorizationResult Answer(const std::string& openid) {
  AuthorizationResult r;
  r.openid = openid;
  r.organization_id = "1004";
  r.state = "AUTHORIZATION_STATE_ON";
  r.request_id = "req-1";
  return r;
}

class CallCoalescerTest : public ::testing::Test {
 protected:
  // Joins and records what the waiter receives into results_[slot].
  uint64_t Join(int slot, const std::string& openid, absl::Time deadline, const std::string& org = "1004") {
    return coalescer_.Join(openid, org, deadline, [this, slot](Result r) { results_[slot] = std::move(r); });
  }

  const absl::Time t0_ = absl::FromUnixSeconds(1700000000);
  FakeUpstream upstream_;
  CallCoalescer coalescer_{&upstream_};
  std::map<int, Result> results_;
};

TEST_F(CallCoalescerTest, IdenticalConcurrentCallersShareOneUpstreamCall) {
  Join(1, "o1", t0_ + absl::Seconds(2));
  Join(2, "o1", t0_ + absl::Seconds(2));
  Join(3, "o1", t0_ + absl::Seconds(2));
  ASSERT_EQ(upstream_.calls.size(), 1u);
  upstream_.Complete(upstream_.calls.begin()->first, Answer("o1"));
  ASSERT_EQ(results_.size(), 3u);
  for (auto& [slot, r] : results_) {
    ASSERT_TRUE(r.ok()) << slot;
    EXPECT_EQ(r->openid, "o1");
    EXPECT_EQ(r->request_id, "req-1");
  }
  EXPECT_EQ(coalescer_.GetStats().waiters, 3);
  EXPECT_EQ(coalescer_.GetStats().shared_calls, 1);
}

TEST_F(CallCoalescerTest, DifferentOpenidOrOrganizationIsNotShared) {
  Join(1, "o1", t0_ + absl::Seconds(2), "1004");
  Join(2, "o1", t0_ + absl::Seconds(2), "1005");
  Join(3, "o2", t0_ + absl::Seconds(2), "1004");
  EXPECT_EQ(upstream_.calls.size(), 3u);
}

TEST_F(CallCoalescerTest, KeyDoesNotConfuseConcatenations) {
  Join(1, "ab", t0_ + absl::Seconds(2), "c");
  Join(2, "a", t0_ + absl::Seconds(2), "bc");
  EXPECT_EQ(upstream_.calls.size(), 2u);
}

TEST_F(CallCoalescerTest, ErrorsAreSharedToo) {
  Join(1, "o1", t0_ + absl::Seconds(2));
  Join(2, "o1", t0_ + absl::Seconds(2));
  upstream_.Complete(upstream_.calls.begin()->first,
                     MakeError(absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable, "upstream: 503"));
  ASSERT_EQ(results_.size(), 2u);
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(results_[2].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetReason(results_[2].status()), ErrorReason::kUpstreamUnavailable);
}

TEST_F(CallCoalescerTest, ResultIsNeverCachedAfterTheCallCompletes) {
  Join(1, "o1", t0_ + absl::Seconds(2));
  upstream_.Complete(upstream_.calls.begin()->first, Answer("o1"));
  Join(2, "o1", t0_ + absl::Seconds(2));
  EXPECT_EQ(results_.count(2), 0u);
  EXPECT_EQ(upstream_.calls.size(), 1u);  // a new upstream call
  EXPECT_EQ(coalescer_.GetStats().shared_calls, 2);
}

TEST_F(CallCoalescerTest, SingleCallerNeedsNoTimerAndKeepsItsDeadline) {
  Join(1, "o1", t0_ + absl::Seconds(2));
  EXPECT_TRUE(upstream_.timers.empty());
  EXPECT_EQ(upstream_.calls.begin()->second.deadline, t0_ + absl::Seconds(2));
}

TEST_F(CallCoalescerTest, EarlierDeadlineWaiterTimesOutAloneWithoutKillingTheSharedCall) {
  Join(1, "o1", t0_ + absl::Seconds(10));
  Join(2, "o1", t0_ + absl::Seconds(5));
  upstream_.RunTimersUntil(t0_ + absl::Seconds(5));
  ASSERT_EQ(results_.count(2), 1u);
  EXPECT_EQ(results_[2].status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(GetReason(results_[2].status()), ErrorReason::kUpstreamTimeout);
  EXPECT_TRUE(upstream_.cancelled.empty());
  EXPECT_EQ(results_.count(1), 0u);
  upstream_.Complete(upstream_.calls.begin()->first, Answer("o1"));
  ASSERT_TRUE(results_[1].ok());
  EXPECT_EQ(results_.size(), 2u);
}

TEST_F(CallCoalescerTest, LaterDeadlineWaiterExtendsTheSharedCall) {
  Join(1, "o1", t0_ + absl::Seconds(5));
  Join(2, "o1", t0_ + absl::Seconds(10));
  const uint64_t id = upstream_.calls.begin()->first;
  EXPECT_EQ(upstream_.calls[id].deadline, t0_ + absl::Seconds(10));
  upstream_.RunTimersUntil(t0_ + absl::Seconds(5));  // the first caller's own deadline
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(upstream_.cancelled.empty());
  upstream_.Complete(id, Answer("o1"));
  EXPECT_TRUE(results_[2].ok());
}

TEST_F(CallCoalescerTest, FirstCallersShortDeadlineNeverEndsTheSharedCallForTheOthers) {
  Join(1, "o1", t0_ + absl::Milliseconds(150));
  Join(2, "o1", t0_ + absl::Seconds(2));
  Join(3, "o1", t0_ + absl::Seconds(1));
  const uint64_t id = upstream_.calls.begin()->first;
  upstream_.RunTimersUntil(t0_ + absl::Milliseconds(150));
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(upstream_.cancelled.empty());
  EXPECT_EQ(upstream_.calls[id].deadline, t0_ + absl::Seconds(2));  // the latest of those still waiting
  upstream_.Complete(id, Answer("o1"));
  EXPECT_TRUE(results_[2].ok());
  EXPECT_TRUE(results_[3].ok());
}

TEST_F(CallCoalescerTest, WaiterWithTheLatestDeadlineLeavingMovesTheSharedDeadlineToTheLatestLeft) {
  Join(1, "o1", t0_ + absl::Seconds(5));
  const uint64_t late = Join(2, "o1", t0_ + absl::Seconds(10));
  Join(3, "o1", t0_ + absl::Seconds(7));
  const uint64_t id = upstream_.calls.begin()->first;
  ASSERT_EQ(upstream_.calls[id].deadline, t0_ + absl::Seconds(10));
  coalescer_.Cancel(late);
  EXPECT_EQ(upstream_.calls[id].deadline, t0_ + absl::Seconds(7));
  EXPECT_TRUE(upstream_.cancelled.empty());
  upstream_.RunTimersUntil(t0_ + absl::Seconds(7));  // both remaining waiters' own timers
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(results_[3].status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(upstream_.cancelled, ::testing::ElementsAre(id));  // none left: cancelled
}

TEST_F(CallCoalescerTest, TimerOfAnAnsweredWaiterDoesNothing) {
  Join(1, "o1", t0_ + absl::Seconds(10));
  Join(2, "o1", t0_ + absl::Seconds(5));
  upstream_.Complete(upstream_.calls.begin()->first, Answer("o1"));
  upstream_.RunTimersUntil(t0_ + absl::Seconds(60));
  EXPECT_TRUE(results_[1].ok());
  EXPECT_TRUE(results_[2].ok());
}

TEST_F(CallCoalescerTest, CancelledWaiterLeavesAloneWhileOthersWait) {
  const uint64_t a = Join(1, "o1", t0_ + absl::Seconds(2));
  Join(2, "o1", t0_ + absl::Seconds(2));
  coalescer_.Cancel(a);
  ASSERT_EQ(results_.count(1), 1u);
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(upstream_.cancelled.empty());
  upstream_.Complete(upstream_.calls.begin()->first, Answer("o1"));
  EXPECT_TRUE(results_[2].ok());
  coalescer_.Cancel(a);  // finished: ignored
}

TEST_F(CallCoalescerTest, SharedCallIsCancelledWhenTheLastWaiterCancels) {
  const uint64_t a = Join(1, "o1", t0_ + absl::Seconds(2));
  const uint64_t b = Join(2, "o1", t0_ + absl::Seconds(2));
  const uint64_t id = upstream_.calls.begin()->first;
  coalescer_.Cancel(a);
  EXPECT_TRUE(upstream_.cancelled.empty());
  coalescer_.Cancel(b);
  EXPECT_THAT(upstream_.cancelled, ::testing::ElementsAre(id));
  EXPECT_EQ(results_[2].status().code(), absl::StatusCode::kCancelled);
}

TEST_F(CallCoalescerTest, SharedCallIsCancelledWhenTheLastWaiterTimesOut) {
  Join(1, "o1", t0_ + absl::Seconds(5));
  Join(2, "o1", t0_ + absl::Seconds(10));
  const uint64_t id = upstream_.calls.begin()->first;
  upstream_.RunTimersUntil(t0_ + absl::Seconds(5));
  EXPECT_TRUE(upstream_.cancelled.empty());
  // The second waiter's deadline is the shared call's own; as the last waiter it cancels.
  coalescer_.Cancel(2);
  EXPECT_THAT(upstream_.cancelled, ::testing::ElementsAre(id));
}

TEST_F(CallCoalescerTest, CallerArrivingAfterEveryoneLeftStartsAFreshCall) {
  const uint64_t a = Join(1, "o1", t0_ + absl::Seconds(2));
  coalescer_.Cancel(a);
  Join(2, "o1", t0_ + absl::Seconds(2));
  EXPECT_EQ(coalescer_.GetStats().shared_calls, 2);
}

TEST_F(CallCoalescerTest, CallFinishedDuringStartReturnsZero) {
  upstream_.fail_at_once = true;
  EXPECT_EQ(Join(1, "o1", t0_ + absl::Seconds(2)), 0u);
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace palmgate::wechatpay
