#include "sandbox/authorization_parser.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kGoOrder[] =
    R"(WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="N",timestamp="1554208460",serial_no="S",signature="SIG")";

TEST(AuthorizationParserTest, ParsesGoFieldOrder) {
  absl::StatusOr<AuthorizationFields> f = ParseAuthorization(kGoOrder);
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->mchid, "1900000001");
  EXPECT_EQ(f->nonce_str, "N");
  EXPECT_EQ(f->timestamp, "1554208460");
  EXPECT_EQ(f->serial_no, "S");
  EXPECT_EQ(f->signature, "SIG");
}

TEST(AuthorizationParserTest, OrderIsNotSignificant) {
  for (const char* header : {
           R"(WECHATPAY2-SHA256-RSA2048 mchid="1",serial_no="S",timestamp="2",nonce_str="N",signature="A+/=")",
           R"(WECHATPAY2-SHA256-RSA2048 signature="A+/=",serial_no="S",nonce_str="N",timestamp="2",mchid="1")",
           R"(WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",signature="A+/=",timestamp="2",serial_no="S")"}) {
    absl::StatusOr<AuthorizationFields> f = ParseAuthorization(header);
    ASSERT_THAT(f, IsOk()) << header;
    EXPECT_EQ(f->mchid, "1");
    EXPECT_EQ(f->nonce_str, "N");
    EXPECT_EQ(f->timestamp, "2");
    EXPECT_EQ(f->serial_no, "S");
    EXPECT_EQ(f->signature, "A+/=");
  }
}

TEST(AuthorizationParserTest, RejectsDuplicates) {
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",nonce_str="M",timestamp="2",serial_no="S",signature="X")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate parameter \"nonce_str\"")));
}

TEST(AuthorizationParserTest, RejectsEachMissingKey) {
  const char* names[] = {"mchid", "nonce_str", "timestamp", "serial_no", "signature"};
  for (int skip = 0; skip < 5; ++skip) {
    std::string header = "WECHATPAY2-SHA256-RSA2048 ";
    bool first = true;
    for (int k = 0; k < 5; ++k) {
      if (k == skip) continue;
      header += std::string(first ? "" : ",") + names[k] + "=\"v\"";
      first = false;
    }
    EXPECT_THAT(ParseAuthorization(header),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(std::string("missing parameter \"") + names[skip] + "\"")));
  }
}

TEST(AuthorizationParserTest, RejectsBadScheme) {
  for (const char* header :
       {R"(WECHATPAY2-SHA256-RSA mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X")",
        R"(wechatpay2-sha256-rsa2048 mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X")",
        R"(Bearer abc)", R"(mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X")"}) {
    EXPECT_THAT(ParseAuthorization(header), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scheme")))
        << header;
  }
  EXPECT_THAT(ParseAuthorization("WECHATPAY2-SHA256-RSA2048"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no parameters")));
  EXPECT_THAT(ParseAuthorization(""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AuthorizationParserTest, RejectsQuotingDefects) {
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="N",timestamp="2",serial_no="S",signature="X")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("double quotes")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="1", nonce_str="N",timestamp="2",serial_no="S",signature="X")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected character")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="1"nonce_str="N",timestamp="2",serial_no="S",signature="X")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected ','")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="",nonce_str="N",timestamp="2",serial_no="S",signature="X")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty value")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X",)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing parameter after ','")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X",extra="y")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown parameter \"extra\"")));
  EXPECT_THAT(ParseAuthorization(
                  R"(WECHATPAY2-SHA256-RSA2048  mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X")"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AuthorizationParserTest, BuildsD1Message) {
  // vectors.md D1: 136 bytes.
  std::string msg = BuildRequestSignMessage(
      "GET", "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004", "1554208460",
      "593BEC0C930BF1AFEB40B4A08C8FB242", "");
  EXPECT_EQ(msg,
            "GET\n/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004\n1554208460\n"
            "593BEC0C930BF1AFEB40B4A08C8FB242\n\n");
  EXPECT_EQ(msg.size(), 136u);
}

}  // namespace
}  // namespace palmgate::sandbox
