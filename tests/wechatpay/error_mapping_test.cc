#include "server/wechatpay/error_mapping.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/utf8.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::IsOk;

struct Row {
  int http;
  const char* code;
  absl::StatusCode status;
  ErrorReason reason;
  const char* reason_name;
};

// anchors.md C.2, one row per upstream outcome.
constexpr Row kTable[] = {
    {400, "PARAM_ERROR", absl::StatusCode::kInvalidArgument, ErrorReason::kUpstreamParamError, "UPSTREAM_PARAM_ERROR"},
    {400, "INVALID_REQUEST", absl::StatusCode::kFailedPrecondition, ErrorReason::kUpstreamInvalidRequest,
     "UPSTREAM_INVALID_REQUEST"},
    {401, "SIGN_ERROR", absl::StatusCode::kInternal, ErrorReason::kUpstreamSignatureRejected,
     "UPSTREAM_SIGNATURE_REJECTED"},
    {403, "NO_AUTH", absl::StatusCode::kPermissionDenied, ErrorReason::kMerchantNotAuthorized,
     "MERCHANT_NOT_AUTHORIZED"},
    {404, "NOT_FOUND", absl::StatusCode::kNotFound, ErrorReason::kUpstreamNotFound, "UPSTREAM_NOT_FOUND"},
    {404, "RESOURCE_NOT_EXISTS", absl::StatusCode::kNotFound, ErrorReason::kUpstreamNotFound, "UPSTREAM_NOT_FOUND"},
    {429, "RATELIMIT_EXCEEDED", absl::StatusCode::kResourceExhausted, ErrorReason::kUpstreamRateLimited,
     "UPSTREAM_RATE_LIMITED"},
    {429, "FREQUENCY_LIMITED", absl::StatusCode::kResourceExhausted, ErrorReason::kUpstreamRateLimited,
     "UPSTREAM_RATE_LIMITED"},
    {405, "", absl::StatusCode::kInternal, ErrorReason::kUpstreamError, "UPSTREAM_ERROR"},
    {500, "SYSTEM_ERROR", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable, "UPSTREAM_UNAVAILABLE"},
    {502, "", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable, "UPSTREAM_UNAVAILABLE"},
    {503, "SERVICE_UNAVAILABLE", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable,
     "UPSTREAM_UNAVAILABLE"},
    {202, "", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamAccepted, "UPSTREAM_ACCEPTED_NOT_PROCESSED"},
    {302, "", absl::StatusCode::kUnavailable, ErrorReason::kUpstreamError, "UPSTREAM_ERROR"},
};

TEST(ErrorMappingTest, MapsEveryRowOfTheTable) {
  for (const Row& row : kTable) {
    HttpResponse r;
    r.status = row.http;
    r.headers.Add("Request-ID", "RID");
    r.body = std::string(R"({"code":")") + row.code + R"(","message":"m","detail":{"field":"openid"}})";
    absl::Status s = ClassifyHttpStatus(r);
    EXPECT_EQ(s.code(), row.status) << row.http << " " << row.code;
    auto e = GetUpstreamError(s);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->reason, row.reason) << row.http << " " << row.code;
    EXPECT_EQ(ReasonName(e->reason), row.reason_name);
    EXPECT_EQ(e->http_status, row.http);
    EXPECT_EQ(e->request_id, "RID");
    EXPECT_EQ(e->wechatpay_code, row.code);
    EXPECT_EQ(e->detail_json, R"({"field":"openid"})");
    const bool retryable = row.status == absl::StatusCode::kUnavailable ||
                           row.status == absl::StatusCode::kResourceExhausted;
    EXPECT_EQ(e->retry_after > absl::ZeroDuration(), retryable) << row.http;
  }
}

TEST(ErrorMappingTest, SuccessIsOk) {
  for (int status : {200, 204}) {
    HttpResponse r;
    r.status = status;
    EXPECT_THAT(ClassifyHttpStatus(r), IsOk());
  }
}

