// Metrics (server/ops/metrics.h): label values come from bounded sets.
#include "server/ops/metrics.h"

#include <random>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::ops {
namespace {

using ::palmgate::testing::IsOk;

// The wechatpay_code label values of palmgate_upstream_requests_total in `text`.
std::set<std::string> CodeLabels(const std::string& text) {
  std::set<std::string> codes;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "palmgate_upstream_requests_total{")) continue;
    const size_t at = line.find("wechatpay_code=\"");
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = line.substr(at + 16);
    codes.insert(std::string(rest.substr(0, rest.find('"'))));
  }
  return codes;
}

// The status label values of palmgate_upstream_requests_total in `text`.
std::set<std::string> StatusLabels(const std::string& text) {
  std::set<std::string> statuses;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "palmgate_upstream_requests_total{")) continue;
    const size_t at = line.find("status=\"");
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = line.substr(at + 8);
    statuses.insert(std::string(rest.substr(0, rest.find('"'))));
  }
  return statuses;
}

// Issue 13 finding 10: error bodies are not signed, and 40 random codes made
// 26 new series of palmgate_upstream_requests_total. Now only a fixed list of
// WeChat Pay codes is a label value; every other code is OTHER.
// Debian's civetweb is built without IPv6: an IPv6 address is refused with a
// line that says so (it was "null context when constructing CivetServer").
TEST(MetricsTest, IpV6AddressIsRefusedSayingWhy) {
  for (const char* listen : {"[::1]:0", "[::]:0"}) {
    absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create(listen);
    EXPECT_THAT(metrics, testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                           ::testing::AllOf(::testing::StartsWith("--metrics_listen: IPv6"),
                                                            ::testing::HasSubstr("127.0.0.1:9090"))))
        << listen;
  }
  EXPECT_THAT(Metrics::Create("127.0.0.1:0"), IsOk());
}

TEST(MetricsTest, UnsignedWechatpayCodesCannotAddSeries) {
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create("");
  ASSERT_THAT(metrics, IsOk());
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> letter('A', 'Z');
  std::uniform_int_distribution<int> length(1, 20);
  for (int i = 0; i < 40; ++i) {
    std::string code;
    for (int n = length(rng); n > 0; --n) code.push_back(static_cast<char>(letter(rng)));
    (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", 400, code, absl::Milliseconds(5));
  }
  for (const char* hostile : {"PARAM_ERROR_X", "param_error", "<script>", "CALL +86 400"}) {
    (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", 400, hostile, absl::Milliseconds(5));
  }
  (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", 400, "PARAM_ERROR", absl::Milliseconds(5));
  (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", 429, "RATELIMIT_EXCEEDED", absl::Milliseconds(5));
  (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", 200, "", absl::Milliseconds(5));
  EXPECT_THAT(CodeLabels((*metrics)->Render()),
              ::testing::UnorderedElementsAre("OTHER", "PARAM_ERROR", "RATELIMIT_EXCEEDED", "none"));
}

// Issue 13 finding 8a: the status label took any 3-digit upstream status (299,
// 399, 418, 600, 999 each made a new series). Now only the statuses WeChat Pay
// documents are label values; others count by class, or as "other".
TEST(MetricsTest, UndocumentedUpstreamStatusesCannotAddSeries) {
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create("");
  ASSERT_THAT(metrics, IsOk());
  for (int status = 100; status <= 999; ++status) {
    (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", status, "", absl::Milliseconds(5));
  }
  for (int status : {0, -1, 1000, 2147483647}) {
    (*metrics)->UpstreamResponse("https://api.mch.weixin.qq.com", status, "", absl::Milliseconds(5));
  }
  EXPECT_THAT(StatusLabels((*metrics)->Render()),
              ::testing::UnorderedElementsAre("0", "200", "202", "204", "400", "401", "403", "404", "405", "429",
                                              "500", "502", "503", "504", "2xx", "3xx", "4xx", "5xx", "other"));
}

}  // namespace
}  // namespace palmgate::ops
