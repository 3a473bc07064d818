// File: server/common/logging.h
//
// Structured logging to stderr (Debian's Abseil has no absl/log): one JSON
// object per line, e.g.
//
//   {"time":"2025-05-20T08:00:00.123Z","level":"info","message":"rpc","method":"/palmgate.v1.PalmAuthorization/GetAuthorization","code":0}
//
// One call writes one whole line; lines from different threads never
// interleave. Callers must never pass secrets, Authorization headers or clear
// openids (hash them: service::OpenidTag).
//
// Example:
//   Log(LogLevel::kInfo, "rpc", LogFields().Add("method", method).Add("code", 0).Add("latency_ms", 1.5));
#ifndef PALMGATE_SERVER_COMMON_LOGGING_H_
#define PALMGATE_SERVER_COMMON_LOGGING_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace palmgate {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// LogFields
//
// Extra members of one log line, in insertion order. Strings are JSON-escaped
// (bytes of invalid UTF-8 become \u00XX escapes); keys are trusted literals.
class LogFields {
 public:
  LogFields& Add(absl::string_view key, absl::string_view value);
  LogFields& Add(absl::string_view key, const char* value) { return Add(key, absl::string_view(value)); }
  LogFields& Add(absl::string_view key, const std::string& value) { return Add(key, absl::string_view(value)); }
  LogFields& Add(absl::string_view key, int64_t value);
  LogFields& Add(absl::string_view key, int value) { return Add(key, static_cast<int64_t>(value)); }
  LogFields& Add(absl::string_view key, double value);
  // Adds `value` as a string unless it is empty.
  LogFields& AddIfNotEmpty(absl::string_view key, absl::string_view value) {
    return value.empty() ? *this : Add(key, value);
  }

  // The members, each prefixed with a comma: `,"key":value...`.
  const std::string& json() const { return json_; }

 private:
  // Appends `,"key":`.
  void AppendKey(absl::string_view key);

  std::string json_;
};

// Returns `text` as a JSON string literal (with the quotes).
std::string JsonQuote(absl::string_view text);

// Writes {"time":<RFC 3339 UTC>,"level":…,"message":…,<fields>} and a newline
// to stderr, unless `level` is below the minimum level.
void Log(LogLevel level, absl::string_view message);
void Log(LogLevel level, absl::string_view message, const LogFields& fields);

// Lines below `level` are dropped (default kInfo). Thread-safe.
void SetMinLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Parses "debug", "info", "warning" (or "warn"), "error"; false otherwise.
bool ParseLogLevel(absl::string_view text, LogLevel* level);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_LOGGING_H_
