#include "server/common/request_tags.h"

#include <cstdint>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace palmgate {
namespace {

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string RequestIdOrNew(absl::string_view from_caller) {
  bool ok = !from_caller.empty() && from_caller.size() <= 128;
  for (char c : from_caller) {
    if (!ok) break;
    ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '/' ||
         c == '+' || c == '=' || c == '-';
  }
  if (ok) return std::string(from_caller);
  // A correlation id, not a secret: a per-thread PRNG seeded from the OS is enough.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x%016x", rng(), rng());
}

std::string TraceIdFromTraceparent(absl::string_view tp) {
  // 00-<32 hex>-<16 hex>-<2 hex>
  if (tp.size() != 55 || tp.substr(0, 3) != "00-" || tp[35] != '-' || tp[52] != '-') return "";
  absl::string_view trace_id = tp.substr(3, 32);
  if (!IsLowerHex(trace_id) || !IsLowerHex(tp.substr(36, 16)) || !IsLowerHex(tp.substr(53, 2))) return "";
  if (trace_id == std::string(32, '0') || tp.substr(36, 16) == std::string(16, '0')) return "";
  return std::string(trace_id);
}

}  // namespace palmgate
