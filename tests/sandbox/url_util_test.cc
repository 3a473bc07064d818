#include "sandbox/url_util.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::IsOkAndHolds;
using ::palmgate::testing::StatusIs;

TEST(UrlUtilTest, SplitsTarget) {
  SplitTarget s = SplitRequestTarget("/a/b?x=1&y=2?z");
  EXPECT_EQ(s.path, "/a/b");
  EXPECT_EQ(s.query, "x=1&y=2?z");
  EXPECT_TRUE(s.has_query);
  SplitTarget t = SplitRequestTarget("/a");
  EXPECT_EQ(t.path, "/a");
  EXPECT_FALSE(t.has_query);
}

TEST(UrlUtilTest, PercentDecodesStrictly) {
  EXPECT_THAT(PercentDecode("o%2Ba%2Fb%20c~%2A%3D%26%E4%B8%AD"), IsOkAndHolds(std::string("o+a/b c~*=&中")));
  EXPECT_THAT(PercentDecode("a%2fb%2F"), IsOkAndHolds(std::string("a/b/")));
  EXPECT_THAT(PercentDecode("plus+stays"), IsOkAndHolds(std::string("plus+stays")));
  EXPECT_THAT(PercentDecode(""), IsOkAndHolds(std::string()));
  for (const char* bad : {"%", "%4", "a%G1", "%%", "abc%2"}) {
    EXPECT_THAT(PercentDecode(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(UrlUtilTest, FindsQueryParameter) {
  EXPECT_THAT(FindQueryParameter("organization_id=1004", "organization_id"),
              IsOkAndHolds(std::optional<std::string>("1004")));
  EXPECT_THAT(FindQueryParameter("a=1&organization_id=a%2Bb&organization_id=2", "organization_id"),
              IsOkAndHolds(std::optional<std::string>("a%2Bb")));
  EXPECT_THAT(FindQueryParameter("organization_idx=1", "organization_id"),
              IsOkAndHolds(std::optional<std::string>()));
  EXPECT_THAT(FindQueryParameter("organization_id", "organization_id"),
              IsOkAndHolds(std::optional<std::string>("")));
  EXPECT_THAT(FindQueryParameter("organization%5Fid=7", "organization_id"),
              IsOkAndHolds(std::optional<std::string>("7")));
  EXPECT_THAT(FindQueryParameter("", "organization_id"), IsOkAndHolds(std::optional<std::string>()));
  EXPECT_THAT(FindQueryParameter("bad%zz=1", "organization_id"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(UrlUtilTest, ValidatesUtf8) {
  EXPECT_TRUE(IsValidUtf8("abc"));
  EXPECT_TRUE(IsValidUtf8("中文"));
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xE4\xB8"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

}  // namespace
}  // namespace palmgate::sandbox
