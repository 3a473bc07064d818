// File: server/common/file_util.h
//
// Whole-file reads and writes with Status errors that name the path.
#ifndef PALMGATE_SERVER_COMMON_FILE_UTIL_H_
#define PALMGATE_SERVER_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate {

// Reads the file at `path`. kNotFound, kPermissionDenied or kInvalidArgument
// (a directory, or larger than `max_bytes`), each naming the path.
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = 1 << 20);

// Writes `contents` to `path` atomically with exactly the permission bits
// `mode`: into a new temporary file "PATH.tmp.PID" (created with O_EXCL and
// `mode`, so never through a symlink or into another file), fchmod, fsync,
// then renamed over `path`. kAlreadyExists when the temporary name is taken
// (a leftover or planted file; so concurrent writes of one path from one
// process are not supported); any other failure (write, fchmod, fsync,
// rename) returns its errno as a status naming the file, removes the
// temporary file and leaves `path` as it was.
absl::Status WriteFile(const std::string& path, absl::string_view contents, unsigned mode = 0644);

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_FILE_UTIL_H_
