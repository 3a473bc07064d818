// File: server/common/utf8.h
//
// UTF-8 validation, shared by the gateway's request checks and the sandbox's
// path decoding (a low-level helper: no message format lives here).
#ifndef PALMGATE_SERVER_COMMON_UTF8_H_
#define PALMGATE_SERVER_COMMON_UTF8_H_

#include <string>

#include "absl/strings/string_view.h"

namespace palmgate {

// Returns true when `text` is well-formed UTF-8: no overlong forms, no
// surrogates (U+D800–U+DFFF), nothing above U+10FFFF, no truncated sequence.
bool IsValidUtf8(absl::string_view text);

// Returns `text` as valid UTF-8 of at most `max_bytes` bytes, for outside text
// kept in errors and answers (proto3 strings must be UTF-8): every byte that
// does not start a well-formed sequence becomes '?', and a cut at `max_bytes`
// never splits a character.
std::string ToBoundedUtf8(absl::string_view text, size_t max_bytes);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_UTF8_H_
