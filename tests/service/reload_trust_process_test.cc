// The real palmgate binary, configured with --apiv3_key_file only (platform
// certificates downloaded, trusted on first use at start-up), against an
// upstream that first behaves as WeChat Pay and then turns hostile: it holds
// the APIv3 key but not WeChat Pay's private key, so it lists a self-signed
// certificate of its own, sealed under the APIv3 key, and signs that listing
// and a forged answer with it. A key reload (SIGHUP) or a key file whose
// modification time changed (content unchanged) must not let that
// certificate in: the forged answer stays refused (issue 13 retest, F1).
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/file_util.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "tests/testing/child_process.h"
#include "tests/testing/hostile_http_server.h"
#include "tests/testing/sandbox_process.h"
#include "tests/testing/test_matchers.h"

namespace palmgate {
namespace {

using ::palmgate::testing::HostileHttpServer;
using ::palmgate::testing::HostileScript;
using ::palmgate::testing::IsOk;
using ::palmgate::testing::ListeningProcess;
using ::palmgate::testing::SandboxMerchant;

constexpr char kOpenid[] = "o-reload-trust";

// The /v3/certificates body listing `certificate_pem`, sealed under `apiv3_key`.
std::string Listing(const std::string& certificate_pem, const std::string& serial, const std::string& apiv3_key) {
  const std::string nonce = crypto::RandomAlphanumeric(12);
  auto sealed = crypto::AesGcmSeal(apiv3_key, nonce, "certificate", certificate_pem);
  EXPECT_THAT(sealed, IsOk());
  const nlohmann::json entry = {{"serial_no", serial},
                                {"effective_time", "2024-01-01T00:00:00+08:00"},
                                {"expire_time", "2030-01-01T00:00:00+08:00"},
                                {"encrypt_certificate",
                                 {{"algorithm", "AEAD_AES_256_GCM"},
                                  {"nonce", nonce},
                                  {"associated_data", "certificate"},
                                  {"ciphertext", crypto::Base64Encode(sealed.value_or(""))}}}};
  return nlohmann::json{{"data", nlohmann::json::array({entry})}}.dump();
}

class ReloadTrustProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::MakeTempDir("palmgate-reload-trust");
    ASSERT_THAT(dir, IsOk());
    dir_ = *dir;
    keys_ = dir_ + "/keys";
    ASSERT_EQ(::mkdir(keys_.c_str(), 0700), 0);
    ASSERT_THAT(testing::RunSandboxKeygen(keys_), IsOk());
    auto merchant = SandboxMerchant::Load(keys_);
    ASSERT_THAT(merchant, IsOk());
    merchant_ = std::make_unique<SandboxMerchant>(*std::move(merchant));

    // WeChat Pay's side: the platform certificate and its private key.
    auto platform_pem = ReadFile(keys_ + "/platform_cert.pem");
    ASSERT_THAT(platform_pem, IsOk());
    auto platform_key = ReadFile(keys_ + "/platform_key.pem");
    ASSERT_THAT(platform_key, IsOk());
    genuine_ = {Listing(*platform_pem, merchant_->platform_serial(), merchant_->apiv3_key()), *platform_key,
                merchant_->platform_serial()};

    // The forger's side: a self-signed certificate, valid now.
    auto forged_key = crypto::RsaPrivateKey::Generate();
    ASSERT_THAT(forged_key, IsOk());
    crypto::CertificateSpec spec;
    spec.common_name = "Tenpay.com Root CA";
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24 * 365);
    auto forged_pem = crypto::IssueCertificate(spec, forged_key->PublicKey(), *forged_key, nullptr);
    ASSERT_THAT(forged_pem, IsOk());
    auto forged = crypto::Certificate::FromPem(*forged_pem);
    ASSERT_THAT(forged, IsOk());
    forged_ = {Listing(*forged_pem, forged->serial(), merchant_->apiv3_key()), forged_key->ToPkcs8Pem(),
               forged->serial()};

