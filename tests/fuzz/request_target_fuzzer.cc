// Fuzz target: the URL builder (AuthorizationQueryTarget, PercentEncode,
// ValidateOpenid, ValidateOrganizationId).
//
// Input: "OPENID\nORGANIZATION_ID" (split at the first newline); the whole
// input is also tried as an openid alone.
//
// Invariants:
//   - a target is built exactly when both fields validate; a field validates
//     only when non-empty, within its size, valid UTF-8, free of control bytes,
//     and (openid) not a dot-segment;
//   - the target is "/v3/palmservice/authorization/openid/" SEGMENT
//     "?organization_id=" VALUE where SEGMENT and VALUE hold only unreserved
//     characters and %XX (upper-case hex) escapes (so no '/', '?', '#', '%'
//     literal, space or control byte) and decode back to the fields exactly;
//     the segment is never "." or "..";
//   - PercentEncode round-trips any bytes and keeps [A-Za-z0-9_-] unchanged.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "server/common/utf8.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/request_target.h"
#include "tests/fuzz/fuzz_util.h"

namespace palmgate::fuzz {
namespace {

constexpr absl::string_view kPrefix = "/v3/palmservice/authorization/openid/";
constexpr absl::string_view kQuery = "?organization_id=";

bool IsUnreserved(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case is not what the encoder writes
}

// Decodes an encoded component; nullopt for anything the encoder never writes.
std::optional<std::string> StrictDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (IsUnreserved(s[i])) {
      out.push_back(s[i]);
      continue;
    }
    if (s[i] != '%' || i + 2 >= s.size()) return std::nullopt;
    const int hi = HexValue(s[i + 1]);
    const int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

bool FieldOk(absl::string_view v, size_t max_bytes) {
  if (v.empty() || v.size() > max_bytes || !IsValidUtf8(v)) return false;
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

void CheckEncoding(absl::string_view value) {
  const std::string encoded = wechatpay::PercentEncode(value);
  std::optional<std::string> decoded = StrictDecode(encoded);
  PALMGATE_FUZZ_CHECK(decoded.has_value() && *decoded == value);
  bool plain = true;
  for (char c : value) {
    plain = plain && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  }
  if (plain) PALMGATE_FUZZ_CHECK(encoded == value);
}

// Returns whether `openid` validates.
bool CheckOpenidValidation(absl::string_view openid) {
  const absl::Status s = wechatpay::ValidateOpenid(openid);
  const bool expected = FieldOk(openid, wechatpay::kMaxOpenidBytes) && openid != "." && openid != "..";
  PALMGATE_FUZZ_CHECK(s.ok() == expected);
  if (!s.ok()) {
    PALMGATE_FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    PALMGATE_FUZZ_CHECK(wechatpay::GetReason(s) == wechatpay::ErrorReason::kInvalidOpenid);
  }
  return s.ok();
}

}  // namespace
}  // namespace palmgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  CheckEncoding(in);
  const bool in_ok = CheckOpenidValidation(in);

  const size_t nl = in.find('\n');
  const absl::string_view openid = in.substr(0, nl);
  const absl::string_view organization_id = nl == absl::string_view::npos ? "" : in.substr(nl + 1);
  // Without a newline the openid is the whole input, checked just above.
  const bool openid_ok = nl == absl::string_view::npos ? in_ok : CheckOpenidValidation(openid);
  const bool org_ok = FieldOk(organization_id, wechatpay::kMaxOrganizationIdBytes);
  PALMGATE_FUZZ_CHECK(wechatpay::ValidateOrganizationId(organization_id).ok() == org_ok);

  absl::StatusOr<std::string> target = wechatpay::AuthorizationQueryTarget(openid, organization_id);
  PALMGATE_FUZZ_CHECK(target.ok() == (openid_ok && org_ok));
  if (!target.ok()) {
    PALMGATE_FUZZ_CHECK(target.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  absl::string_view rest = *target;
  PALMGATE_FUZZ_CHECK(absl::ConsumePrefix(&rest, kPrefix));
  const size_t q = rest.find('?');
  PALMGATE_FUZZ_CHECK(q != absl::string_view::npos);
  const absl::string_view segment = rest.substr(0, q);
  absl::string_view query = rest.substr(q);
  PALMGATE_FUZZ_CHECK(absl::ConsumePrefix(&query, kQuery));
  PALMGATE_FUZZ_CHECK(segment != "." && segment != ".." && !segment.empty());
  for (char c : *target) {
    const auto u = static_cast<unsigned char>(c);
    PALMGATE_FUZZ_CHECK(u > 0x20 && u < 0x7f && c != '#');
  }
  for (absl::string_view part : {segment, query}) {
    PALMGATE_FUZZ_CHECK(part.find_first_of("/?#&= ") == absl::string_view::npos);
  }
  std::optional<std::string> decoded_openid = StrictDecode(segment);
  std::optional<std::string> decoded_org = StrictDecode(query);
  PALMGATE_FUZZ_CHECK(decoded_openid.has_value() && *decoded_openid == openid);
  PALMGATE_FUZZ_CHECK(decoded_org.has_value() && *decoded_org == organization_id);
  return 0;
}
