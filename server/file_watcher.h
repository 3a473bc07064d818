// File: server/file_watcher.h
//
// FileWatcher: calls a function when any of a set of files changes (its
// device, inode, size or modification time), checked every `interval` on its
// own thread. stat() follows symbolic links, so a Kubernetes secret volume's
// atomic symlink swap counts as a change. Used to reload keys without a restart.
//
// A change counts as handled only once the function returns OK: after a
// failure (a passing one such as EMFILE, or a half-written file) the function
// runs again at every later check until it succeeds, so a change that happens
// once (a Kubernetes Secret update) is not lost. Failures are logged as errors
// with the note that the watcher retries: the first one after a change, then
// at most one a minute (or when the message changes).
//
// Thread safety: the callback runs on the watcher's thread; the destructor stops it.
#ifndef PALMGATE_SERVER_FILE_WATCHER_H_
#define PALMGATE_SERVER_FILE_WATCHER_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace palmgate {

class FileWatcher {
 public:
  // Starts watching `paths` (empty entries are ignored); their state is taken
  // before the constructor returns. `on_change` runs once
  // per check in which at least one file differs from what the last successful
  // `on_change` saw (from the start when none has succeeded yet). Its error
  // message is logged, so it must not hold secrets.
  FileWatcher(std::vector<std::string> paths, absl::Duration interval, std::function<absl::Status()> on_change);
  ~FileWatcher();
  FileWatcher(const FileWatcher&) = delete;
  FileWatcher& operator=(const FileWatcher&) = delete;

 private:
  // One string per file summarising what stat() says ("" when missing).
  std::vector<std::string> Snapshot() const;
  // The watching loop; `handled` is the state the files were in at construction.
  void Run(std::vector<std::string> handled);

  const std::vector<std::string> paths_;
  const absl::Duration interval_;
  const std::function<absl::Status()> on_change_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace palmgate

#endif  // PALMGATE_SERVER_FILE_WATCHER_H_
