// In-process tests of the request handling (no sockets): every check of the
// contract, signed 200s and each fault's effect on the response plan.
#include "sandbox/handler.h"

#include <cstdlib>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/base64.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::FakeClock;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::SandboxMerchant;
using ::palmgate::testing::StatusIs;
using ::palmgate::testing::TestHttpRequest;
using ::palmgate::testing::TestHttpResponse;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int64_t kNow = 1722850421;
constexpr char kPalm[] = "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004";

SandboxRequest ToSandbox(const TestHttpRequest& r) {
  SandboxRequest out{r.method, r.target, {}, r.body};
  for (const auto& [k, v] : r.headers) out.headers.push_back({k, v});
  return out;
}

TestHttpResponse ToTest(const SandboxResponse& r) {
  TestHttpResponse out;
  out.status = r.status;
  out.body = r.body;
  for (const HttpHeader& h : r.headers) out.headers.emplace_back(h.name, h.value);
  return out;
}

nlohmann::json Parse(const std::string& body) { return nlohmann::json::parse(body, nullptr, false); }

class HandlerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = (std::filesystem::temp_directory_path() / "handler-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(pattern);
    KeygenOptions options;
    options.out_dir = *dir_;
    ASSERT_THAT(GenerateKeys(options), IsOk());
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(*dir_, ec);
    delete dir_;
  }

  void Make(HandlerOptions options = {}, const std::string& seed = "") {
    absl::StatusOr<SandboxKeys> keys = LoadKeys(*dir_);
    ASSERT_THAT(keys, IsOk());
    UserStore users;
    if (!seed.empty()) {
      auto parsed = UserStore::FromJson(seed);
      ASSERT_THAT(parsed, IsOk());
      users = std::move(*parsed);
    }
    auto handler = Handler::Create(std::move(*keys), std::move(users), options, &clock_);
    ASSERT_THAT(handler, IsOk());
    handler_ = std::move(*handler);
    auto merchant = SandboxMerchant::Load(*dir_);
    ASSERT_THAT(merchant, IsOk());
    merchant_.emplace(std::move(*merchant));
  }

  SandboxResponse Get(const std::string& target, std::vector<std::pair<std::string, std::string>> extra = {}) {
    TestHttpRequest r = merchant_->SignedGet(target, kNow);
    for (auto& h : extra) r.headers.push_back(std::move(h));
    return handler_->Handle(ToSandbox(r));
  }

  static std::string* dir_;
  FakeClock clock_{absl::FromUnixSeconds(kNow)};
  std::unique_ptr<Handler> handler_;
  std::optional<SandboxMerchant> merchant_;
};

std::string* HandlerTest::dir_ = nullptr;

std::optional<std::string> H(const SandboxResponse& r, absl::string_view name) { return ToTest(r).Header(name); }

TEST_F(HandlerTest, Returns200SignedByPlatformCertificateByDefault) {
  Make();
  SandboxResponse r = Get(kPalm);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004","state":"AUTHORIZATION_STATE_NONE"})");
  EXPECT_EQ(H(r, "Content-Type"), "application/json; charset=utf-8");
  EXPECT_EQ(H(r, "Server"), "palmgate-sandbox");
  EXPECT_THAT(H(r, "Request-ID").value_or(""), ::testing::MatchesRegex("[0-9A-F]{48}"));
  EXPECT_EQ(H(r, "Wechatpay-Serial"), merchant_->platform_serial());
  EXPECT_EQ(H(r, "Wechatpay-Timestamp"), std::to_string(kNow));
  EXPECT_EQ(H(r, "Wechatpay-Signature-Type"), "WECHATPAY2-SHA256-RSA2048");
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(r)), IsOk());
  EXPECT_EQ(r.delay_ms, 0);
  EXPECT_FALSE(r.drop);
}

