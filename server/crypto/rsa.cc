#include "server/crypto/rsa.h"

#include <openssl/decoder.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "server/common/status_macros.h"

namespace palmgate::crypto {
namespace {

constexpr int kRequiredBits = 2048;

// Never prompts on a terminal for a passphrase: an encrypted key simply fails.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

SslPtr<BIO> MemBio(absl::string_view data) {
  return SslPtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

std::shared_ptr<EVP_PKEY> Share(SslPtr<EVP_PKEY> key) {
  return std::shared_ptr<EVP_PKEY>(key.release(), SslDeleter<EVP_PKEY>());
}

absl::Status CheckRsa2048(const EVP_PKEY* key, absl::string_view what) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not an RSA key (WeChat Pay APIv3 needs RSA-2048)"));
  }
  int bits = EVP_PKEY_get_bits(key);
  if (bits != kRequiredBits) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is RSA-", bits, "; WeChat Pay APIv3 needs RSA-2048"));
  }
  return absl::OkStatus();
}

// SHA-256 fetched once: an implicit fetch per signature costs measurable time in OpenSSL 3.
const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

// A SHA256withRSA sign or verify context initialised once per key. OpenSSL 3's
// EVP_Digest{Sign,Verify}Init looks the algorithms up in the provider store on
// every call (profiled: ~2 % of the gateway's CPU); copying an initialised
// context skips that. Null if OpenSSL fails: callers then initialise per call.
bool DigestInit(EVP_MD_CTX* ctx, EVP_PKEY* key, bool sign) {
  return (sign ? EVP_DigestSignInit(ctx, nullptr, Sha256(), nullptr, key)
               : EVP_DigestVerifyInit(ctx, nullptr, Sha256(), nullptr, key)) == 1;
}

std::shared_ptr<const EVP_MD_CTX> InitDigestContext(EVP_PKEY* key, bool sign) {
  SslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return nullptr;
  if (!DigestInit(ctx.get(), key, sign)) {
    ClearSslErrors();
    return nullptr;
  }
  return std::shared_ptr<const EVP_MD_CTX>(ctx.release(), [](const EVP_MD_CTX* c) {
    EVP_MD_CTX_free(const_cast<EVP_MD_CTX*>(c));
  });
}

// A fresh context for one signature or verification: a copy of `tmpl`, or a new one.
absl::StatusOr<SslPtr<EVP_MD_CTX>> DigestContext(const EVP_MD_CTX* tmpl, EVP_PKEY* key, bool sign) {
  SslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return SslErrorStatus("EVP_MD_CTX_new");
  if (tmpl != nullptr && EVP_MD_CTX_copy_ex(ctx.get(), tmpl) == 1) return ctx;
  if (!DigestInit(ctx.get(), key, sign)) return SslErrorStatus(sign ? "EVP_DigestSignInit" : "EVP_DigestVerifyInit");
  return ctx;
}

absl::Time Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

absl::StatusOr<SslPtr<X509>> ParseX509(absl::string_view pem) {
  SslPtr<BIO> bio = MemBio(pem);
  if (bio == nullptr) return SslErrorStatus("BIO_new_mem_buf");
  SslPtr<X509> x(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  if (x == nullptr) {
    ClearSslErrors();
    if (absl::StrContains(pem, "PRIVATE KEY")) {
      return absl::InvalidArgumentError("expected a PEM certificate, found a private key");
    }
    if (absl::StrContains(pem, "BEGIN PUBLIC KEY")) {
      return absl::InvalidArgumentError("expected a PEM certificate, found a public key");
    }
    return absl::InvalidArgumentError("no PEM certificate found (expected \"BEGIN CERTIFICATE\")");
  }
  return x;
}

}  // namespace

absl::StatusOr<RsaPublicKey> RsaPublicKey::FromPem(absl::string_view pem) {
  SslPtr<BIO> bio = MemBio(pem);
  if (bio == nullptr) return SslErrorStatus("BIO_new_mem_buf");
  SslPtr<EVP_PKEY> key(PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    ClearSslErrors();
    // PKCS#1 "RSA PUBLIC KEY" is a different PEM label; the generic decoder reads it.
    EVP_PKEY* raw = nullptr;
    OSSL_DECODER_CTX* dctx = OSSL_DECODER_CTX_new_for_pkey(&raw, "PEM", nullptr, "RSA",
                                                           EVP_PKEY_PUBLIC_KEY, nullptr, nullptr);
    if (dctx != nullptr) {
      SslPtr<BIO> bio1 = MemBio(pem);
      if (OSSL_DECODER_from_bio(dctx, bio1.get()) == 1) key.reset(raw);
      OSSL_DECODER_CTX_free(dctx);
    }
  }
  if (key == nullptr) {
    ClearSslErrors();
    if (absl::StrContains(pem, "BEGIN CERTIFICATE")) {
      return absl::InvalidArgumentError("expected a PEM public key, found a certificate");
    }
    if (absl::StrContains(pem, "PRIVATE KEY")) {
      return absl::InvalidArgumentError("expected a PEM public key, found a private key");
    }
    return absl::InvalidArgumentError("no PEM public key found (expected \"BEGIN PUBLIC KEY\")");
  }
  PALMGATE_RETURN_IF_ERROR(CheckRsa2048(key.get(), "public key"));
  return RsaPublicKey(Share(std::move(key)));
}

