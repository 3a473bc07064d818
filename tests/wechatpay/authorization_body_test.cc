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

}  // namespace
}  // namespace palmgate::wechatpay
