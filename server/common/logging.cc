#include "server/common/logging.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/utf8.h"

namespace palmgate {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

// Appends `text` as a JSON string literal. Log values are nearly always plain
// printable ASCII: those are copied in one piece.
void AppendJsonQuoted(std::string* out, absl::string_view text) {
  out->push_back('"');
  const bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
  });
  if (plain) {
    out->append(text.data(), text.size());
    out->push_back('"');
    return;
  }
  const bool utf8 = IsValidUtf8(text);
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (u < 0x20 || u == 0x7f || (u >= 0x80 && !utf8)) {
          absl::StrAppendFormat(out, "\\u%04x", u);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string JsonQuote(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  AppendJsonQuoted(&out, text);
  return out;
}

void LogFields::AppendKey(absl::string_view key) {
  json_.push_back(',');
  AppendJsonQuoted(&json_, key);
  json_.push_back(':');
}

LogFields& LogFields::Add(absl::string_view key, absl::string_view value) {
  AppendKey(key);
  AppendJsonQuoted(&json_, value);
  return *this;
}

LogFields& LogFields::Add(absl::string_view key, int64_t value) {
  AppendKey(key);
  absl::StrAppend(&json_, value);
  return *this;
}

LogFields& LogFields::Add(absl::string_view key, double value) {
  AppendKey(key);
  if (std::isfinite(value)) {
    absl::StrAppendFormat(&json_, "%.3f", value);
  } else {
    json_.append("null");
  }
  return *this;
}

void SetMinLogLevel(LogLevel level) { min_level.store(static_cast<int>(level), std::memory_order_relaxed); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= min_level.load(std::memory_order_relaxed); }

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "debug") *level = LogLevel::kDebug;
  else if (t == "info") *level = LogLevel::kInfo;
  else if (t == "warning" || t == "warn") *level = LogLevel::kWarning;
  else if (t == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

void Log(LogLevel level, absl::string_view message) { Log(level, message, LogFields()); }

void Log(LogLevel level, absl::string_view message, const LogFields& fields) {
  if (!LogEnabled(level)) return;
  std::string line = absl::StrCat(
      "{\"time\":\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), "\",\"level\":\"",
      LevelName(level), "\",\"message\":", JsonQuote(message), fields.json(), "}\n");
  // One write(2) per line: atomic for pipes up to PIPE_BUF and never interleaved mid-line in practice.
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
}

}  // namespace palmgate
