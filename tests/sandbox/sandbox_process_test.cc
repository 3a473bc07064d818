// Process-level tests: a real palmgate-sandbox over real sockets, driven by
// SandboxProcess and the tests' own signing client.
#include "tests/testing/sandbox_process.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <cerrno>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_test_client.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kPalm[] = "/v3/palmservice/authorization/openid/oUpF8uMuAJO_M2pxb1Q9zNjWeS6o?organization_id=1004";

nlohmann::json Parse(const std::string& body) { return nlohmann::json::parse(body, nullptr, false); }

struct Running {
  std::unique_ptr<SandboxProcess> process;
  std::optional<SandboxMerchant> merchant;

  absl::StatusOr<TestHttpResponse> Fetch(const TestHttpRequest& r) {
    return HttpFetch(process->base_url(), r, process->ca_cert_path());
  }
  absl::StatusOr<TestHttpResponse> Get(const std::string& target,
                                       std::vector<std::pair<std::string, std::string>> extra = {}) {
    TestHttpRequest r = merchant->SignedGet(target);
    for (auto& h : extra) r.headers.push_back(std::move(h));
    return Fetch(r);
  }
};

Running StartSandbox(SandboxProcessOptions options = {}) {
  Running r;
  absl::StatusOr<std::unique_ptr<SandboxProcess>> p = SandboxProcess::Start(options);
  EXPECT_THAT(p, IsOk());
  if (!p.ok()) return r;
  r.process = std::move(*p);
  absl::StatusOr<SandboxMerchant> m = SandboxMerchant::Load(r.process->keys_dir());
  EXPECT_THAT(m, IsOk());
  if (m.ok()) r.merchant.emplace(std::move(*m));
  return r;
}

TEST(SandboxProcessTest, ServesSignedAnswersOverHttp) {
  Running s = StartSandbox();
  ASSERT_NE(s.process, nullptr);
  EXPECT_THAT(s.process->base_url(), MatchesRegex("http://127\\.0\\.0\\.1:[0-9]+"));
  PALMGATE_ASSERT_OK_AND_ASSIGN(TestHttpResponse r, s.Get(kPalm));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            R"({"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","organization_id":"1004","state":"AUTHORIZATION_STATE_NONE"})");
  EXPECT_EQ(r.Header("Wechatpay-Serial"), s.merchant->platform_serial());
  EXPECT_THAT(s.merchant->VerifyResponse(r), IsOk());
  EXPECT_EQ(r.Header("Keep-Alive"), "timeout=8");
  EXPECT_EQ(r.Header("Server"), "palmgate-sandbox");

  PALMGATE_ASSERT_OK_AND_ASSIGN(TestHttpResponse pub,
                                s.Get(kPalm, {{"Wechatpay-Serial", s.merchant->public_key_id()}}));
  EXPECT_EQ(pub.Header("Wechatpay-Serial"), s.merchant->public_key_id());
  EXPECT_THAT(s.merchant->VerifyResponse(pub), IsOk());
  EXPECT_THAT(s.process->Stop(), IsOkAndHolds(0));
}

TEST(SandboxProcessTest, ServesHttpsWithTheSandboxCa) {
  SandboxProcessOptions options;
  options.tls = true;
  Running s = StartSandbox(options);
  ASSERT_NE(s.process, nullptr);
  EXPECT_THAT(s.process->base_url(), MatchesRegex("https://127\\.0\\.0\\.1:[0-9]+"));
  PALMGATE_ASSERT_OK_AND_ASSIGN(TestHttpResponse r, s.Get("/v3/certificates"));
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(s.merchant->VerifyResponse(r), IsOk());
  // Several requests on one kept-alive TLS connection.
  PALMGATE_ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(s.process->base_url(), s.process->ca_cert_path()));
  for (int i = 0; i < 3; ++i) {
    PALMGATE_ASSERT_OK_AND_ASSIGN(TestHttpResponse k, client->Send(s.merchant->SignedGet(kPalm)));
    EXPECT_EQ(k.status, 200);
    EXPECT_THAT(s.merchant->VerifyResponse(k), IsOk());
  }
  // A client that does not trust the sandbox CA fails the handshake.
  EXPECT_FALSE(HttpFetch(s.process->base_url(), s.merchant->SignedGet(kPalm), "/etc/ssl/certs/ca-certificates.crt").ok());
}

