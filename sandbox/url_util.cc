#include "sandbox/url_util.h"

#include "absl/strings/str_split.h"

namespace palmgate::sandbox {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

SplitTarget SplitRequestTarget(absl::string_view target) {
  SplitTarget out;
  size_t q = target.find('?');
  if (q == absl::string_view::npos) {
    out.path = target;
    return out;
  }
  out.path = target.substr(0, q);
  out.query = target.substr(q + 1);
  out.has_query = true;
  return out;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (i + 2 >= text.size()) {
      return absl::InvalidArgumentError("truncated percent escape");
    }
    int hi = HexValue(text[i + 1]);
    int lo = HexValue(text[i + 2]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad percent escape");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> FindQueryParameter(absl::string_view query,
                                                              absl::string_view name) {
  if (query.empty()) return std::optional<std::string>();
  for (absl::string_view part : absl::StrSplit(query, '&')) {
    if (part.empty()) continue;
    size_t eq = part.find('=');
    absl::string_view raw_name = part.substr(0, eq);
    absl::StatusOr<std::string> decoded_name = PercentDecode(raw_name);
    if (!decoded_name.ok()) return decoded_name.status();
    if (*decoded_name != name) continue;
    if (eq == absl::string_view::npos) return std::optional<std::string>(std::string());
    return std::optional<std::string>(std::string(part.substr(eq + 1)));
  }
  return std::optional<std::string>();
}


}  // namespace palmgate::sandbox
