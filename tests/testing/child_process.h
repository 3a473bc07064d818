// File: tests/testing/child_process.h
//
// ListeningProcess: runs a server binary of this project as a child process
// and waits for its start-up handshake, one stdout line `LISTENING <address>`
// (palmgate prints host:port, palmgate-sandbox a URL), read with poll() and a
// deadline: no sleeps. The child gets PR_SET_PDEATHSIG(SIGTERM) so a crashed
// test never leaves it behind (Linux ties that to the calling thread: start it
// from a thread that outlives it). The destructor sends SIGTERM and reaps it.
// The child's stderr is also copied into the run's log directory, and the key
// files it is given are recorded there (tests/testing/test_logs.h), for the
// secrets-in-logs scan.
//
// Thread safety: one owner per instance.
#ifndef PALMGATE_TESTS_TESTING_CHILD_PROCESS_H_
#define PALMGATE_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <cstdint>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace palmgate::testing {

// Runs `args` (args[0] is the binary path) to completion; returns its exit code.
absl::StatusOr<int> RunCommand(const std::vector<std::string>& args);

// Creates a fresh directory under $TEST_TMPDIR or /tmp.
absl::StatusOr<std::string> MakeTempDir(const std::string& prefix);

// RLIMIT_NOFILE set in the child before exec; 0: inherited.
struct OpenFilesLimit {
  uint64_t soft = 0;
  uint64_t hard = 0;
};

class ListeningProcess {
 public:
  // Starts `args` and returns once it printed `LISTENING <address>`. `stderr_path`,
  // when not empty, receives the child's stderr (else it goes to this process's
  // stderr); either way a copy goes to NewTestLogPath(args[0]) when collection is on.
  // `extra_env` ("NAME=value") is added to the inherited environment;
  // `open_files`, when set, is the child's descriptor limit.
  // kDeadlineExceeded when no handshake came within `timeout`; kInternal when
  // the child exited first (with its exit code in the message).
  static absl::StatusOr<std::unique_ptr<ListeningProcess>> Start(const std::vector<std::string>& args,
                                                                 absl::Duration timeout,
                                                                 const std::string& stderr_path = "",
                                                                 const std::vector<std::string>& extra_env = {},
                                                                 OpenFilesLimit open_files = {});
  ~ListeningProcess();
  ListeningProcess(const ListeningProcess&) = delete;
  ListeningProcess& operator=(const ListeningProcess&) = delete;

  // What followed "LISTENING " on the handshake line.
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }

  // Sends `signal` (the process keeps running or not, as it decides).
  void Signal(int signal) const;

  // Waits for the child to exit (and for its stderr to be copied out); returns
  // its exit code, or kInternal if it died from a signal.
  absl::StatusOr<int> Wait();

  // Sends SIGTERM and waits.
  absl::StatusOr<int> Stop();

 private:
  ListeningProcess() = default;
  void JoinStderrCopy();

  pid_t pid_ = -1;
  std::thread stderr_copy_;  // without a stderr_path: child stderr -> our stderr and the log directory
  // With a stderr_path the child writes it directly (tests read it while the
  // child runs, in the child's order); it is copied to the log directory when
  // the child is gone.
  std::string stderr_path_;
  std::string log_copy_path_;
  int stdout_fd_ = -1;
  std::string address_;
};

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_CHILD_PROCESS_H_