TEST_F(HandlerTest, WechatpaySerialChoosesTheResponseKey) {
  Make();
  SandboxResponse pub = Get(kPalm, {{"Wechatpay-Serial", merchant_->public_key_id()}});
  EXPECT_EQ(H(pub, "Wechatpay-Serial"), merchant_->public_key_id());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(pub)), IsOk());
  SandboxResponse plat = Get(kPalm, {{"Wechatpay-Serial", merchant_->platform_serial()}});
  EXPECT_EQ(H(plat, "Wechatpay-Serial"), merchant_->platform_serial());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(plat)), IsOk());
  SandboxResponse bad = Get(kPalm, {{"Wechatpay-Serial", "PUB_KEY_ID_0000"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(Parse(bad.body)["code"], "INVALID_REQUEST");
  EXPECT_THAT(Parse(bad.body)["message"].get<std::string>(), StartsWith("Wechatpay-Serial"));
  EXPECT_FALSE(H(bad, "Wechatpay-Signature").has_value());
}

TEST_F(HandlerTest, PublicKeyOnlyMode) {
  HandlerOptions options;
  options.public_key_only = true;
  Make(options);
  SandboxResponse r = Get(kPalm);
  EXPECT_EQ(H(r, "Wechatpay-Serial"), merchant_->public_key_id());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(r)), IsOk());
  SandboxResponse certs = Get("/v3/certificates");
  EXPECT_EQ(certs.status, 404);
  EXPECT_EQ(Parse(certs.body)["code"], "RESOURCE_NOT_EXISTS");
  EXPECT_EQ(Get(kPalm, {{"Wechatpay-Serial", merchant_->platform_serial()}}).status, 400);
}

TEST_F(HandlerTest, MissingAcceptOrUserAgentIsInvalidRequest) {
  Make();
  for (const char* drop : {"Accept", "User-Agent"}) {
    TestHttpRequest r = merchant_->SignedGet(kPalm, kNow);
    r.headers.erase(std::remove_if(r.headers.begin(), r.headers.end(), [&](auto& h) { return h.first == drop; }),
                    r.headers.end());
    SandboxResponse resp = handler_->Handle(ToSandbox(r));
    EXPECT_EQ(resp.status, 400);
    EXPECT_EQ(resp.body, R"({"code":"INVALID_REQUEST","message":"Http头缺少Accept或User-Agent"})");
  }
}

