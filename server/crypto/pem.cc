#include "server/crypto/pem.h"

#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace palmgate::crypto {
namespace {

constexpr absl::string_view kDashes = "-----";

// The label of a "-----<kind> label-----" line, or nullopt.
std::optional<absl::string_view> Boundary(absl::string_view line, absl::string_view kind) {
  if (!absl::ConsumePrefix(&line, kDashes) || !absl::ConsumePrefix(&line, kind) ||
      !absl::ConsumePrefix(&line, " ") || !absl::ConsumeSuffix(&line, kDashes)) {
    return std::nullopt;
  }
  return line;
}

// A string wiped when it goes out of scope (the body may be a private key).
struct WipedString {
  ~WipedString() { WipeString(s); }
  std::string s;
};

// The value of a base64 digit (RFC 4648 alphabet), or -1.
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool IsBase64Char(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=';
}

}  // namespace

absl::StatusOr<PemBlock> DecodePem(absl::string_view text, std::initializer_list<absl::string_view> labels,
                                   size_t max_der) {
  // Base64 grows 4/3: a body longer than this is refused before it is decoded.
  const size_t max_body = (max_der + 2) / 3 * 4;
  std::optional<PemBlock> found;
  std::optional<absl::string_view> open;  // label of the block being read
  WipedString wiped;
  std::string& body = wiped.s;
  body.reserve(max_body);  // never reallocated: no unwiped copy is left behind
  bool wanted = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);  // CR of CR LF, trailing blanks
    if (!open.has_value()) {
      if (std::optional<absl::string_view> label = Boundary(line, "BEGIN")) {
        open = label;
        wanted = false;
        for (absl::string_view l : labels) wanted = wanted || *label == l;
        if (wanted && found.has_value()) {
          return absl::InvalidArgumentError(absl::StrCat("more than one PEM \"", *label, "\" block"));
        }
        body.clear();
      }
      continue;
    }
    if (std::optional<absl::string_view> label = Boundary(line, "END")) {
      if (*label != *open) {
        return absl::InvalidArgumentError(
            absl::StrCat("PEM block \"", *open, "\" ends with a different label"));
      }
      if (wanted) {
        if (body.empty() || body.size() % 4 != 0) {
          return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" body is not padded base64"));
        }
        const size_t pad = body.find('=');
        if (pad != std::string::npos &&
            (body.size() - pad > 2 || body.find_first_not_of('=', pad) != std::string::npos)) {
          return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" body has '=' inside"));
        }
        // Canonical: the bits the padding leaves unused are zero, so that
        // each DER has exactly one spelling.
        const size_t padding = pad == std::string::npos ? 0 : body.size() - pad;
        const int last = padding == 0 ? 0 : Base64Value(body[pad - 1]);
        if ((padding == 1 && (last & 0x03) != 0) || (padding == 2 && (last & 0x0f) != 0)) {
          return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" body is not canonical base64"));
        }
        std::string der;
        if (!absl::Base64Unescape(body, &der)) {
          WipeString(der);
          return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" body is not base64"));
        }
        PemBlock block{std::string(*open), SecretString(std::move(der))};
        if (block.der.size() > max_der) {
          return absl::InvalidArgumentError(
              absl::StrCat("PEM \"", *open, "\" is ", block.der.size(), " bytes; at most ", max_der, " expected"));
        }
        found = std::move(block);
      }
      open.reset();
      continue;
    }
    if (!wanted) continue;
    if (absl::StrContains(line, ':')) {
      return absl::InvalidArgumentError(
          absl::StrCat("PEM \"", *open, "\" has header lines (an encrypted key?); none are accepted"));
    }
    for (char c : line) {
      if (!IsBase64Char(c)) {
        return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" body holds a character outside base64"));
      }
    }
    if (body.size() + line.size() > max_body) {
      return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" is longer than ", max_der, " bytes"));
    }
    absl::StrAppend(&body, line);
  }
  if (open.has_value() && wanted) {
    return absl::InvalidArgumentError(absl::StrCat("PEM \"", *open, "\" block has no END line"));
  }
  if (!found.has_value()) return absl::InvalidArgumentError("no PEM block of the expected kind");
  return *std::move(found);
}

}  // namespace palmgate::crypto
