// File: server/common/request_tags.h
//
// Correlation ids for one RPC's log line: the caller's `x-request-id` (kept
// when it is a sane token, else replaced by a generated one) and the W3C trace
// id from a `traceparent` header (https://www.w3.org/TR/trace-context/).
#ifndef PALMGATE_SERVER_COMMON_REQUEST_TAGS_H_
#define PALMGATE_SERVER_COMMON_REQUEST_TAGS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace palmgate {

// Returns `from_caller` when it is 1-128 characters of [A-Za-z0-9._:/+=-];
// otherwise a fresh 32-hex-digit id.
std::string RequestIdOrNew(absl::string_view from_caller);

// Returns the 32-hex-digit trace id of a valid version-00 `traceparent`
// ("00-<trace-id>-<parent-id>-<flags>", trace id not all zeros), or "".
std::string TraceIdFromTraceparent(absl::string_view traceparent);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_REQUEST_TAGS_H_