TEST_F(HandlerTest, SignErrorCarriesSignInformation) {
  Make();
  TestHttpRequest r = merchant_->SignedGet("/v3/certificates", kNow);
  r.target = kPalm;  // signed for another target
  SandboxResponse resp = handler_->Handle(ToSandbox(r));
  EXPECT_EQ(resp.status, 401);
  nlohmann::json j = Parse(resp.body);
  EXPECT_EQ(j["code"], "SIGN_ERROR");
  EXPECT_EQ(j["message"], "错误的签名，验签失败");
  EXPECT_EQ(j["detail"]["field"], "signature");
  EXPECT_EQ(j["detail"]["location"], "authorization");
  EXPECT_EQ(j["detail"]["issue"], "sign not match");
  EXPECT_EQ(j["detail"]["sign_information"]["method"], "GET");
  EXPECT_EQ(j["detail"]["sign_information"]["url"], "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
  std::string truncated = j["detail"]["sign_information"]["truncated_sign_message"];
  EXPECT_EQ(truncated.size(), 100u);
  EXPECT_THAT(truncated, StartsWith(std::string("GET\n") + kPalm));
  EXPECT_EQ(j["detail"]["sign_information"]["sign_message_length"], 4 + std::string(kPalm).size() + 1 + 10 + 1 + 32 + 2);
  EXPECT_FALSE(H(resp, "Wechatpay-Signature").has_value());
}

TEST_F(HandlerTest, ReplayedRequestIsRejected) {
  Make();
  TestHttpRequest r = merchant_->SignedGet(kPalm, kNow);
  EXPECT_EQ(handler_->Handle(ToSandbox(r)).status, 200);
  SandboxResponse again = handler_->Handle(ToSandbox(r));
  EXPECT_EQ(again.status, 401);
  EXPECT_THAT(Parse(again.body)["detail"]["issue"].get<std::string>(), HasSubstr("nonce_str"));
}

TEST_F(HandlerTest, ClockOffsetMovesTheWindow) {
  Make();
  ShiftedClock shifted(&clock_, absl::Seconds(400));
  EXPECT_EQ(shifted.Now(), absl::FromUnixSeconds(kNow + 400));
  EXPECT_EQ(Get(kPalm).status, 200);
  clock_.Advance(absl::Seconds(301));
  EXPECT_EQ(Get(kPalm).status, 401);
}

TEST_F(HandlerTest, ParamErrors) {
  Make();
  const std::string prefix = "/v3/palmservice/authorization/openid/";
  struct Case {
    std::string target;
    std::string field;
    std::string location;
  } cases[] = {
      {prefix + "o1", "organization_id", "query"},
      {prefix + "o1?organization_id=", "organization_id", "query"},
      {prefix + "o1?organization_idx=1", "organization_id", "query"},
      {prefix + "o%2?organization_id=1", "openid", "path"},
      {prefix + "o%zz1?organization_id=1", "openid", "path"},
      {prefix + "o1?organization_id=%G0", "organization_id", "query"},
      {prefix + std::string(129, 'a') + "?organization_id=1", "openid", "path"},
      {prefix + "o1?organization_id=" + std::string(65, '1'), "organization_id", "query"},
      {prefix + "%FF?organization_id=1", "openid", "path"},
  };
  for (const Case& c : cases) {
    SandboxResponse r = Get(c.target);
    EXPECT_EQ(r.status, 400) << c.target;
    nlohmann::json j = Parse(r.body);
    EXPECT_EQ(j["code"], "PARAM_ERROR") << c.target;
    EXPECT_EQ(j["detail"]["field"], c.field) << c.target;
    EXPECT_EQ(j["detail"]["location"], c.location) << c.target;
  }
  EXPECT_EQ(Get(prefix + std::string(128, 'a') + "?organization_id=" + std::string(64, '1')).status, 200);
}

TEST_F(HandlerTest, DecodesOpenidAndOrganizationId) {
  Make();
  SandboxResponse r = Get("/v3/palmservice/authorization/openid/o%2Ba%2Fb%20c~%2A%3D%26%E4%B8%AD?organization_id=x+y%2B");
  ASSERT_EQ(r.status, 200);
  nlohmann::json j = Parse(r.body);
  EXPECT_EQ(j["openid"], "o+a/b c~*=&中");
  EXPECT_EQ(j["organization_id"], "x+y+");  // '+' is a literal plus
  EXPECT_NE(r.body.find("中"), std::string::npos);  // UTF-8, not \u escapes
}

TEST_F(HandlerTest, RoutingAndMethods) {
  Make();
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/a/b?organization_id=1").status, 404);
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/?organization_id=1").status, 404);
  EXPECT_EQ(Get("/v3/pay/transactions").status, 404);
  EXPECT_EQ(Parse(Get("/nope").body)["code"], "NOT_FOUND");
  TestHttpRequest post = merchant_->SignedGet(kPalm, kNow);
  post.method = "POST";
  EXPECT_EQ(handler_->Handle(ToSandbox(post)).status, 405);
}

TEST_F(HandlerTest, SeedStatesPassThrough) {
  Make({}, R"({"users":[
      {"openid":"on","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2024-05-01T10:00:00+08:00"},
      {"openid":"future","organization_id":"1004","state":"AUTHORIZATION_STATE_PAUSED"}]})");
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/on?organization_id=1004").body,
            R"({"openid":"on","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","authorize_time":"2024-05-01T10:00:00+08:00"})");
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/future?organization_id=1004").body,
            R"({"openid":"future","organization_id":"1004","state":"AUTHORIZATION_STATE_PAUSED"})");
  // Same openid, other organization: not seeded.
  EXPECT_EQ(Parse(Get("/v3/palmservice/authorization/openid/on?organization_id=9").body)["state"],
            "AUTHORIZATION_STATE_NONE");
}

