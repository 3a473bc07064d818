#include "sandbox/keygen.h"

#include <filesystem>
#include <iterator>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/common/file_util.h"
#include "server/common/status_macros.h"
#include "server/crypto/aes_gcm.h"

namespace palmgate::sandbox {
namespace {

constexpr unsigned kPrivateMode = 0600;
constexpr unsigned kPublicMode = 0644;

// The CA's NameConstraints (permitted subtrees, OpenSSL syntax).
constexpr const char* kCaPermittedNames[] = {
    "DNS:localhost",
    "IP:127.0.0.1/255.255.255.255",
    "IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
};

std::string Path(const std::string& dir, absl::string_view name) { return absl::StrCat(dir, "/", name); }

std::string RandomDecimalDigits(size_t n) {
  std::string out;
  while (out.size() < n) {
    for (unsigned char b : crypto::RandomBytes(n)) {
      if (b < 250 && out.size() < n) out.push_back(static_cast<char>('0' + b % 10));  // unbiased
    }
  }
  return out;
}

absl::StatusOr<std::string> Issue(const std::string& cn, const std::string& org, const crypto::RsaPrivateKey& subject,
                                  const crypto::RsaPrivateKey& ca_key, const crypto::Certificate& ca, absl::Time from,
                                  absl::Time to, const std::string& dns = "", const std::string& ip = "") {
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.organization = org;
  spec.not_before = from;
  spec.not_after = to;
  spec.dns_name = dns;
  spec.ip_address = ip;
  return crypto::IssueCertificate(spec, subject.PublicKey(), ca_key, &ca);
}

}  // namespace

absl::Status GenerateKeys(const KeygenOptions& options) {
  const std::string& dir = options.out_dir;
  if (dir.empty()) return absl::InvalidArgumentError("keygen: --out is required");
  if (options.mchid.empty()) return absl::InvalidArgumentError("keygen: empty mchid");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("keygen: cannot create ", dir, ": ", ec.message()));
  if (std::filesystem::exists(Path(dir, "sandbox.json"), ec) && !options.force) {
    return absl::AlreadyExistsError(
        absl::StrCat("keygen: ", Path(dir, "sandbox.json"), " exists; pass --force to regenerate the keys"));
  }
  const absl::Time from = options.now - absl::Hours(24);
  const absl::Time to = options.now + absl::Hours(24 * 365 * 5);

  PALMGATE_ASSIGN_OR_RETURN(crypto::RsaPrivateKey ca_key, crypto::RsaPrivateKey::Generate());
  crypto::CertificateSpec ca_spec;
  ca_spec.common_name = "palmgate sandbox CA";
  ca_spec.is_ca = true;
  ca_spec.not_before = from;
  ca_spec.not_after = options.now + absl::Hours(24 * 365 * 10);
  // A CI that trusts ca_cert.pem system-wide must not thereby trust a
  // certificate minted with ca_key.pem for a real host (WeChat Pay's included):
  // the CA can only vouch for the loopback names the sandbox serves on.
  ca_spec.permitted_names = std::vector<std::string>(std::begin(kCaPermittedNames), std::end(kCaPermittedNames));
  PALMGATE_ASSIGN_OR_RETURN(std::string ca_pem,
                            crypto::IssueCertificate(ca_spec, ca_key.PublicKey(), ca_key, nullptr));
  PALMGATE_ASSIGN_OR_RETURN(crypto::Certificate ca, crypto::Certificate::FromPem(ca_pem));

  PALMGATE_ASSIGN_OR_RETURN(crypto::RsaPrivateKey merchant_key, crypto::RsaPrivateKey::Generate());
  PALMGATE_ASSIGN_OR_RETURN(std::string merchant_pem,
                            Issue(options.mchid, "palmgate sandbox merchant", merchant_key, ca_key, ca, from, to));
  PALMGATE_ASSIGN_OR_RETURN(crypto::Certificate merchant_cert, crypto::Certificate::FromPem(merchant_pem));

  PALMGATE_ASSIGN_OR_RETURN(crypto::RsaPrivateKey platform_key, crypto::RsaPrivateKey::Generate());
  PALMGATE_ASSIGN_OR_RETURN(std::string platform_pem, Issue("palmgate sandbox WeChat Pay platform", "palmgate sandbox",
                                                            platform_key, ca_key, ca, from, to));
  PALMGATE_ASSIGN_OR_RETURN(crypto::Certificate platform_cert, crypto::Certificate::FromPem(platform_pem));

  PALMGATE_ASSIGN_OR_RETURN(crypto::RsaPrivateKey pub_key, crypto::RsaPrivateKey::Generate());
  const std::string public_key_id = absl::StrCat("PUB_KEY_ID_", RandomDecimalDigits(32));

  PALMGATE_ASSIGN_OR_RETURN(crypto::RsaPrivateKey tls_key, crypto::RsaPrivateKey::Generate());
  PALMGATE_ASSIGN_OR_RETURN(std::string tls_pem, Issue("localhost", "palmgate sandbox", tls_key, ca_key, ca, from, to,
                                                       "localhost", "127.0.0.1"));

  nlohmann::json info = {{"mchid", options.mchid},
                         {"merchant_serial", merchant_cert.serial()},
                         {"platform_serial", platform_cert.serial()},
                         {"public_key_id", public_key_id}};

