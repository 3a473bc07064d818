#include "sandbox/fault.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FaultTest, ParsesCombinedSpec) {
  absl::StatusOr<FaultPlan> p = ParseFaultSpec("latency=200;status=500");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->latency_ms, 200);
  ASSERT_TRUE(p->status.has_value());
  EXPECT_EQ(p->status->http_status, 500);
  EXPECT_EQ(p->status->code, "SYSTEM_ERROR");
  EXPECT_EQ(p->spec, "latency=200;status=500");
}

TEST(FaultTest, StatusDefaultsAndOverrides) {
  struct Case {
    int http;
    const char* code;
  } cases[] = {{400, "PARAM_ERROR"},        {401, "SIGN_ERROR"},          {403, "NO_AUTH"},
               {404, "NOT_FOUND"},          {429, "RATELIMIT_EXCEEDED"},  {500, "SYSTEM_ERROR"},
               {502, "SERVICE_UNAVAILABLE"}, {503, "SERVICE_UNAVAILABLE"}, {418, "INVALID_REQUEST"}};
  for (const Case& c : cases) {
    absl::StatusOr<FaultPlan> p = ParseFaultSpec("status=" + std::to_string(c.http));
    ASSERT_THAT(p, IsOk());
    EXPECT_EQ(p->status->code, c.code) << c.http;
  }
  absl::StatusOr<FaultPlan> p = ParseFaultSpec("status=429:FREQUENCY_LIMITED:slow: down");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->status->code, "FREQUENCY_LIMITED");
  EXPECT_EQ(p->status->message, "slow: down");
}

TEST(FaultTest, ParsesEveryNamedFault) {
  absl::StatusOr<FaultPlan> p = ParseFaultSpec(
      "drop;corrupt_signature;probe_signature;missing_signature_headers;missing_header=wechatpay-nonce;"
      "skew_timestamp=-400;unknown_serial;malformed_json;empty_body;html_error;huge_body=1048576");
  ASSERT_THAT(p, IsOk());
  EXPECT_TRUE(p->drop && p->corrupt_signature && p->probe_signature && p->missing_signature_headers &&
              p->unknown_serial && p->malformed_json && p->empty_body && p->html_error);
  EXPECT_THAT(p->missing_headers, ElementsAre("Wechatpay-Nonce"));
  EXPECT_EQ(p->skew_timestamp_s, -400);
  EXPECT_EQ(p->huge_body, 1048576u);
}

TEST(FaultTest, RejectsUnknownAndMalformedSpecs) {
  for (const char* bad : {"", "explode", "latency", "latency=-1", "latency=abc", "status=200", "status=abc",
                          "drop=1", "missing_header=Content-Type", "skew_timestamp=x", "huge_body=999999999999",
                          "drop;;empty_body"}) {
    EXPECT_THAT(ParseFaultSpec(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_THAT(ParseFaultSpec("explode"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown fault")));
}

TEST(FaultTest, DefaultRandomFaultsCoverEveryKind) {
  FaultPlan any;  // the union of every default spec's effects
  std::set<int> statuses;
  for (const std::string& spec : DefaultRandomFaultSpecs()) {
    absl::StatusOr<FaultPlan> p = ParseFaultSpec(spec);
    ASSERT_THAT(p, IsOk()) << spec;
    any.latency_ms += p->latency_ms;
    if (p->status.has_value()) statuses.insert(p->status->http_status);
    any.drop |= p->drop;
    any.corrupt_signature |= p->corrupt_signature;
    any.probe_signature |= p->probe_signature;
    any.missing_signature_headers |= p->missing_signature_headers;
    any.missing_headers.insert(any.missing_headers.end(), p->missing_headers.begin(), p->missing_headers.end());
    any.skew_timestamp_s += p->skew_timestamp_s;
    any.unknown_serial |= p->unknown_serial;
    any.malformed_json |= p->malformed_json;
    any.empty_body |= p->empty_body;
    any.html_error |= p->html_error;
    if (p->huge_body.has_value()) any.huge_body = p->huge_body;
  }
  EXPECT_GT(any.latency_ms, 0);
  EXPECT_EQ(statuses, (std::set<int>{400, 401, 403, 404, 429, 500, 503}));
  EXPECT_TRUE(any.drop && any.corrupt_signature && any.probe_signature && any.missing_signature_headers &&
              any.unknown_serial && any.malformed_json && any.empty_body && any.html_error);
  EXPECT_FALSE(any.missing_headers.empty());
  EXPECT_GT(any.skew_timestamp_s, 300);  // outside the 5-minute window
  EXPECT_GT(any.huge_body.value_or(0), 256u * 1024);  // above palmgate's response limit
}

}  // namespace
}  // namespace palmgate::sandbox
