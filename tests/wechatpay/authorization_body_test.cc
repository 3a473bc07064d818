// ParseAuthorizationBody: the verified body of the palmservice answer.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/palm_service_client.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::StatusIs;

constexpr char kOpenid[] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

// An answer about kOpenid with authorize_time `raw`.
std::string WithTime(absl::string_view raw) {
  return absl::StrCat(R"({"openid":")", kOpenid, R"(","state":"AUTHORIZATION_STATE_ON","authorize_time":")", raw,
                      R"("})");
}

void ExpectMalformed(absl::string_view body) {
  absl::StatusOr<AuthorizationResult> r = ParseAuthorizationBody(body, kOpenid, "1004");
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal)) << body;
  EXPECT_EQ(GetReason(r.status()), ErrorReason::kUpstreamMalformedResponse) << body;
}

TEST(AuthorizationBodyTest, ParsesTheDocumentedAnswer) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(
      AuthorizationResult r,
      ParseAuthorizationBody(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004",)"
                             R"("state":"AUTHORIZATION_STATE_ON","authorize_time":"2018-06-08T10:34:56+08:00"})",
                             kOpenid, "1004"));
  EXPECT_EQ(r.state, "AUTHORIZATION_STATE_ON");
  ASSERT_TRUE(r.authorize_time.has_value());
  EXPECT_EQ(*r.authorize_time, absl::FromUnixSeconds(1528425296));
}

// Found by fuzzing (tests/fuzz/corpus/success_body/crash-year-10000): times
// outside years 1-9999 parsed, and became google.protobuf.Timestamp values
// outside its range (clients' libraries refuse them). The raw text is kept.
TEST(AuthorizationBodyTest, TimeOutsideTimestampRangeKeepsOnlyTheRawText) {
  for (const char* raw : {"10000-01-01T00:00:00Z", "0000-01-01T00:00:00+14:00", "0001-01-01T00:00:00+00:01"}) {
    PALMGATE_ASSERT_OK_AND_ASSIGN(
        AuthorizationResult r, ParseAuthorizationBody(WithTime(raw), kOpenid, "1004"));
    EXPECT_FALSE(r.authorize_time.has_value()) << raw;
    EXPECT_EQ(r.authorize_time_raw, raw);
  }
  for (const char* raw : {"9999-12-31T23:59:59.999999999Z", "0001-01-01T00:00:00Z"}) {
    PALMGATE_ASSERT_OK_AND_ASSIGN(
        AuthorizationResult r, ParseAuthorizationBody(WithTime(raw), kOpenid, "1004"));
    EXPECT_TRUE(r.authorize_time.has_value()) << raw;
  }
}

TEST(AuthorizationBodyTest, RefusesAnswersAboutSomeoneElse) {
  EXPECT_THAT(ParseAuthorizationBody(R"({"openid":"oOther"})", kOpenid, "1004"),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(ParseAuthorizationBody(R"({"organization_id":"1005"})", kOpenid, "1004"),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(ParseAuthorizationBody("[]", kOpenid, "1004"), StatusIs(absl::StatusCode::kInternal));
}

// Issue 13 finding 3: a signed {"state":"AUTHORIZATION_STATE_ON"} was an OK
// answer for whatever openid was asked, so one captured answer could be
// replayed for any openid within the 300 s window.
TEST(AuthorizationBodyTest, RefusesAnAnswerThatNamesNoOpenid) {
  ExpectMalformed(R"({"state":"AUTHORIZATION_STATE_ON"})");
  ExpectMalformed(R"({"openid":null,"organization_id":"1004","state":"AUTHORIZATION_STATE_ON"})");
  ExpectMalformed(R"({"openid":"","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"})");
  ExpectMalformed(
      R"({"organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2018-06-08T10:34:56+08:00"})");
}

TEST(AuthorizationBodyTest, RefusesAnAnswerWithoutAState) {
  ExpectMalformed(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004"})");
  ExpectMalformed(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":null})");
  ExpectMalformed(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":""})");
  ExpectMalformed(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":1})");
}

TEST(AuthorizationBodyTest, OrganizationIdMayBeAbsentButNotOther) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(
      AuthorizationResult r,
      ParseAuthorizationBody(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":"AUTHORIZATION_STATE_OFF"})", kOpenid,
                             "1004"));
  EXPECT_EQ(r.openid, kOpenid);
  EXPECT_EQ(r.state, "AUTHORIZATION_STATE_OFF");
  ExpectMalformed(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1005","state":"AUTHORIZATION_STATE_OFF"})");
}

// States may be added (wechatpay-v3.md section 7 item 8): an unknown one is
// kept verbatim; the service maps it to AUTHORIZATION_STATE_UNSPECIFIED.
TEST(AuthorizationBodyTest, KeepsAnUnknownStateVerbatim) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(
      AuthorizationResult r,
      ParseAuthorizationBody(R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":"AUTHORIZATION_STATE_PAUSED"})",
                             kOpenid, "1004"));
  EXPECT_EQ(r.state, "AUTHORIZATION_STATE_PAUSED");
}

