#include "server/service/status_conversion.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "server/service/request_mapping.h"
#include "service/wire/get_authorization_request.pb.h"
#include "server/wechatpay/error.h"

namespace palmgate::service {
namespace {

using wechatpay::ErrorReason;
using wechatpay::MakeError;
using wechatpay::UpstreamError;

google::rpc::Status Details(const grpc::Status& s) {
  google::rpc::Status rich;
  EXPECT_TRUE(rich.ParseFromString(s.error_details()));
  return rich;
}

TEST(StatusConversionTest, OkIsOk) { EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok()); }

TEST(StatusConversionTest, CarriesExactlyOneErrorInfoWithUpstreamMetadata) {
  UpstreamError e;
  e.reason = ErrorReason::kUpstreamRateLimited;
  e.http_status = 429;
  e.wechatpay_code = "FREQUENCY_LIMITED";
  e.wechatpay_message = "频率超限";
  e.request_id = "RID-1";
  e.retry_after = absl::Milliseconds(1500);
  grpc::Status s = ToGrpcStatus(MakeError(absl::StatusCode::kResourceExhausted, "wechatpay: http 429", e));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "wechatpay rate limit reached");
  google::rpc::Status rich = Details(s);
  EXPECT_EQ(rich.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  int infos = 0;
  for (const auto& any : rich.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) {
      ++infos;
      EXPECT_EQ(info.reason(), "UPSTREAM_RATE_LIMITED");
      EXPECT_EQ(info.domain(), "palmgate.dev");
      EXPECT_EQ(info.metadata().at("requestId"), "RID-1");
      EXPECT_EQ(info.metadata().at("httpStatus"), "429");
      EXPECT_EQ(info.metadata().at("wechatpayCode"), "FREQUENCY_LIMITED");
      EXPECT_EQ(info.metadata().at("wechatpayMessage"), "频率超限");
    }
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&retry)) {
      EXPECT_EQ(retry.retry_delay().seconds(), 1);
      EXPECT_EQ(retry.retry_delay().nanos(), 500000000);
    }
  }
  EXPECT_EQ(infos, 1);
}