TEST_F(HandlerTest, CertificatesAreSignedAndDecryptable) {
  Make();
  SandboxResponse r = Get("/v3/certificates?algorithm_type=RSA");
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(r)), IsOk());
  nlohmann::json j = Parse(r.body);
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["serial_no"], merchant_->platform_serial());
  EXPECT_EQ(Get("/v3/certificates?algorithm_type=SM2").status, 400);
}

TEST_F(HandlerTest, FaultHeaderIgnoredWithoutFaultsFlag) {
  Make();
  EXPECT_EQ(Get(kPalm, {{"X-Sandbox-Fault", "status=500"}}).status, 200);
  EXPECT_EQ(Get(kPalm, {{"X-Sandbox-Fault", "explode"}}).status, 200);
}

class FaultHandlerTest : public HandlerTest {
 protected:
  void SetUp() override {
    HandlerOptions options;
    options.faults_enabled = true;
    options.latency_ms = 5;
    Make(options, R"({"users":[{"openid":"slow","organization_id":"1","fault":"status=503"}]})");
  }
  SandboxResponse Fault(const std::string& spec) { return Get(kPalm, {{"X-Sandbox-Fault", spec}}); }
};

TEST_F(FaultHandlerTest, StatusAndLatency) {
  SandboxResponse r = Fault("latency=200;status=500");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.delay_ms, 205);
  EXPECT_EQ(r.body, R"({"code":"SYSTEM_ERROR","message":"系统繁忙，请稍后重试"})");
  EXPECT_FALSE(H(r, "Wechatpay-Signature").has_value());
  SandboxResponse custom = Fault("status=429:FREQUENCY_LIMITED:too fast");
  EXPECT_EQ(custom.status, 429);
  EXPECT_EQ(custom.body, R"({"code":"FREQUENCY_LIMITED","message":"too fast"})");
}

TEST_F(FaultHandlerTest, SeedFaultAppliesToThatUser) {
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/slow?organization_id=1").status, 503);
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/slow?organization_id=2").status, 200);
  // The header wins over the seed.
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/slow?organization_id=1", {{"X-Sandbox-Fault", "status=404"}})
                .status,
            404);
}

TEST_F(FaultHandlerTest, UnknownFaultIsA400) {
  SandboxResponse r = Fault("explode");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Parse(r.body)["code"], "SANDBOX_FAULT_INVALID");
  EXPECT_THAT(Parse(r.body)["message"].get<std::string>(), HasSubstr("unknown fault \"explode\""));
}

TEST_F(FaultHandlerTest, DropAndHtml) {
  EXPECT_TRUE(Fault("drop").drop);
  SandboxResponse html = Fault("html_error");
  EXPECT_EQ(html.status, 502);
  EXPECT_EQ(H(html, "Content-Type"), "text/html");
  EXPECT_THAT(html.body, StartsWith("<html>"));
}

