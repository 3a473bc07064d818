#include "server/crypto/rsa.h"

#include <openssl/core_names.h>
#include <openssl/param_build.h>
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
#include "server/crypto/pem.h"

namespace palmgate::crypto {
namespace {

constexpr int kRequiredBits = 2048;
// Bounds of what reaches OpenSSL's DER parsers: an RSA-2048 key in PKCS#8 is
// ~1,220 bytes, its SubjectPublicKeyInfo 294; these leave room for RSA-4096
// (refused later, with a message naming its size).
constexpr size_t kMaxPrivateKeyDer = 4096;
constexpr size_t kMaxPublicKeyDer = 1024;

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

// Frees a parsed SEQUENCE, wiping its INTEGERs first (they may be a private key's).
void FreeAsn1Sequence(STACK_OF(ASN1_TYPE)* s) {
  for (int i = 0; i < sk_ASN1_TYPE_num(s); ++i) {
    ASN1_TYPE* t = sk_ASN1_TYPE_value(s, i);
    if (ASN1_TYPE_get(t) == V_ASN1_INTEGER || ASN1_TYPE_get(t) == V_ASN1_NEG_INTEGER) {
      OPENSSL_cleanse(t->value.integer->data, static_cast<size_t>(t->value.integer->length));
    }
  }
  sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
}
using Asn1Sequence = std::unique_ptr<STACK_OF(ASN1_TYPE), decltype(&FreeAsn1Sequence)>;
struct BnClearFree {
  void operator()(BIGNUM* bn) const { BN_clear_free(bn); }
};
using SecretBn = std::unique_ptr<BIGNUM, BnClearFree>;  // a BIGNUM wiped when freed

// The INTEGERs of a DER SEQUENCE of exactly `count` non-negative INTEGERs
// (PKCS#1 RSAPrivateKey, RSAPublicKey) that fills `der` entirely, or empty.
std::vector<SecretBn> DerIntegers(absl::string_view der, int count) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* const end = p + der.size();
  Asn1Sequence seq(d2i_ASN1_SEQUENCE_ANY(nullptr, &p, static_cast<long>(der.size())), FreeAsn1Sequence);
  std::vector<SecretBn> out;
  if (seq == nullptr || p != end || sk_ASN1_TYPE_num(seq.get()) != count) return out;
  for (int i = 0; i < count; ++i) {
    const ASN1_TYPE* t = sk_ASN1_TYPE_value(seq.get(), i);
    if (ASN1_TYPE_get(t) != V_ASN1_INTEGER) return {};  // negative INTEGERs are V_ASN1_NEG_INTEGER
    SecretBn bn(BN_secure_new());  // BN_FLG_SECURE: see RsaFromParts
    if (bn == nullptr || ASN1_INTEGER_to_BN(t->value.integer, bn.get()) == nullptr) return {};
    out.push_back(std::move(bn));
  }
  return out;
}

// Builds an RSA key from its parts with EVP_PKEY_fromdata: `names` and
// `values` pair up. OpenSSL 3.0's generic DER decoder costs ~0.4 ms per call
// (it enumerates every provider's decoders for each new context), the import
// of numbers already parsed a small fraction of that.
SslPtr<EVP_PKEY> RsaFromParts(const std::vector<const char*>& names, const std::vector<SecretBn>& values,
                              int selection) {
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  if (bld == nullptr) return nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    if (OSSL_PARAM_BLD_push_BN(bld.get(), names[i], values[i].get()) != 1) return nullptr;
  }
  // The numbers are BN_FLG_SECURE (DerIntegers): OSSL_PARAM_BLD_to_param puts
  // them in the block that OSSL_PARAM_free wipes.
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()), OSSL_PARAM_free);
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &key, selection, params.get()) != 1) return nullptr;
  return SslPtr<EVP_PKEY>(key);
}

