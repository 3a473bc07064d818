#include "server/gateway.h"

#include <stdlib.h>

#include <future>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class GatewayConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A directory of its own: ctest runs each test of this suite as a separate
    // process in parallel, and a shared one was regenerated under a reader's feet.
    auto dir = testing::MakeTempDir("gateway_config_keys");
    ASSERT_THAT(dir, IsOk());
    dir_ = new std::string(*dir + "/keys");
    ASSERT_THAT(testing::RunSandboxKeygen(*dir_, {"--force"}), IsOk());
  }
  static void TearDownTestSuite() { delete dir_; }

  GatewayConfig Valid() const {
    auto merchant = testing::SandboxMerchant::Load(*dir_);
    EXPECT_THAT(merchant, IsOk());
    GatewayConfig c;
    c.mchid = merchant->mchid();
    c.merchant_serial = merchant->merchant_serial();
    c.merchant_private_key = *dir_ + "/apiclient_key.pem";
    c.merchant_certificate = *dir_ + "/apiclient_cert.pem";
    c.wechatpay_public_key = *dir_ + "/pub_key.pem";
    c.wechatpay_public_key_id = merchant->public_key_id();
    c.platform_certificates = {*dir_ + "/platform_cert.pem"};
    c.upstream = "https://127.0.0.1:1";
    c.upstream_ca = *dir_ + "/ca_cert.pem";
    return c;
  }

  static std::string* dir_;
};

std::string* GatewayConfigTest::dir_ = nullptr;

TEST_F(GatewayConfigTest, ValidConfigurationLoadsInEveryMode) {
  auto mixed = LoadGateway(Valid(), SystemClock::Get());
  ASSERT_THAT(mixed, IsOk());
  EXPECT_EQ((*mixed)->keys->Current()->size(), 2u);
  GatewayConfig key_only = Valid();
  key_only.platform_certificates.clear();
  EXPECT_THAT(LoadGateway(key_only, SystemClock::Get()), IsOk());
  GatewayConfig cert_only = Valid();
  cert_only.wechatpay_public_key.clear();
  cert_only.wechatpay_public_key_id.clear();
  EXPECT_THAT(LoadGateway(cert_only, SystemClock::Get()), IsOk());
}

TEST_F(GatewayConfigTest, EachMistakeNamesItsSetting) {
  struct Case {
    const char* flag;
    std::function<void(GatewayConfig&)> mutate;
  };
  const std::string dir = *dir_;
  const Case cases[] = {
      {"--mchid", [](GatewayConfig& c) { c.mchid.clear(); }},
      {"--merchant_serial", [](GatewayConfig& c) { c.merchant_serial.clear(); }},
      {"--merchant_serial", [](GatewayConfig& c) { c.merchant_serial = "0123456789ABCDEF"; }},
      {"--merchant_private_key", [](GatewayConfig& c) { c.merchant_private_key.clear(); }},
      {"--merchant_private_key", [dir](GatewayConfig& c) { c.merchant_private_key = dir + "/missing.pem"; }},
      {"--merchant_private_key", [dir](GatewayConfig& c) { c.merchant_private_key = dir + "/apiclient_cert.pem"; }},
      {"--merchant_private_key", [dir](GatewayConfig& c) { c.merchant_private_key = dir + "/platform_key.pem"; }},
      {"--platform_certificates", [dir](GatewayConfig& c) { c.platform_certificates = {dir + "/apiclient_cert.pem"}; }},
      {"--platform_certificates", [dir](GatewayConfig& c) { c.platform_certificates = {dir + "/pub_key.pem"}; }},
      {"--wechatpay_public_key", [dir](GatewayConfig& c) {
         c.wechatpay_public_key.clear();
         c.wechatpay_public_key_id.clear();
         c.platform_certificates.clear();
       }},
      {"--wechatpay_public_key_id", [](GatewayConfig& c) { c.wechatpay_public_key_id.clear(); }},
      {"--wechatpay_public_key", [dir](GatewayConfig& c) { c.wechatpay_public_key = dir + "/platform_cert.pem"; }},
      {"--upstream", [](GatewayConfig& c) { c.upstream = "api.mch.weixin.qq.com"; }},
      {"--upstream_ca", [dir](GatewayConfig& c) { c.upstream_ca = dir + "/nope.pem"; }},
      {"--upstream_timeout", [](GatewayConfig& c) { c.upstream_timeout = absl::ZeroDuration(); }},
      {"--upstream_backup", [](GatewayConfig& c) { c.upstream_backup = "api2.mch.weixin.qq.com"; }},
      {"--upstream_attempts", [](GatewayConfig& c) { c.upstream_attempts = 0; }},
      {"--upstream_max_idle", [](GatewayConfig& c) { c.upstream_max_idle = absl::ZeroDuration(); }},
      {"--upstream_max_connections", [](GatewayConfig& c) { c.upstream_max_connections = -1; }},
  };
  for (const Case& c : cases) {
    GatewayConfig config = Valid();
    c.mutate(config);
    auto core = LoadGateway(config, SystemClock::Get());
    EXPECT_FALSE(core.ok()) << c.flag;
    EXPECT_THAT(std::string(core.status().message()), StartsWith(c.flag)) << core.status();
    // One line, no key material.
    EXPECT_EQ(core.status().message().find('\n'), absl::string_view::npos) << core.status();
    EXPECT_THAT(std::string(core.status().message()), ::testing::Not(HasSubstr("MII")));
  }
}