TEST_F(FaultHandlerTest, SignatureFaults) {
  SandboxResponse corrupt = Fault("corrupt_signature");
  EXPECT_EQ(corrupt.status, 200);
  EXPECT_THAT(crypto::Base64Decode(*H(corrupt, "Wechatpay-Signature")), IsOk());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(corrupt)), StatusIs(absl::StatusCode::kUnauthenticated));

  SandboxResponse probe = Fault("probe_signature");
  EXPECT_THAT(*H(probe, "Wechatpay-Signature"), StartsWith("WECHATPAY/SIGNTEST/"));
  EXPECT_FALSE(merchant_->VerifyResponse(ToTest(probe)).ok());

  SandboxResponse missing = Fault("missing_signature_headers");
  EXPECT_EQ(missing.status, 200);
  for (const char* h : {"Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial", "Wechatpay-Signature"}) {
    EXPECT_FALSE(H(missing, h).has_value()) << h;
  }
  SandboxResponse one = Fault("missing_header=Wechatpay-Nonce");
  EXPECT_FALSE(H(one, "Wechatpay-Nonce").has_value());
  EXPECT_TRUE(H(one, "Wechatpay-Signature").has_value());
  SandboxResponse no_id = Fault("missing_header=Request-ID");
  EXPECT_FALSE(H(no_id, "Request-ID").has_value());

  SandboxResponse skew = Fault("skew_timestamp=-600");
  EXPECT_EQ(H(skew, "Wechatpay-Timestamp"), std::to_string(kNow - 600));
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(skew)), IsOk());

  SandboxResponse stranger = Fault("unknown_serial");
  EXPECT_NE(H(stranger, "Wechatpay-Serial"), merchant_->platform_serial());
  EXPECT_NE(H(stranger, "Wechatpay-Serial"), merchant_->public_key_id());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(stranger)), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(FaultHandlerTest, BodyFaultsAreStillCorrectlySigned) {
  SandboxResponse malformed = Fault("malformed_json");
  EXPECT_EQ(malformed.status, 200);
  EXPECT_TRUE(Parse(malformed.body).is_discarded());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(malformed)), IsOk());

  SandboxResponse empty = Fault("empty_body");
  EXPECT_EQ(empty.body, "");
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(empty)), IsOk());

  SandboxResponse huge = Fault("huge_body=1000000");
  EXPECT_EQ(huge.body.size(), 1000000u);
  EXPECT_FALSE(Parse(huge.body).is_discarded());
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(huge)), IsOk());
}

TEST_F(FaultHandlerTest, StatsAndRequestLog) {
  Fault("status=500");
  Get("/v3/palmservice/authorization/openid/x%20y?organization_id=1004", {{"Authorization", "dup"}});
  Get(kPalm);
  SandboxRequest stats{"GET", "/_sandbox/stats", {}, "", /*from_loopback=*/true};
  nlohmann::json s = Parse(handler_->Handle(stats).body);
  EXPECT_EQ(s["requests_total"], 3);
  EXPECT_EQ(s["faults_injected"], 1);
  EXPECT_EQ(s["sign_errors"], 1);
  EXPECT_EQ(s["by_endpoint"]["palm_authorization"]["200"], 1);
  EXPECT_EQ(s["by_status"]["500"], 1);
  SandboxRequest log{"GET", "/_sandbox/requests", {}, "", /*from_loopback=*/true};
  std::string log_body = handler_->Handle(log).body;
  nlohmann::json l = Parse(log_body);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0]["fault"], "status=500");
  EXPECT_EQ(l[0]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
  EXPECT_EQ(l[0]["organization_id"], "1004");
  EXPECT_EQ(l[1]["status"], 401);
  EXPECT_EQ(l[2]["status"], 200);
  EXPECT_EQ(log_body.find("WECHATPAY2-SHA256-RSA2048"), std::string::npos);  // never the Authorization header
  SandboxRequest reset{"POST", "/_sandbox/reset", {}, "", /*from_loopback=*/true};
  EXPECT_EQ(handler_->Handle(reset).status, 200);
  EXPECT_EQ(Parse(handler_->Handle(stats).body)["requests_total"], 0);
  EXPECT_EQ(Parse(handler_->Handle(log).body).size(), 0u);
}

// Certificates added within one second (the clock does not move here) still get
// strictly increasing effective times, so "the newest certificate" is never a tie.
TEST_F(HandlerTest, AddedCertificatesAreEachNewerThanTheOnesBefore) {
  Make();
  SandboxRequest add{"POST", "/_sandbox/certificates/add", {}, "", /*from_loopback=*/true};
  ASSERT_EQ(handler_->Handle(add).status, 200);
  ASSERT_EQ(handler_->Handle(add).status, 200);
  SandboxRequest list{"GET", "/_sandbox/certificates", {}, "", /*from_loopback=*/true};
  nlohmann::json certs = Parse(handler_->Handle(list).body)["certificates"];
  ASSERT_EQ(certs.size(), 3u);  // the original and the two added
  // Same format and zone everywhere: the strings order as the times do.
  EXPECT_LT(certs[0]["effective_time"].get<std::string>(), certs[1]["effective_time"].get<std::string>());
  EXPECT_LT(certs[1]["effective_time"].get<std::string>(), certs[2]["effective_time"].get<std::string>()) << certs.dump();
}

