#include "server/file_watcher.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "server/common/logging.h"

namespace palmgate {

FileWatcher::FileWatcher(std::vector<std::string> paths, absl::Duration interval, std::function<absl::Status()> on_change)
    : paths_(std::move(paths)), interval_(interval), on_change_(std::move(on_change)) {
  // Taken here, not on the thread: a change right after construction is a change.
  std::vector<std::string> initial = Snapshot();
  thread_ = std::thread([this, initial = std::move(initial)]() mutable { Run(std::move(initial)); });
}

FileWatcher::~FileWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

std::vector<std::string> FileWatcher::Snapshot() const {
  std::vector<std::string> out;
  for (const std::string& path : paths_) {
    struct stat st;
    if (path.empty() || ::stat(path.c_str(), &st) != 0) {
      out.emplace_back();
      continue;
    }
    out.push_back(absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                               st.st_mtim.tv_nsec));
  }
  return out;
}

void FileWatcher::Run(std::vector<std::string> handled) {
  // Between two logged failures of one change (unless the message changes).
  constexpr absl::Duration kFailureLogInterval = absl::Minutes(1);
  int failures = 0;                              // in a row, since the last success
  std::string last_logged;
  absl::Time last_logged_at = absl::InfinitePast();
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Wakes early only to stop.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_);
    if (stop_) return;
    mu_.Unlock();
    std::vector<std::string> now = Snapshot();
    if (now != handled) {
      const absl::Status s = on_change_();
      if (s.ok()) {
        // Taken before the call: a change during it is seen at the next check.
        handled = std::move(now);
        if (failures > 0) {
          Log(LogLevel::kInfo, "file change handled after failed attempts",
              LogFields().Add("failed_attempts", static_cast<int64_t>(failures)));
        }
        failures = 0;
        last_logged.clear();
        last_logged_at = absl::InfinitePast();
      } else {
        ++failures;
        const absl::Time at = absl::Now();
        if (s.message() != last_logged || at - last_logged_at >= kFailureLogInterval) {
          Log(LogLevel::kError, absl::StrCat(s.message(), "; retrying every ", absl::FormatDuration(interval_),
                                             " until it succeeds"),
              LogFields().Add("failed_attempts", static_cast<int64_t>(failures)));
          last_logged = std::string(s.message());
          last_logged_at = at;
        }
      }
    }
    mu_.Lock();
  }
}

}  // namespace palmgate
