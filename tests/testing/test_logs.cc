#include "tests/testing/test_logs.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/file_util.h"

namespace palmgate::testing {
namespace {

std::atomic<int> next_id{0};

// "<test binary>.<pid>.<n>": unique within the run.
std::string UniqueName() {
  return absl::StrCat(program_invocation_short_name, ".", ::getpid(), ".", next_id.fetch_add(1));
}

std::string Basename(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (1 << 20);
}

}  // namespace

std::string TestLogDir() {
  const char* env = std::getenv("PALMGATE_TEST_LOG_DIR");
  std::string dir = env != nullptr ? env : PALMGATE_TEST_LOG_DIR_DEFAULT;
  if (dir.empty()) return dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  return dir;
}

std::string NewTestLogPath(absl::string_view process_name) {
  const std::string dir = TestLogDir();
  if (dir.empty()) return dir;
  return absl::StrCat(dir, "/", Basename(process_name), ".", UniqueName(), ".log");
}

void RecordTestSecretFiles(const std::vector<std::string>& paths) {
  const std::string dir = TestLogDir();
  if (dir.empty()) return;
  const std::string target = absl::StrCat(dir, "/secrets/", UniqueName());
  std::error_code ec;
  std::filesystem::create_directories(target, ec);
  for (const std::string& path : paths) {
    if (!IsRegularFile(path)) continue;
    absl::StatusOr<std::string> contents = ReadFile(path);
    if (contents.ok()) (void)WriteFile(absl::StrCat(target, "/", Basename(path)), *contents, 0600);
  }
}

void RecordSecretsPassedTo(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> secret_files;
  auto consider = [&](absl::string_view name, const std::string& value) {
    if (value.empty() || !IsRegularFile(value)) return;
    const std::string lower = absl::AsciiStrToLower(name);
    bool secret = absl::StrContains(lower, "apiv3") || absl::StrContains(lower, "seed");
    if (!secret) {
      absl::StatusOr<std::string> contents = ReadFile(value);
      secret = contents.ok() && absl::StrContains(*contents, "PRIVATE KEY-----");
    }
    if (secret) secret_files.push_back(value);
  };
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t eq = a.find('=');
    if (absl::StartsWith(a, "-") && eq != std::string::npos) {
      consider(a.substr(0, eq), a.substr(eq + 1));
    } else {
      consider(absl::StartsWith(args[i - 1], "-") ? args[i - 1] : "", a);
    }
  }
  for (const std::string& e : env) {
    const size_t eq = e.find('=');
    if (eq != std::string::npos) consider(e.substr(0, eq), e.substr(eq + 1));
  }
  if (!secret_files.empty()) RecordTestSecretFiles(secret_files);
}

}  // namespace palmgate::testing