RsaPublicKey::RsaPublicKey(std::shared_ptr<EVP_PKEY> key)
    : key_(std::move(key)), verify_template_(InitDigestContext(key_.get(), /*sign=*/false)) {}

absl::StatusOr<bool> RsaPublicKey::VerifySha256(absl::string_view message,
                                                absl::string_view signature) const {
  if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(key_.get()))) return false;
  PALMGATE_ASSIGN_OR_RETURN(SslPtr<EVP_MD_CTX> ctx, DigestContext(verify_template_.get(), key_.get(), false));
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                            message.size());
  if (rc != 1) {
    ClearSslErrors();  // a bad signature leaves padding errors in the queue
    return false;
  }
  return true;
}

std::string RsaPublicKey::ToPem() const {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key_.get());
  return BioToString(bio.get());
}

bool RsaPublicKey::Equals(const RsaPublicKey& other) const {
  return EVP_PKEY_eq(key_.get(), other.key_.get()) == 1;
}

absl::StatusOr<RsaPrivateKey> RsaPrivateKey::FromPem(absl::string_view pem) {
  SslPtr<BIO> bio = MemBio(pem);
  if (bio == nullptr) return SslErrorStatus("BIO_new_mem_buf");
  // Reads PKCS#8 ("PRIVATE KEY") and the traditional PKCS#1 form ("RSA PRIVATE KEY").
  SslPtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    ClearSslErrors();
    if (absl::StrContains(pem, "ENCRYPTED PRIVATE KEY")) {
      return absl::InvalidArgumentError("the private key is encrypted; palmgate needs an unencrypted PEM key");
    }
    if (absl::StrContains(pem, "BEGIN CERTIFICATE")) {
      return absl::InvalidArgumentError("expected a PEM private key, found a certificate");
    }
    if (absl::StrContains(pem, "BEGIN PUBLIC KEY")) {
      return absl::InvalidArgumentError("expected a PEM private key, found a public key");
    }
    return absl::InvalidArgumentError(
        "no PEM private key found (expected an unencrypted PKCS#8 or PKCS#1 RSA key, like apiclient_key.pem)");
  }
  PALMGATE_RETURN_IF_ERROR(CheckRsa2048(key.get(), "private key"));
  // The PEM parser does not check that the parts belong together (n = p*q, d
  // inverts e): an inconsistent key would sign every request wrongly and be
  // noticed only as WeChat Pay's SIGN_ERROR. Refuse it at load.
  SslPtr<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (check == nullptr) return SslErrorStatus("EVP_PKEY_CTX_new_from_pkey");
  if (EVP_PKEY_pairwise_check(check.get()) != 1) {
    ClearSslErrors();
    return absl::InvalidArgumentError("private key is inconsistent (its parts do not form an RSA key pair)");
  }
  return RsaPrivateKey(Share(std::move(key)));
}

absl::StatusOr<RsaPrivateKey> RsaPrivateKey::Generate() {
  SslPtr<EVP_PKEY> key(EVP_RSA_gen(kRequiredBits));
  if (key == nullptr) return SslErrorStatus("EVP_RSA_gen");
  return RsaPrivateKey(Share(std::move(key)));
}

RsaPrivateKey::RsaPrivateKey(std::shared_ptr<EVP_PKEY> key)
    : key_(std::move(key)), sign_template_(InitDigestContext(key_.get(), /*sign=*/true)) {}

absl::StatusOr<std::string> RsaPrivateKey::SignSha256(absl::string_view message) const {
  PALMGATE_ASSIGN_OR_RETURN(SslPtr<EVP_MD_CTX> ctx, DigestContext(sign_template_.get(), key_.get(), true));
  std::string sig(static_cast<size_t>(EVP_PKEY_get_size(key_.get())), '\0');
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return SslErrorStatus("EVP_DigestSign");
  }
  sig.resize(len);
  return sig;
}

RsaPublicKey RsaPrivateKey::PublicKey() const {
  // An EVP_PKEY holding a private key also serves as the public key.
  return RsaPublicKey(key_);
}

std::string RsaPrivateKey::ToPkcs8Pem() const {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return BioToString(bio.get());
}