// PKCS#1 RSAPrivateKey (two primes: version 0 and eight INTEGERs).
SslPtr<EVP_PKEY> RsaPrivateFromPkcs1(absl::string_view der) {
  std::vector<SecretBn> parts = DerIntegers(der, 9);
  if (parts.empty() || !BN_is_zero(parts[0].get())) return nullptr;
  parts.erase(parts.begin());
  return RsaFromParts({OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
                       OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
                       OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
                      parts, EVP_PKEY_KEYPAIR);
}

// PKCS#1 RSAPublicKey (modulus, exponent).
SslPtr<EVP_PKEY> RsaPublicFromPkcs1(absl::string_view der) {
  std::vector<SecretBn> parts = DerIntegers(der, 2);
  if (parts.empty()) return nullptr;
  return RsaFromParts({OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E}, parts, EVP_PKEY_PUBLIC_KEY);
}

// The private key of a PEM text: PKCS#8 PrivateKeyInfo (rsaEncryption) or
// PKCS#1, after DecodePem. Null with `*not_rsa` set for a PKCS#8 key of
// another algorithm.
SslPtr<EVP_PKEY> ParsePrivateKeyPem(absl::string_view pem, bool* not_rsa) {
  absl::StatusOr<PemBlock> block = DecodePem(pem, {"PRIVATE KEY", "RSA PRIVATE KEY"}, kMaxPrivateKeyDer);
  if (!block.ok()) return nullptr;
  if (block->label == "RSA PRIVATE KEY") return RsaPrivateFromPkcs1(block->der.view());
  const auto* p = reinterpret_cast<const unsigned char*>(block->der.view().data());
  const unsigned char* const end = p + block->der.size();
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> p8(
      d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(block->der.size())), PKCS8_PRIV_KEY_INFO_free);
  if (p8 == nullptr || p != end) return nullptr;
  const ASN1_OBJECT* algorithm = nullptr;
  const unsigned char* inner = nullptr;
  int inner_len = 0;
  if (PKCS8_pkey_get0(&algorithm, &inner, &inner_len, nullptr, p8.get()) != 1) return nullptr;
  if (OBJ_obj2nid(algorithm) != NID_rsaEncryption) {
    *not_rsa = true;
    return nullptr;
  }
  return RsaPrivateFromPkcs1(absl::string_view(reinterpret_cast<const char*>(inner), static_cast<size_t>(inner_len)));
}

// The public key of a PEM text: SubjectPublicKeyInfo or PKCS#1, after DecodePem.
SslPtr<EVP_PKEY> ParsePublicKeyPem(absl::string_view pem) {
  absl::StatusOr<PemBlock> block = DecodePem(pem, {"PUBLIC KEY", "RSA PUBLIC KEY"}, kMaxPublicKeyDer);
  if (!block.ok()) return nullptr;
  if (block->label == "RSA PUBLIC KEY") return RsaPublicFromPkcs1(block->der.view());
  const auto* p = reinterpret_cast<const unsigned char*>(block->der.view().data());
  const unsigned char* const end = p + block->der.size();
  SslPtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(block->der.size())));
  if (p != end) return nullptr;
  return key;
}

}  // namespace

absl::StatusOr<RsaPublicKey> RsaPublicKey::FromPem(absl::string_view pem) {
  SslPtr<EVP_PKEY> key = ParsePublicKeyPem(pem);
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
  PALMGATE_ASSIGN_OR_RETURN(RsaPrivateKey key, ParsePemWithoutConsistencyCheck(pem));
  PALMGATE_RETURN_IF_ERROR(key.CheckConsistency());
  return key;
}

absl::StatusOr<RsaPrivateKey> RsaPrivateKey::ParsePemWithoutConsistencyCheck(absl::string_view pem) {
  bool not_rsa = false;
  SslPtr<EVP_PKEY> key = ParsePrivateKeyPem(pem, &not_rsa);
  if (key == nullptr) {
    ClearSslErrors();
    if (not_rsa) {
      return absl::InvalidArgumentError("private key is not an RSA key (WeChat Pay APIv3 needs RSA-2048)");
    }
    if (absl::StrContains(pem, "ENCRYPTED PRIVATE KEY") || absl::StrContains(pem, "Proc-Type: 4,ENCRYPTED")) {
      return absl::InvalidArgumentError("the private key is encrypted; palmgate needs an unencrypted PEM key");
    }
    if (absl::StrContains(pem, "BEGIN CERTIFICATE")) {
      return absl::InvalidArgumentError("expected a PEM private key, found a certificate");
    }
    if (absl::StrContains(pem, "BEGIN PUBLIC KEY")) {
      return absl::InvalidArgumentError("expected a PEM private key, found a public key");
    }
    return absl::InvalidArgumentError(
        "no PEM private key found (expected one unencrypted PKCS#8 or PKCS#1 RSA key, like apiclient_key.pem)");
  }
  PALMGATE_RETURN_IF_ERROR(CheckRsa2048(key.get(), "private key"));
  return RsaPrivateKey(Share(std::move(key)));
}

absl::Status RsaPrivateKey::CheckConsistency() const {
  // The PEM parser does not check that the parts belong together (n = p*q, d
  // inverts e): an inconsistent key would sign every request wrongly and be
  // noticed only as WeChat Pay's SIGN_ERROR.
  SslPtr<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  if (check == nullptr) return SslErrorStatus("EVP_PKEY_CTX_new_from_pkey");
  if (EVP_PKEY_pairwise_check(check.get()) != 1) {
    ClearSslErrors();
    return absl::InvalidArgumentError("private key is inconsistent (its parts do not form an RSA key pair)");
  }
  return absl::OkStatus();
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
