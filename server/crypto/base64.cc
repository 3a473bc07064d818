#include "server/crypto/base64.h"

#include <array>
#include <cstdint>

namespace palmgate::crypto {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  return table;
}

constexpr std::array<int8_t, 256> kDecode = MakeDecodeTable();

}  // namespace

std::string Base64Encode(absl::string_view data) {
  std::string out((data.size() + 2) / 3 * 4, '=');
  char* o = out.data();
  const auto* in = reinterpret_cast<const uint8_t*>(data.data());
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t n = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | uint32_t{in[i + 2]};
    *o++ = kAlphabet[(n >> 18) & 63];
    *o++ = kAlphabet[(n >> 12) & 63];
    *o++ = kAlphabet[(n >> 6) & 63];
    *o++ = kAlphabet[n & 63];
  }
  const size_t rest = data.size() - i;
  if (rest > 0) {  // the '=' padding is already in place
    uint32_t n = uint32_t{in[i]} << 16;
    if (rest == 2) n |= uint32_t{in[i + 1]} << 8;
    *o++ = kAlphabet[(n >> 18) & 63];
    *o++ = kAlphabet[(n >> 12) & 63];
    if (rest == 2) *o = kAlphabet[(n >> 6) & 63];
  }
  return out;
}

absl::StatusOr<std::string> Base64Decode(absl::string_view text) {
  if (text.size() % 4 != 0) {
    return absl::InvalidArgumentError("base64: length is not a multiple of 4");
  }
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = (text.size() >= 2 && text[text.size() - 2] == '=') ? 2 : 1;
  std::string out(text.size() / 4 * 3 - pad, '\0');
  char* o = out.data();
  const auto* in = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int valid = last ? 4 - static_cast<int>(pad) : 4;
    uint32_t n = 0;
    for (int j = 0; j < 4; ++j) {
      n <<= 6;
      if (j >= valid) continue;
      const int8_t v = kDecode[in[i + j]];
      if (v < 0) return absl::InvalidArgumentError("base64: character outside the alphabet");
      n |= static_cast<uint32_t>(v);
    }
    *o++ = static_cast<char>((n >> 16) & 0xff);
    if (valid >= 3) *o++ = static_cast<char>((n >> 8) & 0xff);
    if (valid == 4) *o++ = static_cast<char>(n & 0xff);
    if (last && ((valid == 2 && (n & 0xffff) != 0) || (valid == 3 && (n & 0xff) != 0))) {
      return absl::InvalidArgumentError("base64: non-zero padding bits");
    }
  }
  return out;
}

}  // namespace palmgate::crypto