TEST(StatusConversionTest, PlainStatusStillGetsErrorInfo) {
  google::rpc::Status rich = Details(ToGrpcStatus(absl::InternalError("boom")));
  ASSERT_EQ(rich.details_size(), 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(rich.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "INTERNAL");
}

google::rpc::ErrorInfo InfoOf(const grpc::Status& s) {
  const google::rpc::Status rich = Details(s);
  google::rpc::ErrorInfo info;
  for (const auto& any : rich.details()) {
    if (any.UnpackTo(&info)) break;
  }
  return info;
}

// Issue 13 finding 11: the unknown-serial error listed every key id the
// gateway holds, and proxy and DNS failures named internal hosts and
// addresses. Callers get a short, stable message per reason; the status
// message (for the RPC's log line) may say more.
TEST(StatusConversionTest, CallerMessagesNameNoSerialHostOrAddress) {
  struct Case {
    absl::StatusCode code;
    ErrorReason reason;
    const char* internal;
    const char* expected;
  };
  const Case cases[] = {
      {absl::StatusCode::kInternal, ErrorReason::kUnknownWechatpaySerial,
       R"(verify response: unknown serial "5157F09EFDC096DE" (known: PUB_KEY_ID_0114232134912410000000000000000001, 440024045C4A427599D09BB4E3DE0279F2E813FD))",
       "wechatpay answer is signed with a key the gateway does not hold"},
      {absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable,
       "upstream: Failed to connect to proxy.corp.internal port 3128 after 0 ms: Couldn't connect to server",
       "wechatpay is unavailable"},
      {absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable,
       "upstream: Could not resolve host: api.mch.weixin.qq.com.corp.internal", "wechatpay is unavailable"},
      {absl::StatusCode::kUnavailable, ErrorReason::kUpstreamTlsError,
       "upstream: tls: SSL: no alternative certificate subject name matches target host name '10.1.2.3'",
       "wechatpay's tls certificate did not verify"},
      {absl::StatusCode::kInternal, ErrorReason::kResponseSignatureInvalid,
       R"(verify response: signature does not verify with key "PUB_KEY_ID_0114232134912410000000000000000001")",
       "wechatpay answer has an invalid signature"},
      {absl::StatusCode::kInternal, ErrorReason::kConfiguration, "sign request: /run/secrets/apiclient_key.pem: gone",
       "gateway misconfigured"},
  };
  for (const Case& c : cases) {
    UpstreamError e;
    e.reason = c.reason;
    e.serial = "5157F09EFDC096DE";
    grpc::Status s = ToGrpcStatus(MakeError(c.code, c.internal, e));
    EXPECT_EQ(s.error_message(), c.expected) << c.internal;
    google::rpc::Status rich = Details(s);
    EXPECT_EQ(rich.message(), c.expected);
    google::rpc::ErrorInfo info = InfoOf(s);
    EXPECT_EQ(info.reason(), wechatpay::ReasonName(c.reason));
    EXPECT_EQ(info.metadata().count("wechatpaySerial"), 0u);
    for (const auto& [k, v] : info.metadata()) EXPECT_EQ(v.find("5157F"), std::string::npos) << k;
  }
  // Without a payload: still nothing of the message.
  EXPECT_EQ(ToGrpcStatus(absl::InternalError("open /etc/palmgate/x: denied")).error_message(), "internal error");
}

// Finding 10: the unsigned code reaches ErrorInfo only in WeChat Pay's form.
TEST(StatusConversionTest, WechatpayCodeIsPassedOnOnlyInWechatpaysForm) {
  for (const char* code : {"PARAM_ERROR", "A_CODE_NOT_LISTED_YET"}) {
    UpstreamError e;
    e.reason = ErrorReason::kUpstreamInvalidRequest;
    e.http_status = 400;
    e.wechatpay_code = code;
    EXPECT_EQ(InfoOf(ToGrpcStatus(MakeError(absl::StatusCode::kFailedPrecondition, "x", e))).metadata().at("wechatpayCode"),
              code);
  }
  for (const char* code : {"call +86 400 now", "<script>", "lower_case", "X-1"}) {
    UpstreamError e;
    e.reason = ErrorReason::kUpstreamInvalidRequest;
    e.http_status = 400;
    e.wechatpay_code = code;
    grpc::Status s = ToGrpcStatus(MakeError(absl::StatusCode::kFailedPrecondition, code, e));
    EXPECT_EQ(InfoOf(s).metadata().count("wechatpayCode"), 0u) << code;
    EXPECT_EQ(s.error_message().find(code), std::string::npos);
  }
}

// Finding 8b: wechatpayMessage is unsigned text; whatever built the payload,
// callers get it without controls or bidi overrides, bounded.
TEST(StatusConversionTest, WechatpayMessageIsPassedOnDisplayable) {
  UpstreamError e;
  e.reason = ErrorReason::kUpstreamUnavailable;
  e.http_status = 500;
  e.wechatpay_message = absl::StrCat("\x1b]0;owned\x07 \xE2\x80\xAEnwod\xE2\x80\xA8", std::string(1000, 'x'));
  const std::string kept =
      InfoOf(ToGrpcStatus(MakeError(absl::StatusCode::kUnavailable, "x", e))).metadata().at("wechatpayMessage");
  EXPECT_EQ(kept.substr(0, 27), "\xEF\xBF\xBD]0;owned\xEF\xBF\xBD \xEF\xBF\xBDnwod xxxx");
  EXPECT_LE(kept.size(), 512u);
}

TEST(StatusConversionTest, BadRequestListsEveryBadField) {
  std::vector<absl::Status> problems = ValidateRequest("", std::string(65, '1'));
  ASSERT_EQ(problems.size(), 2u);
  grpc::Status s = ToGrpcStatus(problems[0], {problems[1]});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::Status rich = Details(s);
  google::rpc::BadRequest bad;
  bool found = false;
  for (const auto& any : rich.details()) found |= any.UnpackTo(&bad);
  ASSERT_TRUE(found);
  ASSERT_EQ(bad.field_violations_size(), 2);
  EXPECT_EQ(bad.field_violations(0).field(), "openid");
  EXPECT_EQ(bad.field_violations(0).description(), "must not be empty");
  EXPECT_EQ(bad.field_violations(1).field(), "organization_id");
  EXPECT_EQ(bad.field_violations(1).description(), "is 65 bytes; at most 64 allowed");
  EXPECT_EQ(s.error_message(), "openid: must not be empty");  // the caller's own input only
}

TEST(RequestMappingTest, StatesMapByNameAndUnknownIsUnspecified) {
  EXPECT_EQ(StateFromString("AUTHORIZATION_STATE_NONE"), palmgate::v1::AUTHORIZATION_STATE_NONE);
  EXPECT_EQ(StateFromString("AUTHORIZATION_STATE_ON"), palmgate::v1::AUTHORIZATION_STATE_ON);
  EXPECT_EQ(StateFromString("AUTHORIZATION_STATE_OFF"), palmgate::v1::AUTHORIZATION_STATE_OFF);
  EXPECT_EQ(StateFromString("AUTHORIZATION_STATE_PAUSED"), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  EXPECT_EQ(StateFromString("AUTHORIZATION_STATE_UNSPECIFIED"), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  EXPECT_EQ(StateFromString("authorization_state_on"), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  EXPECT_EQ(StateFromString(""), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
}

TEST(RequestMappingTest, MapsAVerifiedAnswer) {
  wechatpay::AuthorizationResult r;
  r.openid = "o1";
  r.organization_id = "1004";
  r.state = "AUTHORIZATION_STATE_PAUSED";
  r.authorize_time = absl::FromUnixSeconds(1528425296) + absl::Milliseconds(250);
  r.request_id = "RID";
  palmgate::v1::Authorization out;
  ToAuthorization(r, &out);
  EXPECT_EQ(out.state(), palmgate::v1::AUTHORIZATION_STATE_UNSPECIFIED);
  EXPECT_EQ(out.wechatpay_state(), "AUTHORIZATION_STATE_PAUSED");
  EXPECT_EQ(out.authorize_time().seconds(), 1528425296);
  EXPECT_EQ(out.authorize_time().nanos(), 250000000);
  EXPECT_EQ(out.wechatpay_request_id(), "RID");
  wechatpay::AuthorizationResult no_time;
  palmgate::v1::Authorization out2;
  ToAuthorization(no_time, &out2);
  EXPECT_FALSE(out2.has_authorize_time());
}

// Found by fuzzing (tests/fuzz/corpus/request_validator/crash-superseded-invalid-utf8-field),
// kept as documented behaviour: protobuf keeps the last occurrence of a field,
// and the wire image checks only that one; palmgate.v1's parser would also
// refuse an earlier occurrence with invalid UTF-8. The values used are valid.
TEST(RequestMappingTest, OnlyTheLastOccurrenceOfAFieldIsValidated) {
  const std::string bytes("\x0a\x02\xff\xfe\x0a\x06second\x12\x01\x31", 15);
  palmgate::internal::wire::GetAuthorizationRequest wire;
  ASSERT_TRUE(wire.ParseFromString(bytes));
  EXPECT_EQ(wire.openid(), "second");
  EXPECT_TRUE(ValidateRequest(wire.openid(), wire.organization_id()).empty());
  palmgate::v1::GetAuthorizationRequest used;
  ASSERT_TRUE(used.ParseFromString(wire.SerializeAsString()));
  EXPECT_EQ(used.openid(), "second");
  EXPECT_EQ(used.organization_id(), "1");
}

}  // namespace
}  // namespace palmgate::service
