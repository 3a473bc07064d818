#include "sandbox/store.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "sandbox/fault.h"

namespace palmgate::sandbox {

absl::StatusOr<UserStore> UserStore::FromJson(absl::string_view json) {
  nlohmann::json doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("seed: not a JSON object");
  UserStore store;
  auto users = doc.find("users");
  if (users == doc.end()) return store;
  if (!users->is_array()) return absl::InvalidArgumentError("seed: \"users\" is not an array");
  size_t index = 0;
  for (const nlohmann::json& u : *users) {
    std::string where = absl::StrCat("seed: users[", index++, "]");
    if (!u.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
    SeedUser user;
    auto get = [&](const char* key, bool required, std::optional<std::string>* out) -> absl::Status {
      auto it = u.find(key);
      if (it == u.end() || it->is_null()) {
        if (required) return absl::InvalidArgumentError(absl::StrCat(where, " has no \"", key, "\""));
        return absl::OkStatus();
      }
      if (!it->is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " is not a string"));
      *out = it->get<std::string>();
      return absl::OkStatus();
    };
    std::optional<std::string> openid, org, state;
    for (auto [key, required, out] : {std::make_tuple("openid", true, &openid),
                                       std::make_tuple("organization_id", true, &org),
                                       std::make_tuple("state", false, &state),
                                       std::make_tuple("authorize_time", false, &user.authorize_time),
                                       std::make_tuple("fault", false, &user.fault)}) {
      if (absl::Status s = get(key, required, out); !s.ok()) return s;
    }
    user.openid = *openid;
    user.organization_id = *org;
    if (state.has_value()) user.state = *state;
    if (user.fault.has_value()) {
      absl::StatusOr<FaultPlan> plan = ParseFaultSpec(*user.fault);
      if (!plan.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", plan.status().message()));
    }
    auto key = std::make_pair(user.openid, user.organization_id);
    if (store.users_.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " duplicates an earlier user"));
    }
    store.users_.emplace(std::move(key), std::move(user));
  }
  return store;
}

const SeedUser* UserStore::Find(absl::string_view openid, absl::string_view organization_id) const {
  auto it = users_.find(std::make_pair(std::string(openid), std::string(organization_id)));
  return it == users_.end() ? nullptr : &it->second;
}

}  // namespace palmgate::sandbox
