#include "server/gateway.h"

#include <curl/curl.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/file_util.h"
#include "server/common/logging.h"
#include "server/common/net_util.h"
#include "server/common/status_macros.h"
#include "server/crypto/rsa.h"
#include "server/crypto/secret.h"
#include "server/wechatpay/certificates.h"
#include "server/wechatpay/credential.h"
#include "server/wechatpay/rsa_signer.h"

namespace palmgate {
namespace {

absl::Status Setting(absl::string_view flag, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

absl::Status Wrap(absl::string_view flag, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("--", flag, ": ", s.message()));
}

absl::StatusOr<std::string> ReadSetting(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> contents = ReadFile(path);
  if (!contents.ok()) return Wrap(flag, contents.status());
  return contents;
}

// The authority of "scheme://authority/path" (`url` starts with a scheme).
absl::string_view Authority(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end != absl::string_view::npos) url.remove_prefix(scheme_end + 3);
  return url.substr(0, url.find_first_of("/?#"));
}

// A URL as libcurl reads it (curl_url()), freed on scope exit.
using CurlUrl = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

// Parses `url` with the flags libcurl itself uses for a proxy and for a
// request URL (CURLU_GUESS_SCHEME: no "scheme://" at the very start means
// http://, whatever follows; CURLU_NON_SUPPORT_SCHEME), so that the parts
// judged here are the parts libcurl will use. The error never repeats `url`.
absl::StatusOr<CurlUrl> ParseAsLibcurl(absl::string_view url) {
  if (url.find('\0') != absl::string_view::npos) return absl::InvalidArgumentError("holds a NUL byte");
  CurlUrl parsed(curl_url(), &curl_url_cleanup);
  if (parsed == nullptr) return absl::ResourceExhaustedError("curl_url: out of memory");
  const CURLUcode rc = curl_url_set(parsed.get(), CURLUPART_URL, std::string(url).c_str(),
                                    CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
  if (rc != CURLUE_OK) return absl::InvalidArgumentError(absl::StrCat("is not a URL (", curl_url_strerror(rc), ")"));
  return parsed;
}

// The part of a parsed URL; nullopt when the URL has none.
std::optional<std::string> UrlPart(const CurlUrl& url, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(url.get(), part, &value, 0) != CURLUE_OK || value == nullptr) return std::nullopt;
  std::string out(value);
  curl_free(value);
  return out;
}

// True when libcurl would take a user name, a password or login options
// (all three come from "...@" in the authority) from the URL.
bool HoldsCredentials(const CurlUrl& url) {
  return UrlPart(url, CURLUPART_USER).has_value() || UrlPart(url, CURLUPART_PASSWORD).has_value() ||
         UrlPart(url, CURLUPART_OPTIONS).has_value();
}

// A port after "host:": 1 to 65535 in decimal.
bool ValidPort(absl::string_view port) {
  if (port.empty() || port.size() > 5 || !absl::c_all_of(port, absl::ascii_isdigit)) return false;
  const int value = std::stoi(std::string(port));
  return value >= 1 && value <= 65535;
}

// Checks an upstream base URL (`flag`: upstream or upstream_backup): http:// or
// https://, no trailing '/', no query or fragment (paths are appended to it),
// no credentials, a plain host[:port] authority with a port of 1 to 65535, and
// http:// only for a loopback host unless `allow_insecure`. Hosts are judged by
// their literal (net_util.h): a name that resolves to 127.0.0.1 is not loopback.
// The host judged is the host libcurl connects to: the URL is also parsed as
// libcurl parses it, and both readings must agree.
absl::Status CheckUpstreamUrl(absl::string_view flag, absl::string_view url, bool allow_insecure) {
  const bool https = absl::StartsWith(url, "https://");
  if (!https && !absl::StartsWith(url, "http://")) return Setting(flag, "must be an http:// or https:// URL");
  if (absl::EndsWith(url, "/")) return Setting(flag, "must not end with '/'");
  if (url.find_first_of("?#") != absl::string_view::npos) {
    return Setting(flag, "must not hold a query or fragment ('?', '#'): request paths are appended to it");
  }
  const absl::string_view authority = Authority(url);
  if (authority.find('@') != absl::string_view::npos) return Setting(flag, "must not hold credentials (user@)");
  absl::string_view host = authority;
  std::optional<absl::string_view> port;
  if (absl::StartsWith(host, "[")) {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) return Setting(flag, "has an unclosed '[' in its host");
    const absl::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return Setting(flag, "must be scheme://host[:port][/path]");
    if (!rest.empty()) port = rest.substr(1);
    host = host.substr(0, close + 1);
  } else {
    const size_t colon = host.find(':');
    if (colon != absl::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    for (char c : host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
        return Setting(flag, "must be scheme://host[:port][/path] (letters, digits, '.', '-', '_' in the host)");
      }
    }
  }
  if (host.empty()) return Setting(flag, "has no host");
  if (port.has_value() && !ValidPort(*port)) return Setting(flag, "has a bad port (1 to 65535 after ':')");
  // What libcurl will make of it, with a request path appended as the client does.
  absl::StatusOr<CurlUrl> parsed = ParseAsLibcurl(absl::StrCat(url, "/v3/x"));
  if (!parsed.ok()) return Setting(flag, parsed.status().message());
  const std::optional<std::string> curl_host = UrlPart(*parsed, CURLUPART_HOST);
  if (HoldsCredentials(*parsed)) return Setting(flag, "must not hold credentials (user@)");
  if (!curl_host.has_value() || !absl::EqualsIgnoreCase(*curl_host, host)) {
    return Setting(flag, "must be scheme://host[:port][/path] (libcurl reads another host in it)");
  }
  if (!https && !allow_insecure && !IsLoopbackHost(*curl_host)) {
    return Setting(flag, absl::StrCat("plain http:// is allowed only to a loopback host (127.0.0.0/8, [::1], "
                                      "localhost), not \"", host, "\": use https://, or pass "
                                      "--allow_insecure_upstream"));
  }
  return absl::OkStatus();
}