TEST(SandboxProcessTest, RejectsEachAuthorizationDefect) {
  Running s = StartSandbox();
  ASSERT_NE(s.process, nullptr);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  std::string good = s.merchant->Authorization("GET", kPalm, now, "defect-nonce-1");
  auto with_auth = [&](const std::string& auth) {
    TestHttpRequest r = s.merchant->SignedGet(kPalm);
    r.headers.back().second = auth;
    return r;
  };
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string h = good;
    h.replace(h.find(from), from.size(), to);
    return h;
  };
  struct Case {
    std::string auth;
    std::string issue;
  } cases[] = {
      {"", "empty Authorization"},
      {replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SHA256-RSA"), "scheme"},
      {replace(s.merchant->merchant_serial(), s.merchant->platform_serial()), "serial_no"},
      {replace("mchid=\"" + s.merchant->mchid() + "\"", "mchid=\"1\""), "unknown mchid"},
      {s.merchant->Authorization("GET", kPalm, now - 3600, "old"), "away from the server clock"},
      {s.merchant->Authorization("GET", "/v3/certificates", now, "other-target"), "sign not match"},
      {replace("nonce_str=", "nonce_str=\"x\",nonce_str="), "duplicate"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TestHttpResponse> r = s.Fetch(with_auth(c.auth));
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, 401) << c.auth;
    nlohmann::json j = Parse(r->body);
    EXPECT_EQ(j["code"], "SIGN_ERROR");
    EXPECT_THAT(j["detail"]["issue"].get<std::string>(), HasSubstr(c.issue)) << c.auth;
    EXPECT_FALSE(r->Header("Wechatpay-Signature").has_value());
  }
  TestHttpRequest no_auth = s.merchant->SignedGet(kPalm);
  no_auth.headers.pop_back();
  EXPECT_EQ(s.Fetch(no_auth)->status, 401);
}

TEST(SandboxProcessTest, ReplayedNonceIs401) {
  Running s = StartSandbox();
  ASSERT_NE(s.process, nullptr);
  TestHttpRequest r = s.merchant->SignedGet(kPalm);
  EXPECT_EQ(s.Fetch(r)->status, 200);
  absl::StatusOr<TestHttpResponse> again = s.Fetch(r);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->status, 401);
  EXPECT_THAT(Parse(again->body)["detail"]["issue"].get<std::string>(), HasSubstr("nonce_str"));
}

TEST(SandboxProcessTest, HeaderAndParameterErrors) {
  Running s = StartSandbox();
  ASSERT_NE(s.process, nullptr);
  TestHttpRequest no_ua = s.merchant->SignedGet(kPalm);
  no_ua.headers.erase(no_ua.headers.begin() + 1);
  absl::StatusOr<TestHttpResponse> r = s.Fetch(no_ua);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->body, R"({"code":"INVALID_REQUEST","message":"Http头缺少Accept或User-Agent"})");

  for (const char* target : {"/v3/palmservice/authorization/openid/o1", "/v3/palmservice/authorization/openid/o1?organization_id=",
                             "/v3/palmservice/authorization/openid/o%ZZ?organization_id=1"}) {
    absl::StatusOr<TestHttpResponse> p = s.Get(target);
    ASSERT_THAT(p, IsOk());
    EXPECT_EQ(p->status, 400) << target;
    EXPECT_EQ(Parse(p->body)["code"], "PARAM_ERROR") << target;
  }
  EXPECT_EQ(s.Get("/v3/unknown")->status, 404);
}

