// File: sandbox/url_util.h
//
// Strict URL helpers for the sandbox: splitting a raw HTTP request-target into
// path and query, percent-decoding (RFC 3986) and query-string lookup.
//
// Decoding rule (documented behaviour of the sandbox): `%XX` escapes are
// decoded, every other byte is kept verbatim. In particular `+` is a literal
// plus sign, in the path AND in the query (WeChat Pay signs the raw target, and
// Java-style form encoders that send a space as `+` would otherwise be
// ambiguous). A space must be sent as `%20`.
//
// Thread safety: stateless free functions.
#ifndef PALMGATE_SANDBOX_URL_UTIL_H_
#define PALMGATE_SANDBOX_URL_UTIL_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/utf8.h"

namespace palmgate::sandbox {

// Splits `target` at the first '?'. `query` is empty (and `has_query` false)
// when there is no '?'.
struct SplitTarget {
  absl::string_view path;
  absl::string_view query;
  bool has_query = false;
};
SplitTarget SplitRequestTarget(absl::string_view target);

// Decodes `%XX` escapes (hex digits in either case). kInvalidArgument for a
// '%' not followed by two hex digits. '+' is NOT turned into a space.
absl::StatusOr<std::string> PercentDecode(absl::string_view text);

// Returns the raw (still encoded) value of the first `name` parameter in
// `query` ("a=1&b=2"), or nullopt when absent. A parameter without '=' has an
// empty value. Parameter names are compared after strict percent-decoding.
absl::StatusOr<std::optional<std::string>> FindQueryParameter(absl::string_view query,
                                                              absl::string_view name);

// True when `text` is well-formed UTF-8 (server/common/utf8.h).
using ::palmgate::IsValidUtf8;

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_URL_UTIL_H_
