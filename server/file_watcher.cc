#include "server/file_watcher.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"

namespace palmgate {

FileWatcher::FileWatcher(std::vector<std::string> paths, absl::Duration interval, std::function<void()> on_change)
    : paths_(std::move(paths)), interval_(interval), on_change_(std::move(on_change)) {
  thread_ = std::thread([this] { Run(); });
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

void FileWatcher::Run() {
  std::vector<std::string> last = Snapshot();
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Wakes early only to stop.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_);
    if (stop_) return;
    mu_.Unlock();
    std::vector<std::string> now = Snapshot();
    if (now != last) {
      last = std::move(now);
      on_change_();
    }
    mu_.Lock();
  }
}

}  // namespace palmgate