// After a rotation, answers asked for the old certificate come signed by the
// new one (the client must refresh), but the listing is signed by the
// certificate the client names: the key it holds vouches for the new one.
TEST_F(HandlerTest, AfterRotationTheListingIsSignedByTheCertificateTheClientNames) {
  Make();
  SandboxRequest add{"POST", "/_sandbox/certificates/add", {}, "", /*from_loopback=*/true};
  const std::string added = Parse(handler_->Handle(add).body)["serial_no"].get<std::string>();
  SandboxRequest activate{"POST", "/_sandbox/certificates/activate?serial_no=" + added, {}, "", /*from_loopback=*/true};
  ASSERT_EQ(handler_->Handle(activate).status, 200);
  const std::string old_serial = merchant_->platform_serial();
  EXPECT_EQ(H(Get(kPalm, {{"Wechatpay-Serial", old_serial}}), "Wechatpay-Serial"), added);
  SandboxResponse listing = Get("/v3/certificates", {{"Wechatpay-Serial", old_serial}});
  ASSERT_EQ(listing.status, 200);
  EXPECT_EQ(H(listing, "Wechatpay-Serial"), old_serial);
  EXPECT_THAT(merchant_->VerifyResponse(ToTest(listing)), IsOk());  // with platform_cert.pem
  EXPECT_EQ(Parse(listing.body)["data"].size(), 2u);
  EXPECT_EQ(H(Get("/v3/certificates"), "Wechatpay-Serial"), added);  // not asked: the active one
}

// The admin endpoints change what the sandbox signs with (certificate rotation)
// and wipe its log: a peer that is not loopback gets 403 unless --admin_from_any.
// The API endpoints answer everyone.
TEST_F(HandlerTest, AdminEndpointsAnswerLoopbackPeersOnlyByDefault) {
  Make();
  const SandboxRequest admin[] = {{"GET", "/_sandbox/stats", {}, ""},
                                  {"GET", "/_sandbox/requests", {}, ""},
                                  {"POST", "/_sandbox/reset", {}, ""},
                                  {"GET", "/_sandbox/certificates", {}, ""},
                                  {"POST", "/_sandbox/certificates/add", {}, ""},
                                  {"GET", "/_sandbox/no-such-path", {}, ""}};
  for (SandboxRequest request : admin) {
    request.from_loopback = false;
    SandboxResponse refused = handler_->Handle(request);
    EXPECT_EQ(refused.status, 403) << request.target;
    EXPECT_EQ(Parse(refused.body)["code"], "FORBIDDEN") << request.target;
  }
  // Nothing was added by the refused request.
  SandboxRequest list{"GET", "/_sandbox/certificates", {}, "", /*from_loopback=*/true};
  EXPECT_EQ(Parse(handler_->Handle(list).body)["certificates"].size(), 1u);
  SandboxRequest api = ToSandbox(merchant_->SignedGet(kPalm, kNow));
  api.from_loopback = false;
  EXPECT_EQ(handler_->Handle(api).status, 200);

  HandlerOptions any;
  any.admin_from_any = true;
  Make(any);
  for (SandboxRequest request : admin) {
    request.from_loopback = false;
    EXPECT_NE(handler_->Handle(request).status, 403) << request.target;
  }
}

