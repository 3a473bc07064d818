#include "sandbox/keygen.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "server/common/file_util.h"
#include "server/crypto/ssl_ptr.h"
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


// --- The test CA vouches for the sandbox's loopback names only.

// X509_verify_cert of `leaf_pem` against a store holding only `ca_pem`;
// returns the verification error (X509_V_OK when it verifies).
crypto::SslPtr<X509> ParseX509(const std::string& pem) {
  crypto::SslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return crypto::SslPtr<X509>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

int VerifyAgainst(const std::string& ca_pem, const std::string& leaf_pem) {
  crypto::SslPtr<X509> ca = ParseX509(ca_pem);
  crypto::SslPtr<X509> leaf = ParseX509(leaf_pem);
  EXPECT_NE(ca, nullptr);
  EXPECT_NE(leaf, nullptr);
  if (ca == nullptr || leaf == nullptr) return -1;
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  const int ok = X509_verify_cert(ctx.get());
  const int error = X509_STORE_CTX_get_error(ctx.get());
  return ok == 1 ? X509_V_OK : (error == X509_V_OK ? -1 : error);
}

TEST_F(KeygenTest, CaVouchesOnlyForTheSandboxsLoopbackNames) {
  KeygenOptions options;
  options.out_dir = dir_;
  ASSERT_THAT(GenerateKeys(options), IsOk());
  const std::string ca_pem = Read("ca_cert.pem");
  auto ca = crypto::Certificate::FromPem(ca_pem);
  auto ca_key = crypto::RsaPrivateKey::FromPem(Read("ca_key.pem"));
  ASSERT_THAT(ca, IsOk());
  ASSERT_THAT(ca_key, IsOk());
  crypto::SslPtr<X509> ca_x509 = ParseX509(ca_pem);
  ASSERT_NE(ca_x509, nullptr);
  const int nc = X509_get_ext_by_NID(ca_x509.get(), NID_name_constraints, -1);
  ASSERT_GE(nc, 0) << "no name constraints on the CA";
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(ca_x509.get(), nc)), 1);

  // The sandbox's own TLS certificate (localhost, 127.0.0.1) verifies.
  EXPECT_EQ(VerifyAgainst(ca_pem, Read("tls_cert.pem")), X509_V_OK);

  auto leaf = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(leaf, IsOk());
  auto mint = [&](const std::string& cn, const std::string& dns, const std::string& ip) {
    crypto::CertificateSpec spec;
    spec.common_name = cn;
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.dns_name = dns;
    spec.ip_address = ip;
    auto pem = crypto::IssueCertificate(spec, leaf->PublicKey(), *ca_key, &*ca);
    EXPECT_THAT(pem, IsOk());
    return pem.value_or("");
  };
  // What the sandbox serves on, minted anew: accepted.
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("localhost", "localhost", "")), X509_V_OK);
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("::1", "", "::1")), X509_V_OK);
  // Anyone holding ca_key.pem minting for a real host: refused by the verifier.
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("api.mch.weixin.qq.com", "api.mch.weixin.qq.com", "")),
            X509_V_ERR_PERMITTED_VIOLATION);
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("api2.mch.weixin.qq.com", "api2.mch.weixin.qq.com", "")),
            X509_V_ERR_PERMITTED_VIOLATION);
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("localhost.example", "localhost.example", "")), X509_V_ERR_PERMITTED_VIOLATION);
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("10.1.2.3", "", "10.1.2.3")), X509_V_ERR_PERMITTED_VIOLATION);
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("127.0.0.2", "", "127.0.0.2")), X509_V_ERR_PERMITTED_VIOLATION);
  // No subjectAltName, the host in the common name only (as old clients read it).
  EXPECT_EQ(VerifyAgainst(ca_pem, mint("api.mch.weixin.qq.com", "", "")), X509_V_ERR_PERMITTED_VIOLATION);
}

// --- Key files are written through fresh temporary files.

TEST_F(KeygenTest, RefusesAnExistingTemporaryFileInsteadOfWritingThroughIt) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  // A link planted where keygen's temporary file for the CA key goes.
  const std::string victim = dir_ + "/../victim.txt";
  ASSERT_THAT(WriteFile(victim, "unchanged", 0644), IsOk());
  const std::string tmp = absl::StrCat(dir_, "/ca_key.pem.tmp.", ::getpid());
  ASSERT_EQ(::symlink(victim.c_str(), tmp.c_str()), 0);
  KeygenOptions options;
  options.out_dir = dir_;
  EXPECT_THAT(GenerateKeys(options), StatusIs(absl::StatusCode::kAlreadyExists, ::testing::HasSubstr(tmp)));
  // Nothing written through the link (and no key printed if something was).
  EXPECT_TRUE(ReadFile(victim).value_or("") == "unchanged") << "a key file was written through the planted link";
  struct stat st;
  EXPECT_EQ(::lstat(tmp.c_str(), &st), 0);  // someone else's file: left alone
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/ca_key.pem"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/sandbox.json"));  // the set is not complete
}

#if defined(__x86_64__) || defined(__aarch64__)
// Makes fchmod (and fchmodat) fail with EPERM in this process from now on.
bool FailChmodFromNowOn() {
#if defined(__x86_64__)
  constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#else
  constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#endif
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fchmod, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fchmodat, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog program = {static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// A key file whose permission bits could not be set is an error, and nothing
// is left behind: neither the file nor its temporary. (In a child process:
// the syscall filter cannot be removed.)
TEST_F(KeygenTest, FailedChmodIsAnErrorAndLeavesNoFile) {
  KeygenOptions options;
  options.out_dir = dir_;
  EXPECT_EXIT(
      {
        if (!FailChmodFromNowOn()) std::_Exit(3);
        absl::Status s = GenerateKeys(options);
        if (s.ok()) std::_Exit(4);
        if (s.code() != absl::StatusCode::kPermissionDenied) std::_Exit(5);
        if (!std::filesystem::is_empty(dir_)) std::_Exit(6);  // no key file, no temporary file
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}
#endif

}  // namespace
}  // namespace palmgate::sandbox
