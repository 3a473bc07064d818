// File: server/common/status_macros.h
//
// Propagation macros for absl::Status / absl::StatusOr, mirroring the
// ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN macros of newer Abseil releases
// (Debian 12's Abseil 20220623 does not ship them).
//
// Example:
//   absl::StatusOr<Key> LoadKey(absl::string_view path) {
//     PALMGATE_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
//     PALMGATE_RETURN_IF_ERROR(CheckPem(pem));
//     return Key::FromPem(pem);
//   }
#ifndef PALMGATE_SERVER_COMMON_STATUS_MACROS_H_
#define PALMGATE_SERVER_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function when not OK.
#define PALMGATE_RETURN_IF_ERROR(expr)                 \
  do {                                                 \
    ::absl::Status palmgate_status_ = (expr);          \
    if (!palmgate_status_.ok()) return palmgate_status_; \
  } while (false)

#define PALMGATE_STATUS_CONCAT_INNER_(a, b) a##b
#define PALMGATE_STATUS_CONCAT_(a, b) PALMGATE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status when not OK, otherwise
// move-assigns the value to `lhs` (which may be a declaration).
#define PALMGATE_ASSIGN_OR_RETURN(lhs, expr) \
  PALMGATE_ASSIGN_OR_RETURN_IMPL_(PALMGATE_STATUS_CONCAT_(palmgate_statusor_, __LINE__), lhs, expr)

#define PALMGATE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // PALMGATE_SERVER_COMMON_STATUS_MACROS_H_