TEST(ErrorMappingTest, ToleratesHtmlAndEmptyBodiesAndUsesRetryAfter) {
  HttpResponse r;
  r.status = 502;
  r.body = "<html><body>Bad Gateway</body></html>";
  r.headers.Add("Retry-After", "7");
  absl::Status s = ClassifyHttpStatus(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetUpstreamError(s)->wechatpay_code, "");
  EXPECT_EQ(GetUpstreamError(s)->retry_after, absl::Seconds(7));
  r.status = 429;
  r.body = "";
  EXPECT_EQ(ClassifyHttpStatus(r).code(), absl::StatusCode::kResourceExhausted);
}

TEST(ErrorMappingTest, ParsesRetryAfterSecondsAndEveryHttpDateForm) {
  const absl::Time ref = absl::FromUnixSeconds(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(ParseRetryAfter("120", ref), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 0 ", ref), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:50:07 GMT", ref), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:50:07 GMT", ref), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:50:07 1994", ref), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:07 GMT", ref), absl::Seconds(-30));  // in the past
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", ref), absl::InfiniteDuration());
  for (const char* bad : {"", "-5", "1.5", "soon", "5s", "Sun, 06 Nov 1994"}) {
    EXPECT_EQ(ParseRetryAfter(bad, ref), std::nullopt) << bad;
  }
}

TEST(ErrorMappingTest, RetryHintIsBoundedWhateverRetryAfterSays) {
  const absl::Time now = absl::FromUnixSeconds(784111777);
  auto hint = [&](std::vector<std::pair<std::string, std::string>> headers) {
    HttpResponse r;
    r.status = 429;
    for (auto& [n, v] : headers) r.headers.Add(n, v);
    return GetUpstreamError(ClassifyHttpStatus(r, now))->retry_after;
  };
  EXPECT_EQ(hint({}), kMinRetryAfter);
  EXPECT_EQ(hint({{"Retry-After", "0"}}), kMinRetryAfter);
  EXPECT_EQ(hint({{"Retry-After", "7"}}), absl::Seconds(7));
  EXPECT_EQ(hint({{"Retry-After", "31536000"}}), kMaxRetryAfter);  // a year
  EXPECT_EQ(hint({{"Retry-After", "99999999999999999999999"}}), kMaxRetryAfter);
  EXPECT_EQ(hint({{"Retry-After", "garbage"}}), kMinRetryAfter);
  // An HTTP-date counts from the answer's own Date when it has one, else from `now`.
  EXPECT_EQ(hint({{"Retry-After", "Sun, 06 Nov 1994 08:50:07 GMT"}}), absl::Seconds(30));
  EXPECT_EQ(hint({{"Date", "Sun, 06 Nov 1994 08:50:00 GMT"}, {"Retry-After", "Sun, 06 Nov 1994 08:50:07 GMT"}}),
            absl::Seconds(7));
  EXPECT_EQ(hint({{"Retry-After", "Sun, 06 Nov 1994 08:00:00 GMT"}}), kMinRetryAfter);  // past
  EXPECT_EQ(hint({{"Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"}}), kMaxRetryAfter);
}

TEST(ErrorMappingTest, SignErrorKeepsNestedDetail) {
  HttpResponse r;
  r.status = 401;
  r.body =
      R"({"code":"SIGN_ERROR","detail":{"detail":{"issue":"sign not match"},"field":"signature","location":"authorization"},"message":"错误的签名，验签失败"})";
  auto e = GetUpstreamError(ClassifyHttpStatus(r));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->wechatpay_message, "错误的签名，验签失败");
  EXPECT_THAT(e->detail_json, ::testing::HasSubstr("sign not match"));
}

TEST(ErrorMappingTest, DeeplyNestedErrorBodyIsNotACrash) {
  // Unsigned: anything may send it. dump() recursed once per level.
  HttpResponse r;
  r.status = 400;
  r.body = absl::StrCat(R"({"code":"PARAM_ERROR","message":"m","detail":)", std::string(100000, '['),
                        std::string(100000, ']'), "}");
  auto e = GetUpstreamError(ClassifyHttpStatus(r));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->reason, ErrorReason::kUpstreamParamError);
  EXPECT_EQ(e->wechatpay_code, "PARAM_ERROR");
  // Levels beyond 32 are dropped; what is kept is small and dumps flat.
  EXPECT_EQ(e->detail_json, absl::StrCat(std::string(32, '['), std::string(32, ']')));
  r.body = absl::StrCat(R"({"code":"PARAM_ERROR","detail":)", std::string(30, '['), std::string(30, ']'), "}");
  EXPECT_EQ(GetUpstreamError(ClassifyHttpStatus(r))->detail_json, absl::StrCat(std::string(30, '['), std::string(30, ']')));
}