TEST(SandboxProcessTest, FaultsAreObservableOnTheWire) {
  SandboxProcessOptions options;
  options.faults = true;
  options.seed_json =
      R"({"users":[{"openid":"broken","organization_id":"1004","state":"AUTHORIZATION_STATE_ON","fault":"status=500"}]})";
  Running s = StartSandbox(options);
  ASSERT_NE(s.process, nullptr);
  auto fault = [&](const std::string& spec) { return s.Get(kPalm, {{"X-Sandbox-Fault", spec}}); };

  absl::StatusOr<TestHttpResponse> dropped = fault("drop");
  EXPECT_THAT(dropped, StatusIs(absl::StatusCode::kUnavailable));

  const absl::Time start = absl::Now();
  absl::StatusOr<TestHttpResponse> slow = fault("latency=300;status=503");
  ASSERT_THAT(slow, IsOk());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(slow->status, 503);
  EXPECT_EQ(Parse(slow->body)["code"], "SERVICE_UNAVAILABLE");

  absl::StatusOr<TestHttpResponse> html = fault("html_error");
  ASSERT_THAT(html, IsOk());
  EXPECT_EQ(html->status, 502);
  EXPECT_THAT(html->body, HasSubstr("<html>"));

  absl::StatusOr<TestHttpResponse> huge = fault("huge_body=3000000");
  ASSERT_THAT(huge, IsOk());
  EXPECT_EQ(huge->body.size(), 3000000u);
  EXPECT_THAT(s.merchant->VerifyResponse(*huge), IsOk());

  EXPECT_FALSE(s.merchant->VerifyResponse(*fault("corrupt_signature")).ok());
  EXPECT_FALSE(s.merchant->VerifyResponse(*fault("probe_signature")).ok());
  EXPECT_FALSE(fault("missing_signature_headers")->Header("Wechatpay-Signature").has_value());
  EXPECT_FALSE(fault("missing_header=Wechatpay-Timestamp")->Header("Wechatpay-Timestamp").has_value());
  EXPECT_FALSE(s.merchant->VerifyResponse(*fault("unknown_serial")).ok());
  EXPECT_THAT(s.merchant->VerifyResponse(*fault("malformed_json")), IsOk());
  EXPECT_EQ(fault("empty_body")->body, "");
  absl::StatusOr<TestHttpResponse> skew = fault("skew_timestamp=3600");
  EXPECT_THAT(s.merchant->VerifyResponse(*skew), IsOk());
  EXPECT_EQ(std::stoll(*skew->Header("Wechatpay-Timestamp")) - absl::ToUnixSeconds(absl::Now()) > 3500, true);
  EXPECT_EQ(fault("nonsense")->status, 400);

  // A seed fault, with no header.
  EXPECT_EQ(s.Get("/v3/palmservice/authorization/openid/broken?organization_id=1004")->status, 500);

  // The log shows what happened; the sandbox survived the dropped connection.
  absl::StatusOr<TestHttpResponse> log = HttpFetch(s.process->base_url(), {"GET", "/_sandbox/requests", {}, ""});
  ASSERT_THAT(log, IsOk());
  nlohmann::json entries = Parse(log->body);
  ASSERT_TRUE(entries.is_array());
  EXPECT_EQ(entries[0]["fault"], "drop");
  EXPECT_EQ(entries[0]["status"], 0);
  EXPECT_EQ(entries.back()["openid"], "broken");
  EXPECT_EQ(entries.back()["fault"], "status=500");
  nlohmann::json stats = Parse(HttpFetch(s.process->base_url(), {"GET", "/_sandbox/stats", {}, ""})->body);
  size_t with_fault = 0;
  for (const auto& e : entries) with_fault += e["fault"].is_string() ? 1 : 0;
  EXPECT_EQ(with_fault, entries.size() - 1);  // all but the rejected "nonsense" spec
  EXPECT_EQ(stats["faults_injected"], with_fault);
  EXPECT_EQ(HttpFetch(s.process->base_url(), {"POST", "/_sandbox/reset", {}, ""})->status, 200);
  EXPECT_EQ(Parse(HttpFetch(s.process->base_url(), {"GET", "/_sandbox/stats", {}, ""})->body)["requests_total"], 0);
}

TEST(SandboxProcessTest, FaultHeadersIgnoredWithoutFaultsFlag) {
  Running s = StartSandbox();
  ASSERT_NE(s.process, nullptr);
  absl::StatusOr<TestHttpResponse> r = s.Get(kPalm, {{"X-Sandbox-Fault", "drop"}});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
}

TEST(SandboxProcessTest, LatencyHoldsManyConcurrentRequestsWithoutBlockingThreads) {
  SandboxProcessOptions options;
  options.threads = 1;
  options.extra_flags = {"--latency_ms=1000"};
  Running s = StartSandbox(options);
  ASSERT_NE(s.process, nullptr);
  constexpr int kRequests = 200;
  std::vector<TestHttpRequest> requests;
  for (int i = 0; i < kRequests; ++i) requests.push_back(s.merchant->SignedGet(kPalm));
  std::atomic<int> ok{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<TestHttpResponse> r = s.Fetch(requests[i]);
      if (r.ok() && r->status == 200) ok.fetch_add(1);
    });
  }
  for (std::thread& t : threads) t.join();
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(ok.load(), kRequests);
  EXPECT_GE(elapsed, absl::Milliseconds(1000));
  // Serially that would be 200 s; on one sandbox thread the delays overlap.
  EXPECT_LT(elapsed, absl::Seconds(20)) << elapsed;
}

