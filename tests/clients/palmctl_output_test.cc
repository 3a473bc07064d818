#include "client/palmctl_output.h"

#include <string>

#include <google/protobuf/util/time_util.h>
#include <grpcpp/support/status.h>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace palmgate::client {
namespace {

using ::testing::HasSubstr;

grpc::Status RichStatus(grpc::StatusCode code, const std::string& message, const google::rpc::Status& rich) {
  return grpc::Status(code, message, rich.SerializeAsString());
}

TEST(StatusCodeNameTest, NamesEveryCanonicalCode) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(42), "CODE_42");
}

TEST(FormatAuthorizationTest, PrintsEveryFieldWithRfc3339Time) {
  palmgate::v1::Authorization a;
  a.set_openid("o1");
  a.set_organization_id("1004");
  a.set_state(palmgate::v1::AUTHORIZATION_STATE_ON);
  a.set_wechatpay_state("AUTHORIZATION_STATE_ON");
  a.set_wechatpay_request_id("REQ");
  ASSERT_TRUE(google::protobuf::util::TimeUtil::FromString("2024-05-01T10:00:00+08:00", a.mutable_authorize_time()));
  EXPECT_EQ(FormatAuthorization(a),
            "state: AUTHORIZATION_STATE_ON\n"
            "authorize_time: 2024-05-01T02:00:00Z\n"
            "openid: o1\n"
            "organization_id: 1004\n"
            "wechatpay_state: AUTHORIZATION_STATE_ON\n"
            "request_id: REQ\n");
}

TEST(FormatAuthorizationTest, UnsetTimeIsDash) {
  EXPECT_THAT(FormatAuthorization(palmgate::v1::Authorization()), HasSubstr("authorize_time: -\n"));
}

TEST(FormatAuthorizationJsonTest, PrintsEnumNamesAndEveryField) {
  palmgate::v1::Authorization a;
  a.set_openid("o1");
  absl::StatusOr<std::string> json = FormatAuthorizationJson(a);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"state\":\"AUTHORIZATION_STATE_UNSPECIFIED\""));
  EXPECT_THAT(*json, HasSubstr("\"openid\":\"o1\""));
  EXPECT_THAT(*json, HasSubstr("\"wechatpayRequestId\":\"\""));
  EXPECT_EQ(json->find('\n'), std::string::npos);
}

TEST(FormatErrorTest, PlainStatusIsOneLine) {
  EXPECT_EQ(FormatError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused")),
            "error: UNAVAILABLE: connection refused\n");
}

TEST(FormatErrorTest, DecodesErrorInfoBadRequestAndRetryInfoInOrder) {
  google::rpc::Status rich;
  google::rpc::ErrorInfo info;
  info.set_reason("UPSTREAM_RATE_LIMITED");
  info.set_domain("palmgate.dev");
  (*info.mutable_metadata())["requestId"] = "R1";
  (*info.mutable_metadata())["httpStatus"] = "429";
  rich.add_details()->PackFrom(info);
  google::rpc::BadRequest bad;
  auto* v = bad.add_field_violations();
  v->set_field("openid");
  v->set_description("must not be empty");
  rich.add_details()->PackFrom(bad);
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(1);
  retry.mutable_retry_delay()->set_nanos(500000000);
  rich.add_details()->PackFrom(retry);
  google::rpc::Help help;  // not decoded: reported by type
  rich.add_details()->PackFrom(help);

  EXPECT_EQ(FormatError(RichStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, "slow down", rich)),
            "error: RESOURCE_EXHAUSTED: slow down\n"
            "  reason: UPSTREAM_RATE_LIMITED\n"
            "  domain: palmgate.dev\n"
            "  metadata.httpStatus: 429\n"
            "  metadata.requestId: R1\n"
            "  bad_request: openid: must not be empty\n"
            "  retry_delay: 1.500s\n"
            "  detail: type.googleapis.com/google.rpc.Help\n");
}

TEST(FormatErrorTest, ReportsUndecodableDetails) {
  grpc::Status status(grpc::StatusCode::INTERNAL, "boom", std::string("\xff\xff\xff", 3));
  EXPECT_THAT(FormatError(status), HasSubstr("not a google.rpc.Status"));
}

}  // namespace
}  // namespace palmgate::client