TEST(ErrorMappingTest, KeptTextIsCutOnACharacterBoundaryAndHeadersArePrintable) {
  HttpResponse r;
  r.status = 400;
  std::string message;
  for (int i = 0; i < 200; ++i) message += "\xe4\xb8\xad";  // 600 bytes
  r.body = absl::StrCat(R"({"code":"INVALID_REQUEST","message":")", message, R"("})");
  r.headers.Add("Request-ID", "r-\xff\x01-id");
  auto e = GetUpstreamError(ClassifyHttpStatus(r));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->wechatpay_message, message.substr(0, 510));  // 170 whole characters
  EXPECT_EQ(e->request_id, "");  // not of WeChat Pay's form: dropped (ReadRequestId)
  EXPECT_EQ(PrintableHeaderValue("ab\x7f\x80" "c", 4), "ab?" "?");
}

TEST(ErrorTest, PayloadRoundTripsAndSurvivesInvalidUtf8) {
  UpstreamError e;
  e.reason = ErrorReason::kUpstreamRateLimited;
  e.http_status = 429;
  e.wechatpay_code = "FREQUENCY_LIMITED";
  e.wechatpay_message = "bad \xff utf8";
  e.request_id = "RID";
  e.retry_after = absl::Seconds(3);
  absl::Status s = MakeError(absl::StatusCode::kResourceExhausted, "rate limited", e);
  auto back = GetUpstreamError(s);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->reason, e.reason);
  EXPECT_EQ(back->retry_after, absl::Seconds(3));
  EXPECT_EQ(back->request_id, "RID");
  EXPECT_FALSE(GetUpstreamError(absl::OkStatus()).has_value());
  EXPECT_EQ(GetReason(absl::InternalError("plain")), ErrorReason::kUnspecified);
}

// Texts come back from the payload as valid UTF-8 of the size they had, so a
// field bounded before MakeError stays within its bound (the JSON payload this
// replaced turned each stray byte into U+FFFD, three bytes), and every field
// survives unchanged.
TEST(ErrorTest, PayloadKeepsSizesAndEveryField) {
  UpstreamError e;
  e.reason = ErrorReason::kResponseSignatureInvalid;
  e.http_status = 200;
  e.wechatpay_code = "C:1";
  e.wechatpay_message = "消息 12:34";
  e.detail_json = R"({"a":"b:c"})";
  e.request_id = std::string(60, 'R') + "\xff\xfe\xc3!";
  e.request_id_dropped = "";
  e.serial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
  e.field = "openid";
  e.retry_after = absl::Milliseconds(-1500);
  absl::Status s = MakeError(absl::StatusCode::kInternal, "m", e);
  std::optional<UpstreamError> back = GetUpstreamError(s);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->request_id.size(), e.request_id.size());
  EXPECT_TRUE(IsValidUtf8(back->request_id));
  back->request_id = e.request_id;
  EXPECT_EQ(*back, e);
  absl::Status garbage = absl::InternalError("x");
  garbage.SetPayload("type.palmgate.dev/palmgate.wechatpay.UpstreamError", absl::Cord("1;2:17"));
  EXPECT_FALSE(GetUpstreamError(garbage).has_value());
  EXPECT_EQ(GetReason(garbage), ErrorReason::kUnspecified);
}

// Found by fuzzing (tests/fuzz/corpus/error_body/crash-utf8-cut-at-512-bytes): a
// message over the 512-byte bound was cut inside a character, leaving invalid
// UTF-8 for the ErrorInfo metadata (proto3 strings) and, once replaced, more
// than 512 bytes. Stray header bytes in the Request-ID had the same effect.
TEST(ErrorMappingTest, KeptTextsAreBoundedValidUtf8) {
  HttpResponse r;
  r.status = 400;
  r.headers.Add("Request-ID", "08F5\xff\xfe-1");
  std::string message;
  for (int i = 0; i < 60; ++i) message += "参数错误";  // 720 bytes
  r.body = absl::StrCat(R"({"code":"PARAM_ERROR","message":")", message, R"("})");
  auto e = GetUpstreamError(ClassifyHttpStatus(r));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->wechatpay_message.size(), 510u);  // 170 whole characters of 3 bytes
  EXPECT_TRUE(IsValidUtf8(e->wechatpay_message));
  EXPECT_EQ(message.substr(0, 510), e->wechatpay_message);
  EXPECT_EQ(e->request_id, "");  // stray bytes: dropped, and the log says why
  EXPECT_TRUE(IsValidUtf8(e->request_id_dropped));
}

