#include "server/common/net_util.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;

TEST(NetUtilTest, LoopbackIpLiteralsAreRecognised) {
  for (const char* host : {"127.0.0.1", "127.0.0.2", "127.255.255.255", "127.1.2.3", "::1", "[::1]",
                           "0:0:0:0:0:0:0:1", "[0000::0001]", "::ffff:127.0.0.1", "[::ffff:127.9.9.9]"}) {
    EXPECT_TRUE(IsLoopbackIpLiteral(host)) << host;
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
}

TEST(NetUtilTest, EverythingElseIsNotLoopback) {
  for (const char* host : {"", "0.0.0.0", "::", "[::]", "10.0.0.1", "192.0.2.10", "128.0.0.1", "126.255.255.255",
                           "::2", "::ffff:10.0.0.1", "fe80::1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1",
                           "127.0.0.1.example.com", "localhost.example.com", "api.mch.weixin.qq.com", "[127.0.0.1]",
                           "127.0.0.1 ", " 127.0.0.1", "[::1", "::1]"}) {
    EXPECT_FALSE(IsLoopbackIpLiteral(host)) << host;
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
  EXPECT_FALSE(IsLoopbackIpLiteral(std::string("127.0.0.1\0.evil", 15)));
}

TEST(NetUtilTest, LocalhostIsTheOnlyLoopbackName) {
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("LocalHost"));
  EXPECT_FALSE(IsLoopbackIpLiteral("localhost"));
  EXPECT_FALSE(IsLoopbackHost("localhost."));
  EXPECT_FALSE(IsLoopbackHost("ip6-localhost"));
  EXPECT_FALSE(IsLoopbackHost("sub.localhost"));
}

TEST(NetUtilTest, ParseIpHostPortNeedsAHost) {
  auto v4 = ParseIpHostPort("127.0.0.1:9090");
  ASSERT_THAT(v4, IsOk());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 9090);
  EXPECT_FALSE(v4->ipv6);
  auto v6 = ParseIpHostPort("[::1]:0");
  ASSERT_THAT(v6, IsOk());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
  EXPECT_TRUE(v6->ipv6);
  EXPECT_THAT(ParseIpHostPort("0.0.0.0:65535"), IsOk());  // every interface, said explicitly
  for (const char* bad : {"9090", ":9090", "", ":", "localhost:9090", "::1:9090", "[::1]", "127.0.0.1:",
                          "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:9090s", "127.0.0.1:9090r",
                          "127.0.0.1:1,9090", "127.0.0.1:9090,127.0.0.1:9091", "+9090", "[127.0.0.1]:9090",
                          "127.0.0.1:0x50", "127.0.0.1: 80"}) {
    EXPECT_THAT(ParseIpHostPort(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(NetUtilTest, PlainHttpLoopbackUrls) {
  for (const char* url : {"http://127.0.0.1:8080/v3/x", "HTTP://localhost/v3", "http://[::1]:9/x?y", "http://127.9.0.1"}) {
    EXPECT_TRUE(IsPlainHttpLoopbackUrl(url)) << url;
  }
  for (const char* url : {"https://127.0.0.1/v3/x", "http://10.0.0.1/v3", "http://user@127.0.0.1/",
                          "http://evil.example#@127.0.0.1", "127.0.0.1:80", "http://localhost.example/"}) {
    EXPECT_FALSE(IsPlainHttpLoopbackUrl(url)) << url;
  }
}

}  // namespace
}  // namespace palmgate
