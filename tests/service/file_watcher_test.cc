// FileWatcher (server/file_watcher.h): a change is reported, and a change
// whose handling failed is handled again at later checks until it succeeds
// (issue 13, edge F4: a key reload that failed for a passing reason, EMFILE,
// was never retried, and a Kubernetes Secret update happens once).
#include "server/file_watcher.h"

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::testing::HasSubstr;

size_t Occurrences(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// Counts calls and fails the first `failures` of them.
class Handler {
 public:
  explicit Handler(int failures) : failures_left_(failures) {}

  absl::Status operator()() {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (failures_left_ > 0) {
      --failures_left_;
      return absl::ResourceExhaustedError("test reload: Too many open files");
    }
    ++successes_;
    return absl::OkStatus();
  }

  // True once at least `calls` calls and `successes` successes happened within `timeout`.
  bool WaitFor(int calls, int successes, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, calls, successes]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_ >= calls && successes_ >= successes;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int failures_left_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  int successes_ ABSL_GUARDED_BY(mu_) = 0;
};

class FileWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::MakeTempDir("file_watcher");
    ASSERT_THAT(dir, IsOk());
    path_ = *dir + "/key.pem";
    ASSERT_THAT(WriteFile(path_, "one"), IsOk());
  }

  std::string path_;
};

TEST_F(FileWatcherTest, ChangeIsReportedOnceWhenHandled) {
  auto handler = std::make_shared<Handler>(/*failures=*/0);
  FileWatcher watcher({path_, ""}, absl::Milliseconds(5), [handler] { return (*handler)(); });
  ASSERT_THAT(WriteFile(path_, "second version"), IsOk());
  ASSERT_TRUE(handler->WaitFor(1, 1, absl::Seconds(30)));
  // Handled: no further call without a further change (many checks pass meanwhile).
  EXPECT_FALSE(handler->WaitFor(2, 1, absl::Milliseconds(200)));
  ASSERT_THAT(WriteFile(path_, "third"), IsOk());
  EXPECT_TRUE(handler->WaitFor(2, 2, absl::Seconds(30)));
}

TEST_F(FileWatcherTest, FailedHandlingIsRetriedUntilItSucceeds) {
  auto handler = std::make_shared<Handler>(/*failures=*/3);
  ::testing::internal::CaptureStderr();
  {
    FileWatcher watcher({path_}, absl::Milliseconds(5), [handler] { return (*handler)(); });
    ASSERT_THAT(WriteFile(path_, "second version"), IsOk());
    // One change only: three failed calls, then the one that succeeds.
    EXPECT_TRUE(handler->WaitFor(4, 1, absl::Seconds(30))) << handler->calls() << " calls";
    EXPECT_FALSE(handler->WaitFor(5, 1, absl::Milliseconds(200)));
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  // The failure is logged once (same message, within a minute), saying it is retried.
  EXPECT_EQ(Occurrences(log, "Too many open files"), 1u) << log;
  EXPECT_THAT(log, HasSubstr("retrying every 5ms"));
  EXPECT_THAT(log, HasSubstr("\"failed_attempts\":3"));
}

}  // namespace
}  // namespace palmgate