  const std::pair<const char*, std::pair<std::string, unsigned>> files[] = {
      {"ca_cert.pem", {ca_pem, kPublicMode}},
      {"ca_key.pem", {ca_key.ToPkcs8Pem(), kPrivateMode}},
      {"apiclient_key.pem", {merchant_key.ToPkcs8Pem(), kPrivateMode}},
      {"apiclient_cert.pem", {merchant_pem, kPublicMode}},
      {"platform_key.pem", {platform_key.ToPkcs8Pem(), kPrivateMode}},
      {"platform_cert.pem", {platform_pem, kPublicMode}},
      {"pub_key.pem", {pub_key.PublicKey().ToPem(), kPublicMode}},
      {"pub_key_private.pem", {pub_key.ToPkcs8Pem(), kPrivateMode}},
      {"apiv3_key.txt", {crypto::RandomAlphanumeric(32), kPrivateMode}},
      {"tls_cert.pem", {tls_pem, kPublicMode}},
      {"tls_key.pem", {tls_key.ToPkcs8Pem(), kPrivateMode}},
      // Written last: its presence means the set is complete.
      {"sandbox.json", {info.dump(2) + "\n", kPublicMode}},
  };
  for (const auto& [name, content] : files) {
    PALMGATE_RETURN_IF_ERROR(WriteFile(Path(dir, name), content.first, content.second));
  }
  return absl::OkStatus();
}

absl::StatusOr<SandboxKeys> LoadKeys(const std::string& dir) {
  PALMGATE_ASSIGN_OR_RETURN(std::string info_text, ReadFile(Path(dir, "sandbox.json")));
  nlohmann::json info = nlohmann::json::parse(info_text, nullptr, /*allow_exceptions=*/false);
  if (info.is_discarded() || !info.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(Path(dir, "sandbox.json"), ": not a JSON object"));
  }
  auto str = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = info.find(key);
    if (it == info.end() || !it->is_string() || it->get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(Path(dir, "sandbox.json"), ": missing \"", key, "\""));
    }
    return it->get<std::string>();
  };
  PALMGATE_ASSIGN_OR_RETURN(std::string mchid, str("mchid"));
  PALMGATE_ASSIGN_OR_RETURN(std::string merchant_serial, str("merchant_serial"));
  PALMGATE_ASSIGN_OR_RETURN(std::string platform_serial, str("platform_serial"));
  PALMGATE_ASSIGN_OR_RETURN(std::string public_key_id, str("public_key_id"));

  auto load = [&](const char* name) -> absl::StatusOr<std::string> { return ReadFile(Path(dir, name)); };
  auto annotate = [&](const char* name, absl::Status s) {
    return absl::Status(s.code(), absl::StrCat(Path(dir, name), ": ", s.message()));
  };

  PALMGATE_ASSIGN_OR_RETURN(std::string merchant_pem, load("apiclient_cert.pem"));
  absl::StatusOr<crypto::Certificate> merchant_cert = crypto::Certificate::FromPem(merchant_pem);
  if (!merchant_cert.ok()) return annotate("apiclient_cert.pem", merchant_cert.status());
  if (merchant_cert->serial() != merchant_serial) {
    return absl::InvalidArgumentError(
        absl::StrCat(Path(dir, "apiclient_cert.pem"), ": serial differs from sandbox.json merchant_serial"));
  }

  PALMGATE_ASSIGN_OR_RETURN(std::string platform_pem, load("platform_cert.pem"));
  absl::StatusOr<crypto::Certificate> platform_cert = crypto::Certificate::FromPem(platform_pem);
  if (!platform_cert.ok()) return annotate("platform_cert.pem", platform_cert.status());
  if (platform_cert->serial() != platform_serial) {
    return absl::InvalidArgumentError(
        absl::StrCat(Path(dir, "platform_cert.pem"), ": serial differs from sandbox.json platform_serial"));
  }
  PALMGATE_ASSIGN_OR_RETURN(std::string platform_key_pem, load("platform_key.pem"));
  absl::StatusOr<crypto::RsaPrivateKey> platform_key = crypto::RsaPrivateKey::FromPem(platform_key_pem);
  if (!platform_key.ok()) return annotate("platform_key.pem", platform_key.status());
  if (!platform_key->PublicKey().Equals(platform_cert->public_key())) {
    return absl::InvalidArgumentError(absl::StrCat(Path(dir, "platform_key.pem"), ": does not match platform_cert.pem"));
  }

  PALMGATE_ASSIGN_OR_RETURN(std::string pub_pem, load("pub_key.pem"));
  absl::StatusOr<crypto::RsaPublicKey> pub = crypto::RsaPublicKey::FromPem(pub_pem);
  if (!pub.ok()) return annotate("pub_key.pem", pub.status());
  PALMGATE_ASSIGN_OR_RETURN(std::string pub_private_pem, load("pub_key_private.pem"));
  absl::StatusOr<crypto::RsaPrivateKey> pub_private = crypto::RsaPrivateKey::FromPem(pub_private_pem);
  if (!pub_private.ok()) return annotate("pub_key_private.pem", pub_private.status());
  if (!pub_private->PublicKey().Equals(*pub)) {
    return absl::InvalidArgumentError(absl::StrCat(Path(dir, "pub_key_private.pem"), ": does not match pub_key.pem"));
  }

  PALMGATE_ASSIGN_OR_RETURN(std::string apiv3_key, load("apiv3_key.txt"));
  if (apiv3_key.size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat(Path(dir, "apiv3_key.txt"), ": the APIv3 key must be 32 bytes"));
  }
  return SandboxKeys{dir,
                     mchid,
                     merchant_serial,
                     merchant_cert->public_key(),
                     *platform_cert,
                     *platform_key,
                     public_key_id,
                     *pub,
                     *pub_private,
                     apiv3_key,
                     Path(dir, "tls_cert.pem"),
                     Path(dir, "tls_key.pem")};
}

}  // namespace palmgate::sandbox