TEST_F(GatewayConfigTest, BackupHostDefaultsToWeChatPaysOnlyForTheProductionHost) {
  GatewayConfig local = Valid();  // upstream is a loopback sandbox: never fail over to the internet
  auto core = LoadGateway(local, SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_EQ((*core)->client->options().backup_url, "");
  EXPECT_EQ((*core)->client->options().attempt_timeout, local.upstream_timeout);  // nowhere to fail over to
  GatewayConfig production = Valid();
  production.upstream = "https://api.mch.weixin.qq.com";
  core = LoadGateway(production, SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_EQ((*core)->client->options().backup_url, "https://api2.mch.weixin.qq.com");
  // A hung primary's call keeps half its time for the backup.
  EXPECT_EQ((*core)->client->options().attempt_timeout, production.upstream_timeout / 2);
  production.upstream_backup = "none";
  core = LoadGateway(production, SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_EQ((*core)->client->options().backup_url, "");
  GatewayConfig explicit_backup = Valid();
  explicit_backup.upstream_backup = "https://127.0.0.1:2";
  explicit_backup.upstream_attempt_timeout = absl::Milliseconds(250);
  core = LoadGateway(explicit_backup, SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_EQ((*core)->client->options().backup_url, "https://127.0.0.1:2");
  EXPECT_EQ((*core)->client->options().attempt_timeout, absl::Milliseconds(250));
}

// Plain http:// carries openids and answers in clear text: only to this
// machine (a literal loopback address or localhost), unless allowed explicitly.
TEST_F(GatewayConfigTest, PlainHttpUpstreamIsForLoopbackOnly) {
  for (const char* url : {"http://127.0.0.1:1", "http://127.8.9.10:1", "http://[::1]:1", "http://localhost:1",
                          "http://LOCALHOST:1/prefix", "http://127.0.0.1"}) {
    GatewayConfig c = Valid();
    c.upstream = url;
    EXPECT_THAT(LoadGateway(c, SystemClock::Get()), IsOk()) << url;
  }
  for (const char* url : {"http://api.mch.weixin.qq.com", "http://10.0.0.1:80", "http://192.0.2.10:8080",
                          "http://127.0.0.1.nip.io:80", "http://localhost.example.com", "http://127.1:80",
                          "http://2130706433", "http://[::ffff:10.0.0.1]:80", "http://0.0.0.0:80",
                          "http://127.0.0.1@evil.example", "http://evil.example#@127.0.0.1",
                          "http://evil.example\\@127.0.0.1"}) {
    GatewayConfig c = Valid();
    c.upstream = url;
    auto core = LoadGateway(c, SystemClock::Get());
    EXPECT_THAT(core, StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--upstream:"))) << url;
    GatewayConfig backup = Valid();
    backup.upstream_backup = url;
    EXPECT_THAT(LoadGateway(backup, SystemClock::Get()),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--upstream_backup:")))
        << url;
  }
  GatewayConfig c = Valid();
  c.upstream = "http://api.mch.weixin.qq.com";
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--allow_insecure_upstream")));
  c.allow_insecure_upstream = true;
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()), IsOk());
  c.upstream_backup = "http://api2.mch.weixin.qq.com";
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()), IsOk());
  // https:// is never restricted.
  GatewayConfig tls = Valid();
  tls.upstream = "https://api.mch.weixin.qq.com";
  tls.upstream_backup = "https://10.0.0.1:8443";
  EXPECT_THAT(LoadGateway(tls, SystemClock::Get()), IsOk());
}

// Proxy credentials in a URL are visible to other local users (the command
// line is world-readable in /proc): refused, and never repeated in the message.
TEST_F(GatewayConfigTest, ProxyUrlWithCredentialsIsRefused) {
  // The last ones have no scheme at their start, so libcurl guesses http:// and
  // takes the credentials, whatever "://" follows (issue 13, edge F2).
  for (const char* proxy : {"http://proxyuser:s3cr3t-pw@127.0.0.1:3128", "http://proxyuser@127.0.0.1:3128",
                            "proxyuser:s3cr3t-pw@127.0.0.1:3128", "socks5h://proxyuser:s3cr3t-pw@127.0.0.1:1080",
                            "proxyuser:s3cr3t-pw@127.0.0.2:48111/x://y", "proxyuser:s3cr3t-pw@127.0.0.2:48111?x://y",
                            "proxyuser:s3cr3t-pw@127.0.0.2:48111#x://y", "HTTP://proxyuser:s3cr3t-pw@127.0.0.1:3128",
                            "http://:s3cr3t-pw@127.0.0.1:3128"}) {
    GatewayConfig c = Valid();
    c.proxy = proxy;
    auto core = LoadGateway(c, SystemClock::Get());
    EXPECT_THAT(core, StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--proxy:"))) << proxy;
    EXPECT_THAT(std::string(core.status().message()), HasSubstr("--proxy_credentials_file"));
    EXPECT_THAT(std::string(core.status().message()), ::testing::Not(HasSubstr("s3cr3t")));
    EXPECT_THAT(std::string(core.status().message()), ::testing::Not(HasSubstr("proxyuser")));
  }
  for (const char* proxy : {"http://127.0.0.1:3128", "127.0.0.1:3128", "127.0.0.1:3128/x://y", "socks5h://127.0.0.1:1080"}) {
    GatewayConfig plain = Valid();
    plain.proxy = proxy;
    EXPECT_THAT(LoadGateway(plain, SystemClock::Get()), IsOk()) << proxy;
  }
  // The same rule for the proxy libcurl would take from the environment.
  for (const char* name : {"HTTPS_PROXY", "https_proxy", "ALL_PROXY", "http_proxy"}) {
    for (const char* proxy : {"http://proxyuser:s3cr3t-pw@127.0.0.1:3128", "proxyuser:s3cr3t-pw@127.0.0.2:48111/x://y"}) {
      ::setenv(name, proxy, 1);
      auto core = LoadGateway(Valid(), SystemClock::Get());
      ::unsetenv(name);
      EXPECT_THAT(core, StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(std::string(name) + ":")))
          << name << "=" << proxy;
      EXPECT_THAT(std::string(core.status().message()), ::testing::Not(HasSubstr("s3cr3t")));
    }
  }
}

// The host judged is the host libcurl connects to: no query or fragment (an
// '@' after '?' or '#' read as credentials by one parser and not the other),
// and a port of 1 to 65535 (issue 13, edge F2 and F7).
TEST_F(GatewayConfigTest, UpstreamIsJudgedAsLibcurlReadsIt) {
  for (const char* url : {"http://127.0.0.1?@evil.example", "http://127.0.0.1#@evil.example", "https://127.0.0.1:1?x",
                          "https://127.0.0.1:1/v3#x", "http://127.0.0.1:99999", "http://127.0.0.1:", "http://127.0.0.1:0",
                          "http://[::1]:", "https://127.0.0.1:65536", "https://127.0.0.1:-1", "http://127.0.0.1:+80"}) {
    GatewayConfig c = Valid();
    c.upstream = url;
    EXPECT_THAT(LoadGateway(c, SystemClock::Get()), StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--upstream:")))
        << url;
    GatewayConfig backup = Valid();
    backup.upstream_backup = url;
    EXPECT_THAT(LoadGateway(backup, SystemClock::Get()),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--upstream_backup:")))
        << url;
  }
  for (const char* url : {"https://127.0.0.1:65535", "http://127.0.0.1:1", "http://[::1]:8080/prefix"}) {
    GatewayConfig c = Valid();
    c.upstream = url;
    EXPECT_THAT(LoadGateway(c, SystemClock::Get()), IsOk()) << url;
  }
}

// Checked without --apiv3_key_file too (a value that would stop the start-up
// once the key is added is a mistake already).
TEST_F(GatewayConfigTest, CertificateRefreshIntervalIsCheckedWithoutAnApiV3Key) {
  for (absl::Duration interval : {absl::Hours(13), absl::Hours(12), absl::ZeroDuration(), absl::Seconds(-1)}) {
    GatewayConfig c = Valid();
    c.certificate_refresh_interval = interval;
    EXPECT_THAT(LoadGateway(c, SystemClock::Get()),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--certificate_refresh_interval:")))
        << interval;
  }
  GatewayConfig c = Valid();
  c.certificate_refresh_min_interval = absl::Seconds(-1);
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--certificate_refresh_min_interval:")));
}

TEST_F(GatewayConfigTest, ProxyCredentialsFileMustHoldOneUserPasswordLine) {
  auto dir = testing::MakeTempDir("proxy_credentials");
  ASSERT_THAT(dir, IsOk());
  const std::string path = *dir + "/proxy_credentials";
  GatewayConfig c = Valid();
  c.proxy = "http://127.0.0.1:3128";
  c.proxy_credentials_file = path;
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()),
              StatusIs(absl::StatusCode::kNotFound, StartsWith("--proxy_credentials_file:")));
  for (const char* good : {"proxyuser:s3cr3t-pw", "proxyuser:s3cr3t-pw\n", "proxyuser:s3cr3t-pw\r\n",
                           "proxyuser:pw:with:colons", "proxyuser:"}) {
    ASSERT_THAT(WriteFile(path, good, 0600), IsOk());
    EXPECT_THAT(LoadGateway(c, SystemClock::Get()), IsOk()) << good;
  }
  for (const char* bad : {"", "\n", "s3cr3t-pw", ":s3cr3t-pw", "proxyuser:s3cr3t-pw\nsecond:line",
                          "proxyuser:s3cr3t\tpw"}) {
    ASSERT_THAT(WriteFile(path, bad, 0600), IsOk());
    auto core = LoadGateway(c, SystemClock::Get());
    EXPECT_THAT(core, StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--proxy_credentials_file:"))) << bad;
    EXPECT_THAT(std::string(core.status().message()), ::testing::Not(HasSubstr("s3cr3t"))) << bad;
  }
}

TEST_F(GatewayConfigTest, MerchantPublicKeyIsNotAVerificationKey) {
  GatewayConfig c = Valid();
  // Write the merchant's own public key where the WeChat Pay public key belongs.
  auto merchant = testing::SandboxMerchant::Load(*dir_);
  ASSERT_THAT(merchant, IsOk());
  const std::string path = *dir_ + "/merchant_pub.pem";
  ASSERT_THAT(WriteFile(path, merchant->merchant_key().PublicKey().ToPem()), IsOk());
  c.wechatpay_public_key = path;
  EXPECT_THAT(LoadGateway(c, SystemClock::Get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("merchant's own public key")));
}

}  // namespace
}  // namespace palmgate

namespace palmgate {
namespace {

// Every upstream call goes through the egress proxy: the certificate download
// at start-up and the API calls, with the proxy given by flag or by the
// standard HTTPS_PROXY variable.
class EgressProxyTest : public ::testing::TestWithParam<bool /*by_environment*/> {};

TEST_P(EgressProxyTest, CertificateDownloadAndCallsUseTheProxy) {
  testing::SandboxProcessOptions options;
  options.tls = true;
  auto sandbox = testing::SandboxProcess::Start(options);
  ASSERT_THAT(sandbox, IsOk());
  auto dir = testing::MakeTempDir("palmgate-egress");
  ASSERT_THAT(dir, IsOk());
  const std::string proxy_log = *dir + "/proxy.log";
  auto proxy = testing::ListeningProcess::Start({"/usr/bin/python3", PALMGATE_CONNECT_PROXY}, absl::Seconds(30), proxy_log);
  ASSERT_THAT(proxy, IsOk());
  auto merchant = testing::SandboxMerchant::Load((*sandbox)->keys_dir());
  ASSERT_THAT(merchant, IsOk());
  const std::string keys = (*sandbox)->keys_dir();
  GatewayConfig c;
  c.mchid = merchant->mchid();
  c.merchant_serial = merchant->merchant_serial();
  c.merchant_private_key = keys + "/apiclient_key.pem";
  c.apiv3_key_file = keys + "/apiv3_key.txt";  // platform certificates come from the download only
  c.upstream = (*sandbox)->base_url();
  c.upstream_ca = (*sandbox)->ca_cert_path();
  const std::string proxy_url = "http://" + (*proxy)->address();
  if (GetParam()) {
    ::setenv("HTTPS_PROXY", proxy_url.c_str(), 1);
    ::unsetenv("NO_PROXY");
    ::unsetenv("no_proxy");
  } else {
    c.proxy = proxy_url;
  }
  auto core = LoadGateway(c, SystemClock::Get());
  ASSERT_THAT(core, IsOk());
  EXPECT_EQ((*core)->keys->Current()->preferred_serial(), merchant->platform_serial());
  const std::string hostport((*sandbox)->base_url().substr(std::string("https://").size()));
  // The start-up certificate download already went through the proxy.
  EXPECT_THAT(ReadFile(proxy_log).value_or(""), HasSubstr("CONNECT " + hostport));
  std::promise<absl::StatusOr<wechatpay::AuthorizationResult>> done;
  (*core)->client->GetAuthorization("o1", "1004", absl::Now() + absl::Seconds(10),
                                    [&done](absl::StatusOr<wechatpay::AuthorizationResult> r) { done.set_value(std::move(r)); });
  EXPECT_THAT(done.get_future().get(), IsOk());
  core->reset();
  if (GetParam()) ::unsetenv("HTTPS_PROXY");
  ASSERT_THAT((*proxy)->Stop(), IsOk());
  auto log = ReadFile(proxy_log);
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(*log, HasSubstr("CONNECT " + hostport)) << "nothing went through the proxy";
}

// A proxy that demands credentials gets them from --proxy_credentials_file
// (sent as Proxy-Authorization on the CONNECT); without the file, it refuses.
TEST(ProxyCredentialsTest, CredentialsFileAuthenticatesToTheProxy) {
  testing::SandboxProcessOptions options;
  options.tls = true;
  auto sandbox = testing::SandboxProcess::Start(options);
  ASSERT_THAT(sandbox, IsOk());
  auto dir = testing::MakeTempDir("palmgate-proxy-auth");
  ASSERT_THAT(dir, IsOk());
  const std::string credentials = *dir + "/proxy_credentials";
  ASSERT_THAT(WriteFile(credentials, "gateway:pa55:word\n", 0600), IsOk());
  const std::string proxy_log = *dir + "/proxy.log";
  auto proxy = testing::ListeningProcess::Start({"/usr/bin/python3", PALMGATE_CONNECT_PROXY, "--credentials", credentials},
                                                absl::Seconds(30), proxy_log);
  ASSERT_THAT(proxy, IsOk());
  auto merchant = testing::SandboxMerchant::Load((*sandbox)->keys_dir());
  ASSERT_THAT(merchant, IsOk());
  const std::string keys = (*sandbox)->keys_dir();
  GatewayConfig c;
  c.mchid = merchant->mchid();
  c.merchant_serial = merchant->merchant_serial();
  c.merchant_private_key = keys + "/apiclient_key.pem";
  c.wechatpay_public_key = keys + "/pub_key.pem";
  c.wechatpay_public_key_id = merchant->public_key_id();
  c.upstream = (*sandbox)->base_url();
  c.upstream_ca = (*sandbox)->ca_cert_path();
  c.upstream_attempts = 1;
  c.proxy = "http://" + (*proxy)->address();
  auto call = [](GatewayCore& core) {
    std::promise<absl::StatusOr<wechatpay::AuthorizationResult>> done;
    core.client->GetAuthorization("o1", "1004", absl::Now() + absl::Seconds(10),
                                  [&done](absl::StatusOr<wechatpay::AuthorizationResult> r) { done.set_value(std::move(r)); });
    return done.get_future().get();
  };
  const std::string hostport((*sandbox)->base_url().substr(std::string("https://").size()));

  auto without = LoadGateway(c, SystemClock::Get());
  ASSERT_THAT(without, IsOk());
  EXPECT_THAT(call(**without), StatusIs(absl::StatusCode::kUnavailable));
  without->reset();
  EXPECT_THAT(ReadFile(proxy_log).value_or(""), HasSubstr("REFUSED " + hostport));

  c.proxy_credentials_file = credentials;
  auto with = LoadGateway(c, SystemClock::Get());
  ASSERT_THAT(with, IsOk());
  EXPECT_THAT(call(**with), IsOk());
  with->reset();
  ASSERT_THAT((*proxy)->Stop(), IsOk());
  EXPECT_THAT(ReadFile(proxy_log).value_or(""), HasSubstr("CONNECT " + hostport));
}

INSTANTIATE_TEST_SUITE_P(FlagAndEnvironment, EgressProxyTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "HttpsProxyEnv" : "ProxyFlag"; });

}  // namespace
}  // namespace palmgate