    auto upstream = HostileHttpServer::Start({});
    ASSERT_THAT(upstream, IsOk());
    upstream_ = *std::move(upstream);
    upstream_->SetScript([this](absl::string_view head) {
      const Side& side = hostile_.load() ? forged_ : genuine_;
      if (absl::StartsWith(head, "GET /v3/certificates")) ++certificate_downloads_;
      const std::string body =
          absl::StartsWith(head, "GET /v3/certificates")
              ? side.listing
              : absl::StrCat(R"({"openid":")", kOpenid, R"(","organization_id":"1004","state":"AUTHORIZATION_STATE_ON"})");
      auto headers = testing::WechatpaySignatureHeaders(body, side.key_pem, side.serial, absl::Now());
      HostileScript s;
      s.head = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                            "\r\n", headers.value_or(""), "\r\n");
      s.body = body;
      return s;
    });
  }

  void TearDown() override {
    gateway_.reset();
    upstream_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartGateway(const std::string& key_reload_interval) {
    const std::vector<std::string> args = {
        PALMGATE_GATEWAY_BINARY,
        "--listen=127.0.0.1:0",
        "--mchid=" + merchant_->mchid(),
        "--merchant_serial=" + merchant_->merchant_serial(),
        "--merchant_private_key=" + keys_ + "/apiclient_key.pem",
        "--merchant_certificate=",
        "--wechatpay_public_key=",
        "--wechatpay_public_key_id=",
        "--platform_certificates=",
        "--apiv3_key_file=" + keys_ + "/apiv3_key.txt",
        "--upstream=" + upstream_->base_url(),
        "--upstream_backup=none",
        "--allow_insecure_upstream",
        "--key_reload_interval=" + key_reload_interval,
    };
    auto gateway = ListeningProcess::Start(args, absl::Seconds(30), log_path());
    ASSERT_THAT(gateway, IsOk());
    gateway_ = *std::move(gateway);
    channel_ = grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials());
  }

  std::string log_path() const { return dir_ + "/palmgate.log"; }

  grpc::Status Call() {
    auto stub = palmgate::v1::PalmAuthorization::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    palmgate::v1::GetAuthorizationRequest req;
    req.set_openid(kOpenid);
    req.set_organization_id("1004");
    palmgate::v1::Authorization out;
    return stub->GetAuthorization(&ctx, req, &out);
  }

  // Waits (bounded) until the log reports `n` finished key reloads (either verdict).
  bool WaitForReloads(int n) {
    const absl::Time until = absl::Now() + absl::Seconds(20);
    while (absl::Now() < until) {
      const std::string log = ReadFile(log_path()).value_or("");
      int seen = 0;
      for (const char* marker : {"keys reloaded", "key reload failed"}) {
        for (size_t at = log.find(marker); at != std::string::npos; at = log.find(marker, at + 1)) ++seen;
      }
      if (seen >= n) return true;
      absl::SleepFor(absl::Milliseconds(20));  // polling a condition with a deadline
    }
    return false;
  }

  // Turns the upstream hostile and checks that the forged answer is refused.
  void TurnHostile() {
    grpc::Status genuine = Call();
    ASSERT_TRUE(genuine.ok()) << genuine.error_message();
    hostile_ = true;
    grpc::Status forged = Call();
    EXPECT_FALSE(forged.ok());
  }

  struct Side {
    std::string listing;
    std::string key_pem;
    std::string serial;
  };

  std::string dir_, keys_;
  std::unique_ptr<SandboxMerchant> merchant_;
  Side genuine_, forged_;
  std::atomic<bool> hostile_{false};
  std::atomic<int> certificate_downloads_{0};
  std::unique_ptr<HostileHttpServer> upstream_;
  std::unique_ptr<ListeningProcess> gateway_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ReloadTrustProcessTest, SighupDoesNotReopenTrustOnFirstUse) {
  StartGateway("0");
  TurnHostile();
  const int downloads = certificate_downloads_.load();
  gateway_->Signal(SIGHUP);
  ASSERT_TRUE(WaitForReloads(1));
  EXPECT_GT(certificate_downloads_.load(), downloads);  // the reload did download (and refused it)
  for (int i = 0; i < 3; ++i) {
    grpc::Status s = Call();
    EXPECT_FALSE(s.ok()) << "forged answer returned OK after SIGHUP (call " << i << ")";
  }
  hostile_ = false;  // the genuine platform certificate is still held
  grpc::Status genuine = Call();
  EXPECT_TRUE(genuine.ok()) << genuine.error_message();
}

TEST_F(ReloadTrustProcessTest, TouchedKeyFileDoesNotReopenTrustOnFirstUse) {
  StartGateway("100ms");
  TurnHostile();
  // A config-management run rewrites the file with the same bytes: only the
  // modification time changes.
  const std::string path = keys_ + "/apiv3_key.txt";
  const auto before = std::filesystem::last_write_time(path);
  std::filesystem::last_write_time(path, before + std::chrono::seconds(5));
  ASSERT_TRUE(WaitForReloads(1));
  for (int i = 0; i < 3; ++i) {
    grpc::Status s = Call();
    EXPECT_FALSE(s.ok()) << "forged answer returned OK after the key file was touched (call " << i << ")";
  }
}

}  // namespace
}  // namespace palmgate
