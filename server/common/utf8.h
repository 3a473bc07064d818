// File: server/common/utf8.h
//
// UTF-8 validation, shared by the gateway's request checks and the sandbox's
// path decoding (a low-level helper: no message format lives here).
#ifndef PALMGATE_SERVER_COMMON_UTF8_H_
#define PALMGATE_SERVER_COMMON_UTF8_H_

#include "absl/strings/string_view.h"

namespace palmgate {

// Returns true when `text` is well-formed UTF-8: no overlong forms, no
// surrogates (U+D800–U+DFFF), nothing above U+10FFFF, no truncated sequence.
bool IsValidUtf8(absl::string_view text);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_UTF8_H_
