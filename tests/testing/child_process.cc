#include "tests/testing/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/testing/test_logs.h"

namespace palmgate::testing {
namespace {

// fork/exec `args` with stdout to `stdout_fd` (or inherited when -1), stderr to
// `stderr_fd` (or inherited when -1).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, int stdout_fd, int stderr_fd,
                            const std::vector<std::string>& extra_env = {}, OpenFilesLimit open_files = {}) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  for (const std::string& e : extra_env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Child: async-signal-safe calls only. Descriptors are O_CLOEXEC, dup2 clears it.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);
    if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
    if (stderr_fd >= 0) ::dup2(stderr_fd, STDERR_FILENO);
    if (open_files.hard > 0) {
      const rlimit limit{static_cast<rlim_t>(open_files.soft), static_cast<rlim_t>(open_files.hard)};
      if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(125);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Writes all of `data` to `fd`; gives up on errors (a lost log copy must not fail a test).
void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

// Copies `in` to `out` and `copy` until EOF (the child and every holder of the
// pipe's write end are gone), then closes all three.
void CopyStderr(int in, int out, int copy) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    WriteAll(out, buf, static_cast<size_t>(n));
    WriteAll(copy, buf, static_cast<size_t>(n));
  }
  ::close(in);
  ::close(out);
  ::close(copy);
}

absl::StatusOr<int> WaitExit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return absl::InternalError(absl::StrCat("child died from signal ", WTERMSIG(status)));
}

}  // namespace

absl::StatusOr<std::string> MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/", prefix, "-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  return pattern;
}

absl::StatusOr<int> RunCommand(const std::vector<std::string>& args) {
  absl::StatusOr<pid_t> pid = Spawn(args, -1, -1);
  if (!pid.ok()) return pid.status();
  return WaitExit(*pid);
}

absl::StatusOr<std::unique_ptr<ListeningProcess>> ListeningProcess::Start(const std::vector<std::string>& args,
                                                                          absl::Duration timeout,
                                                                          const std::string& stderr_path,
                                                                          const std::vector<std::string>& extra_env,
                                                                          OpenFilesLimit open_files) {
  std::unique_ptr<ListeningProcess> p(new ListeningProcess());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  int err_fd = -1;
  if (!stderr_path.empty()) {
    err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_fd < 0) return absl::InternalError(absl::StrCat("open ", stderr_path, ": ", std::strerror(errno)));
  }
  // Log collection (tests/testing/test_logs.h): with a stderr_path the child
  // writes it directly and the file is copied to the log directory once the
  // child is gone (tests read it while the child runs, in the child's order);
  // without one, a thread copies the child's stderr to ours and to the log directory.
  int child_err_fd = err_fd;
  int copy_fds[2] = {-1, -1};
  int copy_file = -1;
  const std::string copy_path = NewTestLogPath(args.empty() ? "process" : args[0]);
  if (!copy_path.empty()) RecordSecretsPassedTo(args, extra_env);
  if (!copy_path.empty() && err_fd >= 0) {
    p->stderr_path_ = stderr_path;
    p->log_copy_path_ = copy_path;
  } else if (!copy_path.empty()) {
    copy_file = ::open(copy_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (copy_file >= 0 && ::pipe2(copy_fds, O_CLOEXEC) == 0) {
      child_err_fd = copy_fds[1];
    } else if (copy_file >= 0) {
      ::close(copy_file);
      copy_file = -1;
    }
  }
  absl::StatusOr<pid_t> pid = Spawn(args, fds[1], child_err_fd, extra_env, open_files);
  ::close(fds[1]);
  if (copy_fds[1] >= 0) ::close(copy_fds[1]);
  if (copy_fds[0] >= 0) {
    const int out = err_fd >= 0 ? err_fd : ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    p->stderr_copy_ = std::thread(CopyStderr, copy_fds[0], out, copy_file);
  } else if (err_fd >= 0) {
    ::close(err_fd);
  }
  if (!pid.ok()) {
    ::close(fds[0]);
    p->JoinStderrCopy();
    return pid.status();
  }
  p->pid_ = *pid;
  p->stdout_fd_ = fds[0];

  std::string line;
  const absl::Time deadline = absl::Now() + timeout;
  while (line.find('\n') == std::string::npos) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("no LISTENING line in time from: ", absl::StrJoin(args, " ")));
    }
    pollfd pfd = {p->stdout_fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (rc < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (rc <= 0) continue;
    char buf[512];
    ssize_t n = ::read(p->stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::StatusOr<int> code = WaitExit(p->pid_);
      p->pid_ = -1;
      p->JoinStderrCopy();
      return absl::InternalError(absl::StrCat("exited before LISTENING (",
                                              code.ok() ? absl::StrCat("exit ", *code) : code.status().ToString(),
                                              "): ", absl::StrJoin(args, " ")));
    }
    line.append(buf, static_cast<size_t>(n));
  }
  absl::string_view first(line.data(), line.find('\n'));
  if (!absl::ConsumePrefix(&first, "LISTENING ")) {
    return absl::InternalError(absl::StrCat("unexpected handshake: ", first));
  }
  p->address_ = std::string(first);
  return p;
}

void ListeningProcess::Signal(int signal) const {
  if (pid_ > 0) ::kill(pid_, signal);
}

absl::StatusOr<int> ListeningProcess::Wait() {
  if (pid_ < 0) return absl::FailedPreconditionError("not running");
  absl::StatusOr<int> code = WaitExit(pid_);
  pid_ = -1;
  JoinStderrCopy();
  return code;
}

void ListeningProcess::JoinStderrCopy() {
  if (stderr_copy_.joinable()) stderr_copy_.join();
  if (!log_copy_path_.empty()) {
    std::error_code ignored;  // a lost log copy must not fail a test
    std::filesystem::copy_file(stderr_path_, log_copy_path_, std::filesystem::copy_options::overwrite_existing, ignored);
    log_copy_path_.clear();
  }
}

absl::StatusOr<int> ListeningProcess::Stop() {
  Signal(SIGTERM);
  return Wait();
}

ListeningProcess::~ListeningProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    (void)WaitExit(pid_);
  }
  JoinStderrCopy();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

}  // namespace palmgate::testing
