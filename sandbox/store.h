// File: sandbox/store.h
//
// The sandbox's user data: palm-scan authorization records looked up by
// (openid, organization_id), loaded from a seed JSON file:
//
//   {"users":[{"openid":"o1","organization_id":"1004",
//              "state":"AUTHORIZATION_STATE_ON",
//              "authorize_time":"2024-05-01T10:00:00+08:00",
//              "fault":"status=500"}]}
//
// `state` is passed through verbatim (default AUTHORIZATION_STATE_NONE), so
// tests can seed states the gateway does not know yet. `authorize_time` is
// optional and omitted from responses when absent. `fault` (optional) is a
// fault spec (fault.h) applied to every request for that user when the
// sandbox runs with --faults; it is validated at load time.
//
// Thread safety: immutable after construction; Find() is thread-safe.
#ifndef PALMGATE_SANDBOX_STORE_H_
#define PALMGATE_SANDBOX_STORE_H_

#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::sandbox {

inline constexpr absl::string_view kDefaultState = "AUTHORIZATION_STATE_NONE";

struct SeedUser {
  std::string openid;
  std::string organization_id;
  std::string state = std::string(kDefaultState);
  std::optional<std::string> authorize_time;
  std::optional<std::string> fault;
};

class UserStore {
 public:
  UserStore() = default;

  // Parses seed JSON. kInvalidArgument naming the entry for malformed JSON,
  // missing openid/organization_id, non-string fields, duplicate users or an
  // invalid fault spec.
  static absl::StatusOr<UserStore> FromJson(absl::string_view json);

  // Returns the user or nullptr.
  const SeedUser* Find(absl::string_view openid, absl::string_view organization_id) const;

  size_t size() const { return users_.size(); }

 private:
  absl::flat_hash_map<std::pair<std::string, std::string>, SeedUser> users_;
};

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_STORE_H_
