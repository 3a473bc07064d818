#include "server/wechatpay/request_target.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/utf8.h"
#include "server/wechatpay/error.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::IsOkAndHolds;
using ::palmgate::testing::StatusIs;

constexpr char kPrefix[] = "/v3/palmservice/authorization/openid/";

TEST(RequestTargetTest, RealOpenidsPassThroughUnchanged) {  // D6, doc values
  EXPECT_THAT(AuthorizationQueryTarget("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "1004"),
              IsOkAndHolds(std::string(
                  "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004")));
}

TEST(RequestTargetTest, KeepsUnreservedAndCase) {
  EXPECT_EQ(PercentEncode("AbC-._~xYz09"), "AbC-._~xYz09");
}

TEST(RequestTargetTest, EncodesD6PathologicalValue) {
  // vectors.md D6: `o+a/b c~*=&中`; RFC 3986 keeps only unreserved characters.
  EXPECT_EQ(PercentEncode("o+a/b c~*=&\xe4\xb8\xad"), "o%2Ba%2Fb%20c~%2A%3D%26%E4%B8%AD");
}

struct HostileCase {
  const char* openid;
  const char* encoded;
};

TEST(RequestTargetTest, HostileOpenidsStayOneSegment) {
  const HostileCase cases[] = {
      {"../../v3/certificates", "..%2F..%2Fv3%2Fcertificates"},
      {"...", "..."},
      {"a/b", "a%2Fb"},
      {"a?organization_id=evil", "a%3Forganization_id%3Devil"},
      {"a#frag", "a%23frag"},
      {"100%", "100%25"},
      {"%2F", "%252F"},
      {"a b", "a%20b"},
      {"a\\b", "a%5Cb"},
      {"Ωmega", "%CE%A9mega"},
  };
  for (const auto& c : cases) {
    auto target = AuthorizationQueryTarget(c.openid, "1004");
    ASSERT_TRUE(target.ok()) << c.openid;
    EXPECT_EQ(*target, absl::StrCat(kPrefix, c.encoded, "?organization_id=1004")) << c.openid;
    // Exactly one segment after the prefix, and the query is ours alone.
    absl::string_view rest = absl::string_view(*target).substr(sizeof(kPrefix) - 1);
    EXPECT_EQ(rest.find('/'), absl::string_view::npos) << c.openid;
    EXPECT_EQ(rest.find('#'), absl::string_view::npos) << c.openid;
    EXPECT_EQ(rest.find('?'), rest.find("?organization_id=1004")) << c.openid;
  }
}

TEST(RequestTargetTest, HostileOrganizationIdsStayOneQueryValue) {
  auto target = AuthorizationQueryTarget("o1", "1004&organization_id=2&x=#y");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, absl::StrCat(kPrefix, "o1?organization_id=1004%26organization_id%3D2%26x%3D%23y"));
}

TEST(RequestTargetTest, RefusesBadFieldsLocally) {
  struct Bad {
    std::string openid;
    std::string organization_id;
    ErrorReason reason;
    const char* field;
  };
  const Bad cases[] = {
      {"", "1004", ErrorReason::kInvalidOpenid, "openid"},
      {std::string(129, 'a'), "1004", ErrorReason::kInvalidOpenid, "openid"},
      {std::string("a\0b", 3), "1004", ErrorReason::kInvalidOpenid, "openid"},
      {"a\nb", "1004", ErrorReason::kInvalidOpenid, "openid"},
      {"a\x7f", "1004", ErrorReason::kInvalidOpenid, "openid"},
      {"\xff\xfe", "1004", ErrorReason::kInvalidOpenid, "openid"},
      {"\xc0\xaf", "1004", ErrorReason::kInvalidOpenid, "openid"},          // overlong "/"
      {"\xed\xa0\x80", "1004", ErrorReason::kInvalidOpenid, "openid"},      // surrogate
      {"\xe4\xb8", "1004", ErrorReason::kInvalidOpenid, "openid"},          // truncated
      {"..", "1004", ErrorReason::kInvalidOpenid, "openid"},
      {".", "1004", ErrorReason::kInvalidOpenid, "openid"},
      {"o1", "", ErrorReason::kInvalidOrganizationId, "organization_id"},
      {"o1", std::string(65, '1'), ErrorReason::kInvalidOrganizationId, "organization_id"},
      {"o1", "10\r\n04", ErrorReason::kInvalidOrganizationId, "organization_id"},
      {"o1", "\x80", ErrorReason::kInvalidOrganizationId, "organization_id"},
  };
  for (const auto& c : cases) {
    auto target = AuthorizationQueryTarget(c.openid, c.organization_id);
    EXPECT_THAT(target, StatusIs(absl::StatusCode::kInvalidArgument)) << c.openid;
    auto e = GetUpstreamError(target.status());
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->reason, c.reason);
    EXPECT_EQ(e->field, c.field);
  }
}

TEST(RequestTargetTest, AcceptsLimitsExactly) {
  EXPECT_TRUE(AuthorizationQueryTarget(std::string(128, 'a'), std::string(64, '1')).ok());
  // 128 bytes of UTF-8 (42 three-byte characters + 2 ASCII) are within the limit.
  std::string cjk;
  for (int i = 0; i < 42; ++i) cjk += "\xe4\xb8\xad";
  EXPECT_TRUE(AuthorizationQueryTarget(cjk + "ab", "1").ok());
  EXPECT_FALSE(AuthorizationQueryTarget(cjk + "abc", "1").ok());
}

TEST(Utf8Test, ValidatesUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("\xe4\xb8\xad\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\x80"));
}

// Found by fuzzing (tests/fuzz): the bound of kept texts cut characters in half.
TEST(Utf8Test, ToBoundedUtf8CutsBetweenCharactersAndReplacesStrayBytes) {
  EXPECT_EQ(ToBoundedUtf8("ascii", 3), "asc");
  EXPECT_EQ(ToBoundedUtf8("\xe4\xb8\xad\xe6\x96\x87", 5), "\xe4\xb8\xad");  // 中 of 中文: 文 does not fit
  EXPECT_EQ(ToBoundedUtf8("a\xff" "b\xc4" "C", 10), "a?b?C");
  EXPECT_EQ(ToBoundedUtf8("\xed\xa0\x80", 10), "???");  // a surrogate is three stray bytes
  EXPECT_EQ(ToBoundedUtf8("", 10), "");
  EXPECT_EQ(ToBoundedUtf8("\xf0\x9f\x98\x80", 3), "");
}

}  // namespace
}  // namespace palmgate::wechatpay
