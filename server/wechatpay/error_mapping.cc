#include "server/wechatpay/error_mapping.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <utility>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/utf8.h"

namespace palmgate::wechatpay {
namespace {

// What an error body can put in a status (proto3 strings: valid UTF-8) and the log: ToDisplayableText.
constexpr size_t kMaxKeptText = 512;
// Error bodies are not signed: anything may answer with one. Nesting deeper
// than this is dropped while parsing, because dump() recurses once per level
// and a 256 KB body can nest 100,000 levels deep (a stack overflow).
constexpr int kMaxJsonDepth = 32;

// Returns the code point of the sequence of `len` bytes at `s` (valid UTF-8).
char32_t DecodeValid(const char* s, size_t len) {
  const auto b = [s](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  return 4;
}

// Line breaks and tabs: shown as a space.
bool IsBreak(char32_t c) { return (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0x2028 || c == 0x2029; }

// C0 and C1 controls, DEL, and the invisible format characters (Unicode
// category Cf: bidi embeddings, overrides, isolates and marks, zero-width
// characters, the BOM, interlinear annotations, tags, ...), which can reorder
// or hide what a person reading the text sees.
bool IsInvisible(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return true;
  static constexpr std::pair<char32_t, char32_t> kFormat[] = {
      {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},   {0x070F, 0x070F},
      {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},   {0x200B, 0x200F},   {0x202A, 0x202E},
      {0x2060, 0x2064},   {0x2066, 0x206F},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD},
      {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
      {0xE0020, 0xE007F},
  };
  for (const auto& [first, last] : kFormat) {
    if (c >= first && c <= last) return true;
  }
  return false;
}

// Parses `body`, dropping every object or array nested deeper than kMaxJsonDepth
// (the levels above stay). nlohmann's parser itself is iterative, and its
// callback parser builds nothing for what is dropped.
nlohmann::json ParseShallow(const std::string& body) {
  const nlohmann::json::parser_callback_t shallow = [](int depth, nlohmann::json::parse_event_t event,
                                                       nlohmann::json& /*parsed*/) {
    const bool opens = event == nlohmann::json::parse_event_t::object_start ||
                       event == nlohmann::json::parse_event_t::array_start;
    return !opens || depth <= kMaxJsonDepth;
  };
  return nlohmann::json::parse(body, shallow, /*allow_exceptions=*/false);
}

// Parses an HTTP-date in any of the three forms recipients must accept (RFC 9110 section 5.6.7).
std::optional<absl::Time> ParseHttpDate(absl::string_view value) {
  for (const char* format : {"%a, %d %b %Y %H:%M:%S GMT",    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
                             "%A, %d-%b-%y %H:%M:%S GMT",    // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
                             "%a %b %e %H:%M:%S %Y"}) {      // asctime:     Sun Nov  6 08:49:37 1994
    absl::Time t;
    std::string err;
    if (absl::ParseTime(format, value, absl::UTCTimeZone(), &t, &err)) return t;
  }
  return std::nullopt;
}

absl::Duration RetryAfter(const HttpResponse& response, absl::Time now) {
  std::optional<absl::string_view> value = response.headers.Get("Retry-After");
  if (!value.has_value()) return kMinRetryAfter;
  absl::Time reference = now;
  if (auto date = response.headers.Get("Date"); date.has_value()) {
    reference = ParseHttpDate(absl::StripAsciiWhitespace(*date)).value_or(now);
  }
  std::optional<absl::Duration> delay = ParseRetryAfter(*value, reference);
  if (!delay.has_value()) return kMinRetryAfter;
  return std::clamp(*delay, kMinRetryAfter, kMaxRetryAfter);
}

// The public APIv3 codes (wechatpay-v3.md section 5.2) and the general codes
// of WeChat Pay's error code page. Add a code here when WeChat Pay documents it.
constexpr absl::string_view kKnownCodes[] = {
    "ACCOUNT_ERROR",      "ALREADY_EXISTS",     "APPID_MCHID_NOT_MATCH", "BANK_ERROR",    "FREQUENCY_LIMITED",
    "INVALID_REQUEST",    "MCH_NOT_EXISTS",     "NO_AUTH",               "NOT_FOUND",     "ORDER_NOT_EXIST",
    "PARAM_ERROR",        "RATE_LIMITED",       "RATELIMIT_EXCEEDED",    "RESOURCE_NOT_EXISTS", "RULE_LIMIT",
    "SERVICE_UNAVAILABLE", "SIGN_ERROR",        "SYSTEM_ERROR",          "SYSTEMERROR",   "TRADE_ERROR",
    "USER_NOT_EXISTS",
};

constexpr size_t kMaxRequestIdBytes = 64;
constexpr size_t kDroppedPrefixBytes = 32;  // how much of a refused Request-ID the log shows

bool IsRequestIdChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }

}  // namespace

std::string ToDisplayableText(absl::string_view text, size_t max_bytes) {
  const std::string valid = ToBoundedUtf8(text, max_bytes);  // bounds the work too
  std::string out;
  out.reserve(valid.size());
  for (size_t i = 0; i < valid.size();) {
    const size_t len = Utf8Length(static_cast<unsigned char>(valid[i]));
    const char32_t c = DecodeValid(valid.data() + i, len);
    if (IsBreak(c)) {
      out.push_back(' ');
    } else if (IsInvisible(c)) {
      out.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
    } else {
      out.append(valid, i, len);
    }
    i += len;
  }
  // A one-byte control became three bytes: cut again, on a character boundary.
  return out.size() <= max_bytes ? out : ToBoundedUtf8(out, max_bytes);
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time reference) {
  value = absl::StripAsciiWhitespace(value);
  if (!value.empty() && std::all_of(value.begin(), value.end(), absl::ascii_isdigit)) {
    // delay-seconds: any number of digits; more than fit in 64 bits is "very long".
    int64_t seconds = 0;
    if (!absl::SimpleAtoi(value, &seconds)) return absl::InfiniteDuration();
    return absl::Seconds(seconds);
  }
  std::optional<absl::Time> when = ParseHttpDate(value);
  if (!when.has_value()) return std::nullopt;
  return *when - reference;
}

bool IsKnownWechatpayCode(absl::string_view code) {
  for (absl::string_view known : kKnownCodes) {
    if (code == known) return true;
  }
  return false;
}

bool IsWellFormedWechatpayCode(absl::string_view code) {
  if (code.empty() || code.size() > 64 || !absl::ascii_isupper(static_cast<unsigned char>(code[0]))) return false;
  for (char c : code) {
    const auto u = static_cast<unsigned char>(c);
    if (!absl::ascii_isupper(u) && !absl::ascii_isdigit(u) && c != '_') return false;
  }
  return true;
}

RequestId ReadRequestId(const HttpResponse& response) {
  RequestId id;
  std::optional<absl::string_view> raw = response.headers.Get("Request-ID");
  if (!raw.has_value()) return id;
  if (!raw->empty() && raw->size() <= kMaxRequestIdBytes && std::all_of(raw->begin(), raw->end(), IsRequestIdChar)) {
    id.value = std::string(*raw);
    return id;
  }
  id.dropped = absl::StrCat("not 1-", kMaxRequestIdBytes, " characters of [0-9A-Za-z_-]: ", raw->size(),
                            " bytes, starting \"", absl::CHexEscape(raw->substr(0, kDroppedPrefixBytes)), "\"");
  return id;
}

MappedError MapHttpError(int http_status, absl::string_view wechatpay_code) {
  using C = absl::StatusCode;
  using R = ErrorReason;
  if (http_status == 400) {
    if (wechatpay_code == "PARAM_ERROR") return {C::kInvalidArgument, R::kUpstreamParamError};
    return {C::kFailedPrecondition, R::kUpstreamInvalidRequest};
  }
  if (http_status == 401) return {C::kInternal, R::kUpstreamSignatureRejected};
  if (http_status == 403) return {C::kPermissionDenied, R::kMerchantNotAuthorized};
  if (http_status == 404) return {C::kNotFound, R::kUpstreamNotFound};
  if (http_status == 429) return {C::kResourceExhausted, R::kUpstreamRateLimited};
  if (http_status == 202) return {C::kUnavailable, R::kUpstreamAccepted};
  if (http_status >= 500 && http_status <= 599) return {C::kUnavailable, R::kUpstreamUnavailable};
  if (http_status >= 400 && http_status <= 499) return {C::kInternal, R::kUpstreamError};
  // 1xx, 3xx or nonsense: not WeChat Pay's API talking (a proxy, a redirect).
  return {C::kUnavailable, R::kUpstreamError};
}

absl::Status ClassifyHttpStatus(const HttpResponse& response) { return ClassifyHttpStatus(response, absl::Now()); }

absl::Status ClassifyHttpStatus(const HttpResponse& response, absl::Time now) {
  if (response.status >= 200 && response.status <= 299 && response.status != 202) return absl::OkStatus();
  UpstreamError e;
  e.http_status = response.status;
  RequestId request_id = ReadRequestId(response);
  e.request_id = std::move(request_id.value);
  e.request_id_dropped = std::move(request_id.dropped);
  nlohmann::json body = ParseShallow(response.body);
  if (body.is_object()) {
    if (auto it = body.find("code"); it != body.end() && it->is_string()) {
      e.wechatpay_code = ToDisplayableText(it->get<std::string>(), kMaxKeptText);  // the log shows it
    }
    if (auto it = body.find("message"); it != body.end() && it->is_string()) {
      e.wechatpay_message = ToDisplayableText(it->get<std::string>(), kMaxKeptText);
    }
    if (auto it = body.find("detail"); it != body.end() && !it->is_null()) {
      e.detail_json =
          ToDisplayableText(it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kMaxKeptText);
    }
  }
  MappedError m = MapHttpError(response.status, e.wechatpay_code);
  e.reason = m.reason;
  if (m.code == absl::StatusCode::kUnavailable || m.code == absl::StatusCode::kResourceExhausted) {
    e.retry_after = RetryAfter(response, now);
  }
  std::string message = absl::StrCat("wechatpay: http ", response.status);
  if (!e.wechatpay_code.empty()) absl::StrAppend(&message, " ", e.wechatpay_code);
  return MakeError(m.code, message, std::move(e));
}

}  // namespace palmgate::wechatpay