// Issue 13 finding 8c: a signed state of 200 KB, or one holding a NUL, went to
// callers verbatim in wechatpay_state. A state must look like a WeChat Pay
// enum value; an unknown one of that form still passes (above).
TEST(AuthorizationBodyTest, StateMustHaveTheFormOfAWechatpayEnumValue) {
  const std::string prefix = R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","state":")";
  for (const std::string& state :
       {std::string(200 * 1024, 'A'), std::string(65, 'A'), std::string("AUTHORIZATION_STATE_ON\\u0000"),
        std::string("AUTHORIZATION_STATE_ON "), std::string("authorization_state_on"), std::string("_ON"),
        std::string("1ON"), std::string("STATE-ON"), std::string("AUTHORIZATION_STATE_\xE2\x80\xAEON")}) {
    ExpectMalformed(absl::StrCat(prefix, state, R"("})"));
  }
  for (const std::string& state : {std::string(64, 'A'), std::string("X"), std::string("AUTHORIZATION_STATE_2")}) {
    PALMGATE_ASSERT_OK_AND_ASSIGN(AuthorizationResult r,
                                  ParseAuthorizationBody(absl::StrCat(prefix, state, R"("})"), kOpenid, "1004"));
    EXPECT_EQ(r.state, state);
  }
}

// Finding 8c: authorize_time's raw text is kept; it is bounded like the rest.
TEST(AuthorizationBodyTest, AuthorizeTimeIsBoundedPrintableAscii) {
  ExpectMalformed(WithTime(std::string(65, '1')));
  ExpectMalformed(WithTime(std::string(200 * 1024, '1')));
  ExpectMalformed(WithTime("2018-06-08T10:34:56+08:00\\u0000"));
  ExpectMalformed(WithTime("2018-06-08T10:34:56+08:00\\n"));
  ExpectMalformed(WithTime("2018\xE5\xB9\xB4"));
  PALMGATE_ASSERT_OK_AND_ASSIGN(AuthorizationResult r,
                                ParseAuthorizationBody(WithTime(std::string(64, '1')), kOpenid, "1004"));
  EXPECT_EQ(r.authorize_time_raw, std::string(64, '1'));
  EXPECT_FALSE(r.authorize_time.has_value());
  PALMGATE_ASSERT_OK_AND_ASSIGN(r, ParseAuthorizationBody(WithTime("2018-06-08 10:34:56"), kOpenid, "1004"));
  EXPECT_EQ(r.authorize_time_raw, "2018-06-08 10:34:56");  // not RFC 3339's T: the raw text only
}

// Issue 13 finding 8d: nlohmann::json keeps the last of two members with the
// same name, so {"openid":"oOther",...,"openid":"oVictim"} was an answer about
// oVictim (another parser reads it as about oOther).
TEST(AuthorizationBodyTest, RefusesATopLevelMemberNamedTwice) {
  ExpectMalformed(absl::StrCat(R"({"openid":"oOther","state":"AUTHORIZATION_STATE_OFF","openid":")", kOpenid,
                               R"(","state":"AUTHORIZATION_STATE_ON"})"));
  ExpectMalformed(absl::StrCat(R"({"openid":")", kOpenid, R"(","state":"AUTHORIZATION_STATE_OFF","openid":")", kOpenid,
                               R"("})"));
  // Names compare after unescaping: "open\u0069d" is "openid".
  ExpectMalformed(absl::StrCat(R"({"openid":"oOther","open\u0069d":")", kOpenid,
                               R"(","state":"AUTHORIZATION_STATE_ON"})"));
  ExpectMalformed(absl::StrCat(R"({"openid":")", kOpenid, R"(","state":"AUTHORIZATION_STATE_ON","extra":1,"extra":2})"));
  // Only the top level counts: nested objects may repeat names of the top level, and their own.
  PALMGATE_ASSERT_OK_AND_ASSIGN(
      AuthorizationResult r,
      ParseAuthorizationBody(absl::StrCat(R"({"openid":")", kOpenid,
                                          R"(","state":"AUTHORIZATION_STATE_ON","x":{"openid":"a","openid":"b"},)"
                                          R"("y":[{"state":1},{"state":2}]})"),
                             kOpenid, "1004"));
  EXPECT_EQ(r.openid, kOpenid);
  EXPECT_EQ(r.state, "AUTHORIZATION_STATE_ON");
}

}  // namespace
}  // namespace palmgate::wechatpay
