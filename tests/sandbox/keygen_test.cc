#include "sandbox/keygen.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "tests/testing/test_matchers.h"

namespace palmgate::sandbox {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::StatusIs;
using ::testing::MatchesRegex;

std::string TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "keygen-test-XXXXXX").string();
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
  return pattern;
}

class KeygenTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TempDir() + "/keys"; }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(dir_).parent_path(), ec);
  }
  std::string Read(const std::string& name) { return *ReadFile(dir_ + "/" + name); }
  std::string dir_;
};

TEST_F(KeygenTest, WritesAConsistentKeySet) {
  KeygenOptions options;
  options.out_dir = dir_;
  options.mchid = "1230000109";
  ASSERT_THAT(GenerateKeys(options), IsOk());

  nlohmann::json info = nlohmann::json::parse(Read("sandbox.json"), nullptr, false);
  ASSERT_FALSE(info.is_discarded());
  EXPECT_EQ(info["mchid"], "1230000109");
  EXPECT_THAT(info["merchant_serial"].get<std::string>(), MatchesRegex("[0-9A-F]{40}"));
  EXPECT_THAT(info["platform_serial"].get<std::string>(), MatchesRegex("[0-9A-F]{40}"));
  EXPECT_THAT(info["public_key_id"].get<std::string>(), MatchesRegex("PUB_KEY_ID_[0-9]{32}"));
  EXPECT_THAT(Read("apiv3_key.txt"), MatchesRegex("[0-9A-Za-z]{32}"));

  // Every key matches its certificate; serials are those of sandbox.json.
  auto merchant_key = crypto::RsaPrivateKey::FromPem(Read("apiclient_key.pem"));
  auto merchant_cert = crypto::Certificate::FromPem(Read("apiclient_cert.pem"));
  ASSERT_THAT(merchant_key, IsOk());
  ASSERT_THAT(merchant_cert, IsOk());
  EXPECT_TRUE(merchant_key->PublicKey().Equals(merchant_cert->public_key()));
  EXPECT_EQ(merchant_cert->serial(), info["merchant_serial"]);
  EXPECT_NE(Read("apiclient_key.pem").find("BEGIN PRIVATE KEY"), std::string::npos);  // PKCS#8

  auto platform_key = crypto::RsaPrivateKey::FromPem(Read("platform_key.pem"));
  auto platform_cert = crypto::Certificate::FromPem(Read("platform_cert.pem"));
  ASSERT_THAT(platform_key, IsOk());
  ASSERT_THAT(platform_cert, IsOk());
  EXPECT_TRUE(platform_key->PublicKey().Equals(platform_cert->public_key()));
  EXPECT_EQ(platform_cert->serial(), info["platform_serial"]);
  EXPECT_LE(platform_cert->not_before(), absl::Now() - absl::Hours(23));
  EXPECT_GE(platform_cert->not_after(), absl::Now() + absl::Hours(24 * 365 * 5 - 24));

  auto pub = crypto::RsaPublicKey::FromPem(Read("pub_key.pem"));
  auto pub_private = crypto::RsaPrivateKey::FromPem(Read("pub_key_private.pem"));
  ASSERT_THAT(pub, IsOk());
  ASSERT_THAT(pub_private, IsOk());
  EXPECT_TRUE(pub_private->PublicKey().Equals(*pub));
  EXPECT_NE(Read("pub_key.pem").find("BEGIN PUBLIC KEY"), std::string::npos);

  auto ca = crypto::Certificate::FromPem(Read("ca_cert.pem"));
  auto ca_key = crypto::RsaPrivateKey::FromPem(Read("ca_key.pem"));
  ASSERT_THAT(ca, IsOk());
  ASSERT_THAT(ca_key, IsOk());
  EXPECT_TRUE(ca->is_ca());
  EXPECT_TRUE(ca_key->PublicKey().Equals(ca->public_key()));
  auto tls_cert = crypto::Certificate::FromPem(Read("tls_cert.pem"));
  auto tls_key = crypto::RsaPrivateKey::FromPem(Read("tls_key.pem"));
  ASSERT_THAT(tls_cert, IsOk());
  ASSERT_THAT(tls_key, IsOk());
  EXPECT_TRUE(tls_key->PublicKey().Equals(tls_cert->public_key()));

  for (const char* name : {"ca_key.pem", "apiclient_key.pem", "platform_key.pem", "pub_key_private.pem",
                           "tls_key.pem", "apiv3_key.txt"}) {
    struct stat st;
    ASSERT_EQ(::stat((dir_ + "/" + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
  }

  absl::StatusOr<SandboxKeys> keys = LoadKeys(dir_);
  ASSERT_THAT(keys, IsOk());
  EXPECT_EQ(keys->mchid, "1230000109");
  EXPECT_EQ(keys->public_key_id, info["public_key_id"]);
}

TEST_F(KeygenTest, RefusesToOverwriteWithoutForce) {
  KeygenOptions options;
  options.out_dir = dir_;
  ASSERT_THAT(GenerateKeys(options), IsOk());
  const std::string before = Read("sandbox.json");
  EXPECT_THAT(GenerateKeys(options), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(Read("sandbox.json"), before);
  options.force = true;
  ASSERT_THAT(GenerateKeys(options), IsOk());
  EXPECT_NE(Read("sandbox.json"), before);
}

TEST_F(KeygenTest, LoadDetectsAMismatchedKey) {
  KeygenOptions options;
  options.out_dir = dir_;
  ASSERT_THAT(GenerateKeys(options), IsOk());
  ASSERT_THAT(WriteFile(dir_ + "/platform_key.pem", Read("pub_key_private.pem"), 0600), IsOk());
  EXPECT_THAT(LoadKeys(dir_), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LoadKeys(dir_ + "/missing"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace palmgate::sandbox
