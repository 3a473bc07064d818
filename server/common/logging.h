// File: server/common/logging.h
//
// Minimal line logging to stderr (Debian's Abseil has no absl/log). One call
// writes one whole line; lines from different threads never interleave.
// Callers must never pass secrets, Authorization headers or clear openids.
#ifndef PALMGATE_SERVER_COMMON_LOGGING_H_
#define PALMGATE_SERVER_COMMON_LOGGING_H_

#include "absl/strings/string_view.h"

namespace palmgate {

enum class LogLevel { kInfo, kWarning, kError };

// Writes "<RFC 3339 UTC time> <LEVEL> <message>\n" to stderr.
void Log(LogLevel level, absl::string_view message);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_LOGGING_H_