// Issue 13 finding 8b: an error body's message reached ErrorInfo's
// wechatpayMessage as sent, ESC, U+202E (right-to-left override) and U+2028
// included: text that rewrites a terminal, reverses what a reader sees or
// forges a line. Controls and invisible format characters are replaced.
TEST(ErrorMappingTest, UnsignedMessageCarriesNoControlOrInvisibleFormatCharacter) {
  struct Case {
    const char* sent;  // the JSON string's content, as in the body
    const char* kept;
  };
  const Case cases[] = {
      {R"(\u001b[31mcall +86 400\u001b[0m)", "\xEF\xBF\xBD[31mcall +86 400\xEF\xBF\xBD[0m"},  // ESC
      {"pay \xE2\x80\xAE" "004 68+ llac", "pay \xEF\xBF\xBD" "004 68+ llac"},                 // U+202E
      {"line\xE2\x80\xA8" "fake line", "line fake line"},                                    // U+2028
      {"a\xE2\x80\xA9" R"(b\nc\r\td)", "a b c  d"},                                          // U+2029 LF CR TAB
      {R"(x\u0000y\u007fz)" "\xC2\x85" "w\xC2\x9B" "v",
       "x\xEF\xBF\xBDy\xEF\xBF\xBDz w\xEF\xBF\xBDv"},                                        // NUL DEL NEL CSI
      {"\xE2\x80\xAA\xE2\x80\xAB\xE2\x80\xAC\xE2\x80\xAD\xE2\x81\xA6\xE2\x81\xA7\xE2\x81\xA8\xE2\x81\xA9",
       "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},  // bidi
      {"\xE2\x80\x8E\xE2\x80\x8F\xD8\x9C\xE2\x80\x8B\xEF\xBB\xBF\xC2\xAD\xF3\xA0\x80\x81",  // LRM RLM ALM ZWSP BOM SHY tag
       "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"系统繁忙，请稍后重试 (SYSTEM_ERROR)", "系统繁忙，请稍后重试 (SYSTEM_ERROR)"},  // ordinary text: as sent
  };
  for (const Case& c : cases) {
    HttpResponse r;
    r.status = 500;
    r.body = absl::StrCat(R"({"code":")", c.sent, R"(","message":")", c.sent, R"(","detail":{"issue":")", c.sent,
                          R"("}})");
    auto e = GetUpstreamError(ClassifyHttpStatus(r));
    ASSERT_TRUE(e.has_value()) << c.sent;
    EXPECT_EQ(e->wechatpay_message, c.kept) << c.sent;
    EXPECT_EQ(e->wechatpay_code, c.kept) << c.sent;  // ErrorInfo drops it unless UPPER_SNAKE; the log shows it
    EXPECT_FALSE(e->detail_json.empty()) << c.sent;
    EXPECT_EQ(ToDisplayableText(e->detail_json, 512), e->detail_json) << c.sent;  // already displayable
  }
  // Each replaced byte grows to three: the text stays within its 512 bytes, whole characters only.
  std::string controls;
  for (int i = 0; i < 600; ++i) controls += R"(\u0001)";
  HttpResponse r;
  r.status = 500;
  r.body = absl::StrCat(R"({"message":")", controls, R"("})");
  auto e = GetUpstreamError(ClassifyHttpStatus(r));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->wechatpay_message.size(), 510u);
  EXPECT_TRUE(IsValidUtf8(e->wechatpay_message));
  EXPECT_EQ(ToDisplayableText(std::string(600, 'a'), 512), std::string(512, 'a'));
  EXPECT_EQ(ToDisplayableText("ok\xff", 512), "ok?");
}