TEST(RandomFaultOptionsTest, CreateRejectsABadRateOrSpec) {
  std::string pattern = (std::filesystem::temp_directory_path() / "handler-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  KeygenOptions keygen;
  keygen.out_dir = pattern;
  ASSERT_THAT(GenerateKeys(keygen), IsOk());
  FakeClock clock{absl::FromUnixSeconds(kNow)};
  auto create = [&](HandlerOptions options) {
    absl::StatusOr<SandboxKeys> keys = LoadKeys(pattern);
    EXPECT_THAT(keys, IsOk());
    return Handler::Create(std::move(*keys), UserStore(), std::move(options), &clock).status();
  };
  HandlerOptions too_high;
  too_high.faults_enabled = true;
  too_high.fault_rate = 1.5;
  EXPECT_THAT(create(too_high), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("within 0..1")));
  HandlerOptions without_faults;
  without_faults.fault_rate = 0.1;
  EXPECT_THAT(create(without_faults), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--faults")));
  HandlerOptions bad_spec;
  bad_spec.faults_enabled = true;
  bad_spec.fault_rate = 0.1;
  bad_spec.random_faults = {"status=500", "explode"};
  EXPECT_THAT(create(bad_spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("explode")));
  HandlerOptions defaults;
  defaults.faults_enabled = true;
  defaults.fault_rate = 0.1;
  EXPECT_THAT(create(defaults), IsOk());
  std::error_code ec;
  std::filesystem::remove_all(pattern, ec);
}

class RandomFaultHandlerTest : public HandlerTest {
 protected:
  void MakeWithRate(double rate, std::vector<std::string> kinds = {}) {
    HandlerOptions options;
    options.faults_enabled = true;
    options.fault_rate = rate;
    options.random_faults = std::move(kinds);
    Make(options, R"({"users":[{"openid":"seeded","organization_id":"1","fault":"status=403"}]})");
  }
  nlohmann::json Stats() {
    return Parse(handler_->Handle(SandboxRequest{"GET", "/_sandbox/stats", {}, "", /*from_loopback=*/true}).body);
  }
};

TEST_F(RandomFaultHandlerTest, RateOneFaultsEveryPalmRequestWithAKindFromTheList) {
  MakeWithRate(1, {"status=503", "status=404"});
  std::map<int, int> statuses;
  for (int i = 0; i < 50; ++i) ++statuses[Get(kPalm).status];
  // Both kinds drawn (a miss has probability 2^-49), nothing else.
  EXPECT_EQ(statuses.size(), 2u);
  EXPECT_GT(statuses[503], 0);
  EXPECT_GT(statuses[404], 0);
  nlohmann::json stats = Stats();
  EXPECT_EQ(stats["faults_injected"], 50);
  EXPECT_EQ(stats["faults_by_spec"]["status=503"].get<int>() + stats["faults_by_spec"]["status=404"].get<int>(), 50);
  // Certificate downloads are never faulted at random.
  EXPECT_EQ(Get("/v3/certificates").status, 200);
  EXPECT_EQ(Stats()["faults_injected"], 50);
}

TEST_F(RandomFaultHandlerTest, HeaderAndSeedFaultsWinOverTheRandomDraw) {
  MakeWithRate(1, {"status=503"});
  EXPECT_EQ(Get(kPalm, {{"X-Sandbox-Fault", "status=429"}}).status, 429);
  EXPECT_EQ(Get("/v3/palmservice/authorization/openid/seeded?organization_id=1").status, 403);
  EXPECT_EQ(Get(kPalm).status, 503);
}

TEST_F(RandomFaultHandlerTest, RateIsTheShareOfFaultedRequests) {
  MakeWithRate(0.1);
  const int n = 400;
  for (int i = 0; i < n; ++i) Get(kPalm);
  // Binomial(400, 0.1): mean 40, standard deviation 6; 10..90 is beyond 5 deviations each way.
  const int faulted = Stats()["faults_injected"].get<int>();
  EXPECT_GE(faulted, 10);
  EXPECT_LE(faulted, 90);
}

TEST_F(RandomFaultHandlerTest, RateZeroInjectsNothing) {
  MakeWithRate(0);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Get(kPalm).status, 200);
  EXPECT_EQ(Stats()["faults_injected"], 0);
}

}  // namespace
}  // namespace palmgate::sandbox