// Refuses a proxy URL that holds credentials, judged as libcurl parses a
// proxy: "user:pw@host:port/x://y" has no scheme (libcurl guesses http://) and
// holds credentials. `where` names the setting (a flag or an environment
// variable); the URL itself is never repeated.
absl::Status CheckProxyUrl(absl::string_view where, absl::string_view url) {
  absl::StatusOr<CurlUrl> parsed = ParseAsLibcurl(url);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": a proxy URL ", parsed.status().message()));
  if (!HoldsCredentials(*parsed)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": a proxy URL must not hold credentials (they would be readable by other local users "
                          "in /proc/PID/cmdline or the environment); put \"user:password\" in "
                          "--proxy_credentials_file"));
}

// The variables libcurl takes a proxy from when --proxy is empty.
constexpr const char* kProxyEnvironment[] = {"http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"};

// Reads --proxy_credentials_file: one line "user:password". Errors never
// repeat the file's contents.
absl::Status LoadProxyCredentials(const std::string& path, wechatpay::CurlTransport::Options& options) {
  absl::StatusOr<crypto::SecretString> contents = crypto::ReadSecretFile(path, /*max_bytes=*/4096);
  if (!contents.ok()) return Wrap("proxy_credentials_file", contents.status());
  absl::string_view line = contents->view();
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  for (char c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Setting("proxy_credentials_file", absl::StrCat("\"", path, "\" must hold one line \"user:password\" "
                                                            "(found a control character or a second line)"));
    }
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return Setting("proxy_credentials_file",
                   absl::StrCat("\"", path, "\" must hold one line \"user:password\" (user not empty)"));
  }
  options.proxy_username = crypto::SecretString(std::string(line.substr(0, colon)));
  options.proxy_password = crypto::SecretString(std::string(line.substr(colon + 1)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KeyMaterial> LoadKeyMaterial(const GatewayConfig& config, const Clock& clock) {
  if (config.mchid.empty()) return Setting("mchid", "required (the merchant id that signs requests)");
  if (config.merchant_serial.empty()) {
    return Setting("merchant_serial", "required (serial of the merchant API certificate)");
  }
  if (config.merchant_private_key.empty()) return Setting("merchant_private_key", "required (path of apiclient_key.pem)");
  auto signer = wechatpay::RsaSha256Signer::FromPemFile(config.merchant_private_key);
  if (!signer.ok()) return Wrap("merchant_private_key", signer.status());
  const crypto::RsaPublicKey merchant_public = (*signer)->key().PublicKey();
  const std::string merchant_serial = absl::AsciiStrToUpper(config.merchant_serial);

  if (!config.merchant_certificate.empty()) {
    PALMGATE_ASSIGN_OR_RETURN(std::string pem, ReadSetting("merchant_certificate", config.merchant_certificate));
    absl::StatusOr<crypto::Certificate> cert = crypto::Certificate::FromPem(pem);
    if (!cert.ok()) return Wrap("merchant_certificate", cert.status());
    if (!cert->public_key().Equals(merchant_public)) {
      return Setting("merchant_private_key", "does not match --merchant_certificate (different key pair)");
    }
    if (cert->serial() != merchant_serial) {
      return Setting("merchant_serial", absl::StrCat(config.merchant_serial, " differs from --merchant_certificate's serial ",
                                                     cert->serial()));
    }
  }

  if (config.wechatpay_public_key.empty() != config.wechatpay_public_key_id.empty()) {
    return config.wechatpay_public_key.empty()
               ? Setting("wechatpay_public_key", "required with --wechatpay_public_key_id")
               : Setting("wechatpay_public_key_id", "required with --wechatpay_public_key (the PUB_KEY_ID_… of that key)");
  }
  if (config.wechatpay_public_key.empty() && config.platform_certificates.empty() && config.apiv3_key_file.empty()) {
    return Setting("wechatpay_public_key",
                   "no WeChat Pay verification key: set --wechatpay_public_key with --wechatpay_public_key_id, "
                   "--platform_certificates, or --apiv3_key_file (download platform certificates)");
  }
  crypto::SecretString apiv3_key;  // wiped on every return path
  if (!config.apiv3_key_file.empty()) {
    absl::StatusOr<crypto::SecretString> contents = crypto::ReadSecretFile(config.apiv3_key_file);
    if (!contents.ok()) return Wrap("apiv3_key_file", contents.status());
    apiv3_key = *std::move(contents);
    apiv3_key.StripTrailingWhitespace();
    if (apiv3_key.size() != wechatpay::kApiV3KeyBytes) {
      return Setting("apiv3_key_file", absl::StrCat("must hold the ", wechatpay::kApiV3KeyBytes,
                                                    "-byte APIv3 key (found ", apiv3_key.size(), " bytes)"));
    }
  }
  wechatpay::StaticVerificationKeys static_keys;

  wechatpay::KeyRing::Builder ring;
  if (!config.wechatpay_public_key.empty()) {
    PALMGATE_ASSIGN_OR_RETURN(std::string pem, ReadSetting("wechatpay_public_key", config.wechatpay_public_key));
    absl::StatusOr<crypto::RsaPublicKey> key = crypto::RsaPublicKey::FromPem(pem);
    if (!key.ok()) return Wrap("wechatpay_public_key", key.status());
    if (key->Equals(merchant_public)) {
      return Setting("wechatpay_public_key", "is the merchant's own public key; the WeChat Pay public key is needed");
    }
    PALMGATE_RETURN_IF_ERROR(Wrap("wechatpay_public_key", ring.AddPublicKeyPem(config.wechatpay_public_key_id, pem)));
    static_keys.public_key_id = config.wechatpay_public_key_id;
    static_keys.public_key_pem = pem;
  }
  for (const std::string& path : config.platform_certificates) {
    PALMGATE_ASSIGN_OR_RETURN(std::string pem, ReadSetting("platform_certificates", path));
    absl::StatusOr<crypto::Certificate> cert = crypto::Certificate::FromPem(pem);
    if (!cert.ok()) return Wrap("platform_certificates", absl::Status(cert.status().code(), absl::StrCat(path, ": ", cert.status().message())));
    if (cert->serial() == merchant_serial || cert->public_key().Equals(merchant_public)) {
      return Setting("platform_certificates",
                     absl::StrCat(path, " is the merchant's own API certificate (serial ", cert->serial(),
                                  "); a WeChat Pay platform certificate is needed"));
    }
    if (cert->not_after() <= clock.Now()) {
      return Setting("platform_certificates", absl::StrCat(path, " (serial ", cert->serial(), ") expired on ",
                                                           absl::FormatTime(cert->not_after())));
    }
    absl::Status added = ring.AddCertificate(*cert);
    if (!added.ok()) return Wrap("platform_certificates", added);
    static_keys.certificates.push_back(*cert);
  }
  KeyMaterial material;
  if (!static_keys.public_key_id.empty() || !static_keys.certificates.empty()) {
    absl::StatusOr<std::shared_ptr<const wechatpay::KeyRing>> keys = std::move(ring).Build(clock.Now());
    if (!keys.ok()) return Wrap("platform_certificates", keys.status());
    material.static_ring = *std::move(keys);
  }
  material.credential = std::make_shared<wechatpay::Credential>(
      config.mchid, merchant_serial, std::shared_ptr<const wechatpay::Signer>(*std::move(signer)), clock);
  material.static_keys = std::move(static_keys);
  material.apiv3_key = std::move(apiv3_key);
  return material;

}

absl::Status ReloadKeys(const GatewayConfig& config, GatewayCore& core, const Clock& clock) {
  PALMGATE_ASSIGN_OR_RETURN(KeyMaterial material, LoadKeyMaterial(config, clock));
  if (material.apiv3_key.empty() != (core.certificates == nullptr)) {
    return absl::FailedPreconditionError("--apiv3_key_file: turning certificate download on or off needs a restart");
  }
  if (core.certificates != nullptr) {
    // The manager keeps (and later wipes) its own copy; `material` wipes this one.
    absl::Status s = core.certificates->Reconfigure(material.credential, material.apiv3_key.value(),
                                                    std::move(material.static_keys));
    if (!s.ok()) return Wrap("apiv3_key_file", s);
  } else {
    core.keys->Replace(std::move(material.static_ring));
  }
  core.client->ReplaceCredential(std::move(material.credential));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GatewayCore>> LoadGateway(const GatewayConfig& config, const Clock& clock) {
  PALMGATE_RETURN_IF_ERROR(CheckUpstreamUrl("upstream", config.upstream, config.allow_insecure_upstream));
  std::string backup = config.upstream_backup;
  if (backup == "auto") backup = config.upstream == wechatpay::kProductionBaseUrl ? std::string(wechatpay::kBackupBaseUrl) : "";
  if (backup == "none") backup.clear();
  if (!backup.empty()) {
    absl::Status s = CheckUpstreamUrl("upstream_backup", backup, config.allow_insecure_upstream);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(s.message(), " (or \"auto\", \"none\")"));
  }
  if (config.allow_insecure_upstream &&
      (!absl::StartsWith(config.upstream, "https://") || (!backup.empty() && !absl::StartsWith(backup, "https://")))) {
    Log(LogLevel::kWarning, "--allow_insecure_upstream: upstream over plain http://; requests and answers (openids "
                            "included) cross the network unencrypted");
  }
  if (!config.proxy.empty()) {
    PALMGATE_RETURN_IF_ERROR(CheckProxyUrl("--proxy", config.proxy));
  } else {
    for (const char* name : kProxyEnvironment) {
      const char* value = std::getenv(name);
      // libcurl ignores an empty one.
      if (value != nullptr && *value != '\0') PALMGATE_RETURN_IF_ERROR(CheckProxyUrl(name, value));
    }
  }
  if (config.upstream_attempts < 1 || config.upstream_attempts > 10) {
    return Setting("upstream_attempts", "must be between 1 and 10");
  }
  if (config.upstream_attempt_timeout < absl::ZeroDuration()) return Setting("upstream_attempt_timeout", "must not be negative");
  if (config.upstream_max_idle <= absl::ZeroDuration()) return Setting("upstream_max_idle", "must be positive");
  if (config.upstream_max_connections < 0) return Setting("upstream_max_connections", "must not be negative");
  if (config.upstream_timeout <= absl::ZeroDuration()) return Setting("upstream_timeout", "must be positive");
  if (config.clock_skew <= absl::ZeroDuration()) return Setting("clock_skew", "must be positive");
  // Checked without --apiv3_key_file too: a value that would stop the start-up once the key is added
  // is a mistake now.
  if (config.certificate_refresh_interval <= absl::ZeroDuration() ||
      config.certificate_refresh_interval >= absl::Hours(12)) {
    return Setting("certificate_refresh_interval", "must be positive and under 12h (WeChat Pay's rule)");
  }
  if (config.certificate_refresh_min_interval < absl::ZeroDuration()) {
    return Setting("certificate_refresh_min_interval", "must not be negative");
  }
  PALMGATE_ASSIGN_OR_RETURN(KeyMaterial material, LoadKeyMaterial(config, clock));
  const bool has_static_keys = material.static_ring != nullptr;
  std::shared_ptr<const wechatpay::KeyRing> keys = material.static_ring;
  std::shared_ptr<const wechatpay::Credential> credential = material.credential;

  if (!config.upstream_ca.empty()) {
    PALMGATE_RETURN_IF_ERROR(ReadSetting("upstream_ca", config.upstream_ca).status());
  }
  wechatpay::CurlTransport::Options topts;
  topts.ca_file = config.upstream_ca;
  topts.proxy = config.proxy;
  if (!config.proxy_credentials_file.empty()) {
    PALMGATE_RETURN_IF_ERROR(LoadProxyCredentials(config.proxy_credentials_file, topts));
  }
  topts.max_idle_connection_age = config.upstream_max_idle;
  topts.max_connections = config.upstream_max_connections;
  auto transport = wechatpay::CurlTransport::Create(topts);
  if (!transport.ok()) return transport.status();

  auto core = std::make_unique<GatewayCore>();
  core->transport = *std::move(transport);
  wechatpay::HttpTransport* upstream = core->transport.get();
  if (config.wrap_transport) {
    core->wrapped_transport = config.wrap_transport(upstream);
    upstream = core->wrapped_transport.get();
  }
  if (!config.apiv3_key_file.empty()) {
    // The first download happens before serving; see certificate_manager.h for its trust decision.
    wechatpay::PlatformCertificateManager::Options mopts;
    mopts.base_url = config.upstream;
    mopts.backup_url = backup;  // a download that finds the primary down goes there, like calls
    mopts.refresh_interval = config.certificate_refresh_interval;
    mopts.refresh_jitter = std::min(absl::Minutes(30), config.certificate_refresh_interval / 10);
    mopts.min_refresh_interval = config.certificate_refresh_min_interval;
    mopts.download_timeout = config.upstream_timeout;
    mopts.validator.max_clock_skew = config.clock_skew;
    auto manager = wechatpay::PlatformCertificateManager::Create(
        mopts, credential, upstream, material.apiv3_key.value(), std::move(material.static_keys), clock);
    if (!manager.ok()) return Wrap("apiv3_key_file", manager.status());
    core->certificates = *std::move(manager);
    absl::Status first = core->certificates->RefreshBlocking(absl::Now() + config.upstream_timeout + absl::Seconds(1));
    if (!first.ok()) {
      if (!has_static_keys || core->certificates->ring() == nullptr) return Wrap("apiv3_key_file", first);
      Log(LogLevel::kWarning, absl::StrCat("--apiv3_key_file: ", first.message(),
                                           "; starting with the configured keys, retrying in the background"));
    }
    keys = core->certificates->ring();
  }
  core->keys = std::make_unique<wechatpay::SwappableKeyStore>(std::move(keys));
  wechatpay::PalmServiceClient::Options copts;
  copts.base_url = config.upstream;
  copts.backup_url = backup;
  copts.max_timeout = config.upstream_timeout;
  // Default: with a backup, half the call's time, so that a primary that accepts and never answers is
  // counted against the site and the same call still fails over (with the whole --upstream_timeout for
  // one attempt, 16 of 16 calls ended DEADLINE_EXCEEDED after 10 s). Without one, the whole time.
  copts.attempt_timeout = config.upstream_attempt_timeout > absl::ZeroDuration() ? config.upstream_attempt_timeout
                          : backup.empty()                                     ? config.upstream_timeout
                                                                               : config.upstream_timeout / 2;
  copts.max_attempts = config.upstream_attempts;
  copts.validator.max_clock_skew = config.clock_skew;
  copts.coalesce = config.coalesce;
  core->client = std::make_unique<wechatpay::PalmServiceClient>(copts, std::move(credential), core->keys.get(),
                                                                upstream, clock);
  if (core->certificates != nullptr) {
    core->certificates->Start(core->keys.get());
    core->client->SetKeyRefresher(core->certificates.get());
  }
  return core;
}

}  // namespace palmgate