// Issue 13 finding 4: the Request-ID header is not signed, and a 200 whose
// Request-ID was "CALL-SUPPORT-AT +86 400 <script>alert(1)</script>" handed it
// on verbatim. Only 1-64 characters of [0-9A-Za-z_-] are kept.
TEST(RequestIdTest, KeepsOnlyWellFormedIds) {
  auto read = [](absl::string_view value) {
    HttpResponse r;
    r.status = 200;
    r.headers.Add("Request-ID", std::string(value));
    return ReadRequestId(r);
  };
  for (absl::string_view good : {"08F5B8C2B506102C18FDDFEEA30620BE821E28EDC405-0", "a", "hostile-id", "R_1-x",
                                 "0123456789012345678901234567890123456789012345678901234567890123"}) {
    RequestId id = read(good);
    EXPECT_EQ(id.value, good);
    EXPECT_EQ(id.dropped, "");
  }
  const std::string hostile = "CALL-SUPPORT-AT +86 400 <script>alert(1)</script>";
  for (const std::string& bad : {hostile, std::string(""), std::string(65, 'a'), std::string("id\"\n{x}"),
                                 std::string("08F5\xff\xfe-1"), std::string("a.b"), std::string(100000, '<')}) {
    RequestId id = read(bad);
    EXPECT_EQ(id.value, "") << bad.substr(0, 80);
    EXPECT_THAT(id.dropped, ::testing::HasSubstr(absl::StrCat(bad.size(), " bytes"))) << bad.substr(0, 80);
    EXPECT_LT(id.dropped.size(), 200u);  // bounded whatever was sent
    EXPECT_TRUE(IsValidUtf8(id.dropped));
    EXPECT_EQ(id.dropped.find('\n'), std::string::npos);
  }
  EXPECT_THAT(read(hostile).dropped, ::testing::HasSubstr("49 bytes, starting \"CALL-SUPPORT-AT +86 400 <script>\""));
  HttpResponse none;
  none.status = 200;
  EXPECT_EQ(ReadRequestId(none).value, "");
  EXPECT_EQ(ReadRequestId(none).dropped, "");
}

TEST(RequestIdTest, ErrorsCarryOnlyTheFilteredId) {
  HttpResponse r;
  r.status = 503;
  r.headers.Add("Request-ID", "CALL-SUPPORT-AT +86 400 <script>alert(1)</script>");
  auto e = GetUpstreamError(ClassifyHttpStatus(r));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->request_id, "");
  EXPECT_THAT(e->request_id_dropped, ::testing::HasSubstr("49 bytes"));
}

// Issue 13 finding 10: metric labels come from a fixed list.
TEST(WechatpayCodeTest, KnownCodesAreAFixedList) {
  for (absl::string_view code : {"PARAM_ERROR", "INVALID_REQUEST", "SIGN_ERROR", "NO_AUTH", "FREQUENCY_LIMITED",
                                 "RATELIMIT_EXCEEDED", "SYSTEM_ERROR", "SYSTEMERROR", "NOT_FOUND",
                                 "RESOURCE_NOT_EXISTS", "USER_NOT_EXISTS", "APPID_MCHID_NOT_MATCH", "MCH_NOT_EXISTS",
                                 "SERVICE_UNAVAILABLE", "ORDER_NOT_EXIST", "RATE_LIMITED"}) {
    EXPECT_TRUE(IsKnownWechatpayCode(code)) << code;
    EXPECT_TRUE(IsWellFormedWechatpayCode(code)) << code;
  }
  for (absl::string_view code : {"", "X7K2Q", "PARAM_ERROR ", "param_error", "SANDBOX_FAULT_INVALID"}) {
    EXPECT_FALSE(IsKnownWechatpayCode(code)) << code;
  }
  EXPECT_TRUE(IsWellFormedWechatpayCode("A_NEW_CODE_2027"));
  for (absl::string_view code : {"", "_X", "1ABC", "lower", "A B", "A-B", "<script>", "中文"}) {
    EXPECT_FALSE(IsWellFormedWechatpayCode(code)) << code;
  }
  EXPECT_TRUE(IsWellFormedWechatpayCode(std::string(64, 'A')));
  EXPECT_FALSE(IsWellFormedWechatpayCode(std::string(65, 'A')));
}

}  // namespace
}  // namespace palmgate::wechatpay