TEST(SandboxProcessTest, ClosesIdleKeepAliveConnections) {
  SandboxProcessOptions options;
  options.extra_flags = {"--idle_timeout_ms=2000"};
  Running s = StartSandbox(options);
  ASSERT_NE(s.process, nullptr);
  PALMGATE_ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(s.process->base_url()));
  PALMGATE_ASSERT_OK_AND_ASSIGN(TestHttpResponse r, client->Send(s.merchant->SignedGet(kPalm)));
  EXPECT_EQ(r.Header("Keep-Alive"), "timeout=2");
  const absl::Time start = absl::Now();
  EXPECT_THAT(client->WaitForServerClose(absl::Seconds(20)), IsOk());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1500));
}

TEST(SandboxProcessTest, PublicKeyOnlyAndClockOffset) {
  SandboxProcessOptions options;
  options.public_key_only = true;
  options.extra_flags = {"--clock_offset_s=1000"};
  Running s = StartSandbox(options);
  ASSERT_NE(s.process, nullptr);
  const int64_t sandbox_now = absl::ToUnixSeconds(absl::Now()) + 1000;
  absl::StatusOr<TestHttpResponse> certs = s.Fetch(s.merchant->SignedGet("/v3/certificates", sandbox_now));
  ASSERT_THAT(certs, IsOk());
  EXPECT_EQ(certs->status, 404);
  EXPECT_EQ(Parse(certs->body)["code"], "RESOURCE_NOT_EXISTS");
  absl::StatusOr<TestHttpResponse> ok = s.Fetch(s.merchant->SignedGet(kPalm, sandbox_now));
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->Header("Wechatpay-Serial"), s.merchant->public_key_id());
  EXPECT_THAT(s.merchant->VerifyResponse(*ok), IsOk());
  EXPECT_EQ(s.Get(kPalm)->status, 401);  // signed with the real clock: 1000 s of skew
}

TEST(SandboxProcessTest, ReusesAKeyDirectory) {
  Running first = StartSandbox();
  ASSERT_NE(first.process, nullptr);
  SandboxProcessOptions options;
  options.keys_dir = first.process->keys_dir();
  Running second = StartSandbox(options);
  ASSERT_NE(second.process, nullptr);
  EXPECT_NE(first.process->base_url(), second.process->base_url());
  EXPECT_EQ(second.Get(kPalm)->status, 200);
  EXPECT_THAT(first.merchant->VerifyResponse(*second.Get(kPalm)), IsOk());
}

TEST(SandboxProcessTest, StartFailsCleanlyForBadKeys) {
  SandboxProcessOptions options;
  options.keys_dir = "/nonexistent/palmgate";
  EXPECT_THAT(SandboxProcess::Start(options), StatusIs(absl::StatusCode::kInternal, HasSubstr("exited before")));
}

TEST(SandboxProcessTest, KeygenCliRefusesToOverwrite) {
  Running s = StartSandbox();
  ASSERT_NE(s.process, nullptr);
  EXPECT_THAT(RunSandboxCommand({"keygen", "--out", s.process->keys_dir()}), IsOkAndHolds(1));
  EXPECT_THAT(RunSandboxCommand({"bogus"}), IsOkAndHolds(2));
}


// --- Reached from an address that is not loopback.
//
// The machine's own non-loopback addresses are not ours to serve on, so the
// test makes a network namespace of its own (root or CAP_SYS_ADMIN; skipped
// otherwise) whose loopback device also carries 192.0.2.10/32 (TEST-NET-1, a
// documentation address): a client there that connects to 192.0.2.10 has
// that address as its source, which is not loopback. Everything runs on one
// thread that entered the namespace (namespaces are per thread; the sandbox,
// forked from it, inherits it; and it must outlive the sandbox, whose
// PR_SET_PDEATHSIG follows the thread).

constexpr char kOutsideAddress[] = "192.0.2.10";

// Moves the calling thread into a fresh network namespace with lo up and
// kOutsideAddress on it. kPermissionDenied when the process may not.
absl::Status EnterNamespaceWithOutsideAddress() {
  if (::unshare(CLONE_NEWNET) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("unshare(CLONE_NEWNET): ", std::strerror(errno)));
  }
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return absl::InternalError("socket");
  struct ifreq lo {};
  std::strncpy(lo.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &lo) == 0;
  lo.ifr_flags = static_cast<short>(lo.ifr_flags | IFF_UP | IFF_RUNNING);
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &lo) == 0;
  struct ifreq alias {};
  std::strncpy(alias.ifr_name, "lo:1", IFNAMSIZ - 1);
  auto* address = reinterpret_cast<struct sockaddr_in*>(&alias.ifr_addr);
  address->sin_family = AF_INET;
  ok = ok && ::inet_pton(AF_INET, kOutsideAddress, &address->sin_addr) == 1 && ::ioctl(s, SIOCSIFADDR, &alias) == 0;
  auto* mask = reinterpret_cast<struct sockaddr_in*>(&alias.ifr_netmask);
  mask->sin_family = AF_INET;
  mask->sin_addr.s_addr = 0xffffffff;
  ok = ok && ::ioctl(s, SIOCSIFNETMASK, &alias) == 0;
  const int err = errno;
  ::close(s);
  if (!ok) return absl::InternalError(absl::StrCat("configuring lo in the namespace: ", std::strerror(err)));
  return absl::OkStatus();
}