absl::StatusOr<Certificate> Certificate::FromPem(absl::string_view pem) {
  PALMGATE_ASSIGN_OR_RETURN(SslPtr<X509> x, ParseX509(pem));
  SslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x.get()), nullptr));
  if (bn == nullptr) return SslErrorStatus("certificate serial", absl::StatusCode::kInvalidArgument);
  // RFC 5280 4.1.2.2: a positive integer. OpenSSL parses a negative one, whose
  // hex ("-6EEF...") is no serial a Wechatpay-Serial header can name.
  if (BN_is_negative(bn.get())) return absl::InvalidArgumentError("certificate serial is negative");
  char* hex = BN_bn2hex(bn.get());
  std::string serial = hex == nullptr ? "" : hex;
  OPENSSL_free(hex);
  if (serial.size() % 2 == 1) serial.insert(0, "0");
  SslPtr<EVP_PKEY> key(X509_get_pubkey(x.get()));
  if (key == nullptr) return SslErrorStatus("certificate public key", absl::StatusCode::kInvalidArgument);
  PALMGATE_RETURN_IF_ERROR(CheckRsa2048(key.get(), "certificate public key"));
  SslPtr<BIO> name_bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(name_bio.get(), X509_get_subject_name(x.get()), 0, XN_FLAG_RFC2253);
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), x.get());
  return Certificate(std::move(serial), Asn1TimeToAbsl(X509_get0_notBefore(x.get())),
                     Asn1TimeToAbsl(X509_get0_notAfter(x.get())), RsaPublicKey(Share(std::move(key))),
                     BioToString(name_bio.get()), (X509_get_extension_flags(x.get()) & EXFLAG_CA) != 0, BioToString(out.get()));
}

absl::StatusOr<std::string> IssueCertificate(const CertificateSpec& spec, const RsaPublicKey& subject_key,
                                             const RsaPrivateKey& issuer_key, const Certificate* issuer) {
  SslPtr<X509> x(X509_new());
  if (x == nullptr) return SslErrorStatus("X509_new");
  X509_set_version(x.get(), 2);
  std::string serial_hex = spec.serial_hex;
  if (serial_hex.empty()) {
    unsigned char raw[20];
    if (RAND_bytes(raw, sizeof(raw)) != 1) return SslErrorStatus("RAND_bytes");
    raw[0] &= 0x7f;  // positive
    raw[0] |= 0x10;  // keep 40 hex digits
    serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(raw), sizeof(raw))));
  }
  BIGNUM* bn_raw = nullptr;
  if (BN_hex2bn(&bn_raw, serial_hex.c_str()) == 0) return SslErrorStatus("BN_hex2bn", absl::StatusCode::kInvalidArgument);
  SslPtr<BIGNUM> bn(bn_raw);
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn.get(), nullptr);
  X509_set_serialNumber(x.get(), serial);
  ASN1_INTEGER_free(serial);
  ASN1_TIME_set(X509_getm_notBefore(x.get()), absl::ToTimeT(spec.not_before));
  ASN1_TIME_set(X509_getm_notAfter(x.get()), absl::ToTimeT(spec.not_after));
  X509_set_pubkey(x.get(), subject_key.get());

  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.organization.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0);
  SslPtr<X509> issuer_x;
  if (issuer != nullptr) {
    PALMGATE_ASSIGN_OR_RETURN(issuer_x, ParseX509(issuer->pem()));
    X509_set_issuer_name(x.get(), X509_get_subject_name(issuer_x.get()));
  } else {
    X509_set_issuer_name(x.get(), name);
  }

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_x != nullptr ? issuer_x.get() : x.get(), x.get(), nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> exts = {
      {NID_basic_constraints, spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
      {NID_key_usage, spec.is_ca ? "critical,keyCertSign,cRLSign,digitalSignature"
                                 : "critical,digitalSignature,keyEncipherment"},
      {NID_subject_key_identifier, "hash"},
  };
  if (issuer_x != nullptr) exts.push_back({NID_authority_key_identifier, "keyid:always"});
  std::string san;
  if (!spec.dns_name.empty()) san = absl::StrCat("DNS:", spec.dns_name);
  if (!spec.ip_address.empty()) absl::StrAppend(&san, san.empty() ? "" : ",", "IP:", spec.ip_address);
  if (!san.empty()) exts.push_back({NID_subject_alt_name, san});
  if (!spec.dns_name.empty() || !spec.ip_address.empty()) exts.push_back({NID_ext_key_usage, "serverAuth"});
  if (!spec.permitted_names.empty()) {
    if (!spec.is_ca) return absl::InvalidArgumentError("name constraints belong on a CA certificate");
    std::string constraints = "critical";
    for (const std::string& name : spec.permitted_names) absl::StrAppend(&constraints, ",permitted;", name);
    exts.push_back({NID_name_constraints, constraints});
  }
  for (const auto& [nid, value] : exts) {
    SslPtr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    if (ext == nullptr || X509_add_ext(x.get(), ext.get(), -1) != 1) return SslErrorStatus("X509_add_ext");
  }
  if (X509_sign(x.get(), issuer_key.get(), EVP_sha256()) == 0) return SslErrorStatus("X509_sign");
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), x.get());
  return BioToString(out.get());
}

}  // namespace palmgate::crypto
