#include "sandbox/authorization_parser.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace palmgate::sandbox {
namespace {

bool IsKeyChar(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }

std::string Printable(char c) {
  if (c >= 0x21 && c <= 0x7e) return std::string(1, c);
  return absl::StrCat("0x", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
}

}  // namespace

absl::StatusOr<AuthorizationFields> ParseAuthorization(absl::string_view header) {
  if (header.empty()) return absl::InvalidArgumentError("empty Authorization header");
  size_t space = header.find(' ');
  absl::string_view scheme = header.substr(0, space);
  if (scheme != kAuthorizationScheme) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported authorization scheme (expected ", kAuthorizationScheme, ")"));
  }
  if (space == absl::string_view::npos) {
    return absl::InvalidArgumentError("no parameters after the authorization scheme");
  }
  absl::string_view rest = header.substr(space + 1);
  if (rest.empty()) return absl::InvalidArgumentError("no parameters after the authorization scheme");

  AuthorizationFields out;
  bool seen[5] = {false, false, false, false, false};
  size_t i = 0;
  while (true) {
    size_t key_start = i;
    while (i < rest.size() && IsKeyChar(rest[i])) ++i;
    absl::string_view key = rest.substr(key_start, i - key_start);
    if (key.empty()) {
      if (i >= rest.size()) return absl::InvalidArgumentError("missing parameter after ','");
      return absl::InvalidArgumentError(absl::StrCat("unexpected character '", Printable(rest[i]),
                                                     "' at offset ", space + 1 + i,
                                                     " (expected a parameter name)"));
    }
    if (i >= rest.size() || rest[i] != '=') {
      return absl::InvalidArgumentError(absl::StrCat("parameter \"", key, "\" is not followed by '='"));
    }
    ++i;
    if (i >= rest.size() || rest[i] != '"') {
      return absl::InvalidArgumentError(absl::StrCat("value of \"", key, "\" is not in double quotes"));
    }
    ++i;
    size_t close = rest.find('"', i);
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unterminated quoted value of \"", key, "\""));
    }
    absl::string_view value = rest.substr(i, close - i);
    i = close + 1;
    int index = -1;
    std::string* field = nullptr;
    if (key == "mchid") {
      index = 0, field = &out.mchid;
    } else if (key == "nonce_str") {
      index = 1, field = &out.nonce_str;
    } else if (key == "timestamp") {
      index = 2, field = &out.timestamp;
    } else if (key == "serial_no") {
      index = 3, field = &out.serial_no;
    } else if (key == "signature") {
      index = 4, field = &out.signature;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown parameter \"", key, "\""));
    }
    if (seen[index]) return absl::InvalidArgumentError(absl::StrCat("duplicate parameter \"", key, "\""));
    seen[index] = true;
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("empty value for \"", key, "\""));
    *field = std::string(value);
    if (i == rest.size()) break;
    if (rest[i] != ',') {
      return absl::InvalidArgumentError(absl::StrCat("unexpected character '", Printable(rest[i]),
                                                     "' after the value of \"", key,
                                                     "\" (expected ',' with no spaces)"));
    }
    ++i;
  }
  static constexpr const char* kNames[5] = {"mchid", "nonce_str", "timestamp", "serial_no", "signature"};
  for (int k = 0; k < 5; ++k) {
    if (!seen[k]) return absl::InvalidArgumentError(absl::StrCat("missing parameter \"", kNames[k], "\""));
  }
  return out;
}

std::string BuildRequestSignMessage(absl::string_view method, absl::string_view target,
                                    absl::string_view timestamp, absl::string_view nonce,
                                    absl::string_view body) {
  return absl::StrCat(method, "\n", target, "\n", timestamp, "\n", nonce, "\n", body, "\n");
}

}  // namespace palmgate::sandbox