// Runs `body` on a thread inside such a namespace; skips the test when one
// cannot be made.
void InNamespaceWithOutsideAddress(const std::function<void()>& body) {
  absl::Status entered;
  std::thread thread([&] {
    entered = EnterNamespaceWithOutsideAddress();
    if (entered.ok()) body();
  });
  thread.join();
  if (absl::IsPermissionDenied(entered)) GTEST_SKIP() << entered;
  ASSERT_THAT(entered, IsOk());
}

TEST(SandboxProcessTest, ListeningLineShowsTheAddressReallyBound) {
  InNamespaceWithOutsideAddress([] {
    SandboxProcessOptions every;
    every.extra_flags = {"--listen=0.0.0.0:0"};
    Running all = StartSandbox(every);
    ASSERT_NE(all.process, nullptr);
    EXPECT_THAT(all.process->base_url(), MatchesRegex("http://0\\.0\\.0\\.0:[0-9]+"));
    SandboxProcessOptions outside;
    outside.extra_flags = {absl::StrCat("--listen=", kOutsideAddress, ":0")};
    outside.tls = true;
    Running one = StartSandbox(outside);
    ASSERT_NE(one.process, nullptr);
    EXPECT_THAT(one.process->base_url(), MatchesRegex("https://192\\.0\\.2\\.10:[0-9]+"));
  });
}

TEST(SandboxProcessTest, AdminEndpointsRefuseClientsThatAreNotLoopback) {
  InNamespaceWithOutsideAddress([] {
    SandboxProcessOptions options;
    options.extra_flags = {"--listen=0.0.0.0:0"};
    Running s = StartSandbox(options);
    ASSERT_NE(s.process, nullptr);
    const std::string port = s.process->base_url().substr(s.process->base_url().rfind(':') + 1);
    const std::string outside = absl::StrCat("http://", kOutsideAddress, ":", port);
    const std::string loopback = absl::StrCat("http://127.0.0.1:", port);
    for (const TestHttpRequest& admin : {TestHttpRequest{"GET", "/_sandbox/stats", {}, ""},
                                         TestHttpRequest{"POST", "/_sandbox/reset", {}, ""},
                                         TestHttpRequest{"POST", "/_sandbox/certificates/add", {}, ""}}) {
      absl::StatusOr<TestHttpResponse> refused = HttpFetch(outside, admin);
      ASSERT_THAT(refused, IsOk());
      EXPECT_EQ(refused->status, 403) << admin.target;
      EXPECT_EQ(Parse(refused->body)["code"], "FORBIDDEN");
    }
    absl::StatusOr<TestHttpResponse> local = HttpFetch(loopback, {"GET", "/_sandbox/certificates", {}, ""});
    ASSERT_THAT(local, IsOk());
    EXPECT_EQ(local->status, 200);
    EXPECT_EQ(Parse(local->body)["certificates"].size(), 1u);  // the refused add added nothing
    // The API itself answers any client.
    absl::StatusOr<TestHttpResponse> api = HttpFetch(outside, s.merchant->SignedGet(kPalm));
    ASSERT_THAT(api, IsOk());
    EXPECT_EQ(api->status, 200);

    SandboxProcessOptions any = options;
    any.extra_flags.push_back("--admin_from_any");
    any.keys_dir = s.process->keys_dir();
    Running open = StartSandbox(any);
    ASSERT_NE(open.process, nullptr);
    const std::string open_port = open.process->base_url().substr(open.process->base_url().rfind(':') + 1);
    absl::StatusOr<TestHttpResponse> allowed =
        HttpFetch(absl::StrCat("http://", kOutsideAddress, ":", open_port), {"GET", "/_sandbox/stats", {}, ""});
    ASSERT_THAT(allowed, IsOk());
    EXPECT_EQ(allowed->status, 200);
  });
}

}  // namespace
}  // namespace palmgate::testing
