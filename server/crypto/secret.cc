#include "server/crypto/secret.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace palmgate::crypto {
namespace {

// Same codes and wording as palmgate::ReadFile.
absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path) {
  std::string msg = absl::StrCat(what, " \"", path, "\": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    default: return absl::InvalidArgumentError(msg);
  }
}

// Closes the descriptor on every path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

void WipeString(std::string& s) {
  // resize() within the capacity never reallocates; it makes every allocated
  // byte part of the string, so the cleanse covers what earlier, longer
  // contents left beyond size().
  s.resize(s.capacity());
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

SecretString::SecretString(std::string value) : value_(std::move(value)) { WipeString(value); }

SecretString& SecretString::operator=(const SecretString& other) {
  if (this != &other) {
    WipeString(value_);
    value_ = other.value_;  // fits the kept allocation or reallocates from an all-zero one
  }
  return *this;
}

SecretString::SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) {
  // A short value is copied out of the source's inline buffer, not stolen: wipe what stays there.
  WipeString(other.value_);
}

SecretString& SecretString::operator=(SecretString&& other) noexcept {
  if (this != &other) {
    WipeString(value_);
    value_ = std::move(other.value_);
    WipeString(other.value_);
  }
  return *this;
}

void SecretString::StripTrailingWhitespace() {
  size_t n = value_.size();
  while (n > 0 && absl::ascii_isspace(static_cast<unsigned char>(value_[n - 1]))) --n;
  // Zero the tail before shortening, so nothing stays beyond size().
  OPENSSL_cleanse(value_.data() + n, value_.size() - n);
  value_.resize(n);
}

absl::StatusOr<SecretString> ReadSecretFile(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is larger than ", max_bytes, " bytes"));
  }
  // Read straight into the string's own allocation: sized from fstat (+1 to see
  // EOF without growing), grown by copy-then-wipe if the file grew meanwhile.
  std::string buf(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t used = 0;
  for (;;) {
    if (used == buf.size()) {
      if (buf.size() > max_bytes) {
        WipeString(buf);
        return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is larger than ", max_bytes, " bytes"));
      }
      std::string bigger(buf.size() * 2, '\0');
      std::memcpy(bigger.data(), buf.data(), used);
      WipeString(buf);
      buf.swap(bigger);
    }
    ssize_t n = ::read(fd.get(), buf.data() + used, buf.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      WipeString(buf);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (used > max_bytes) {
    WipeString(buf);
    return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is larger than ", max_bytes, " bytes"));
  }
  buf.resize(used);  // shrinking keeps the allocation; the spare bytes were never written
  SecretString out(std::move(buf));
  WipeString(buf);
  return out;
}

}  // namespace palmgate::crypto
