#include "server/common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace palmgate {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path) {
  std::string msg = absl::StrCat(what, " \"", path, "\": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EEXIST: return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    default: return absl::InvalidArgumentError(msg);
  }
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is not a regular file"));
  }
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is larger than ", max_bytes, " bytes"));
    }
  }
  ::close(fd);
  return out;
}

absl::Status WriteFile(const std::string& path, absl::string_view contents, unsigned mode) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  // O_EXCL (with O_CREAT, never follows a symlink): a file or link already at
  // the temporary name, stale or planted, is refused instead of being
  // truncated or written through. The mode is set at creation, so a private
  // file is never readable by others, not even before the fchmod below.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
  if (fd < 0) return ErrnoStatus(errno, "create", tmp);
  // Past this point every failure removes the temporary file; `path` is untouched.
  auto fail = [&tmp](int fd_to_close, int err, absl::string_view what) {
    if (fd_to_close >= 0) ::close(fd_to_close);
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, what, tmp);
  };
  size_t off = 0;
  while (off < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + off, contents.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(fd, errno, "write");
    }
    off += static_cast<size_t>(n);
  }
  // open() applied the umask; this gives the exact bits asked for (0644 stays
  // 0644 under umask 077). A failure is an error, not a file left with other bits.
  if (::fchmod(fd, mode & 07777) != 0) return fail(fd, errno, "chmod");
  if (::fsync(fd) != 0) return fail(fd, errno, "fsync");
  if (::close(fd) != 0) return fail(-1, errno, "close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "rename", path);
  }
  return absl::OkStatus();
}

}  // namespace palmgate
