// Fuzz target: response verification (ValidateResponse), then the parsing of a
// verified success body (ParseAuthorizationBody) and the gRPC answer built from
// it (ToAuthorization), as PalmServiceClient and the service run them.
//
// Input: an HTTP response in the text form of fuzz_util.h. A Wechatpay-Signature
// value of "@sign" is replaced by a real signature of the response, so that the
// fuzzer reaches past the signature check into the body. It is made with the
// fast test key (FastTestSigner below; the key for kFastCertSerial and
// kFastPubKeyId, also when the serial names another key): no RSA private-key
// operation runs per input. wechatpay-java's and wechatpay-go's keys (K3, K1)
// stay in the ring, verify-only, for the real vectors D3/D4/D5.
//
// Invariants:
//   - success only for a 2xx (not 202) response with all four headers, a
//     timestamp inside the window, and a signature that verifies with a key of
//     the serial it names (checked here independently of the key ring);
//   - a response this target signed, naming the fast key's serial (a
//     certificate serial in any letter case, with leading zeros) and with a
//     timestamp inside the window, is accepted (no false rejects);
//   - every failure carries an UpstreamError with a reason; failures of 2xx
//     responses are kInternal; the gRPC status made of it parses back (strict
//     proto3 UTF-8), so that a client can read why;
//   - a verified body that parses names the openid asked for (always) and the
//     organization asked for (or none), and carries a state,
//     and the answer built from it (with the Request-ID) parses back unchanged.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/rpc/status.pb.h"
#include "palmgate/v1/palm_authorization.pb.h"
#include "server/common/utf8.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/crypto/ssl_ptr.h"
#include "server/service/request_mapping.h"
#include "server/service/status_conversion.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/palm_service_client.h"
#include "server/wechatpay/response_validator.h"
#include "tests/fuzz/fuzz_util.h"

namespace palmgate::fuzz {
namespace {

using crypto::SslPtr;
using wechatpay::HttpResponse;

// Owners of the OpenSSL objects only this target uses (server/crypto/ssl_ptr.h has the rest).
template <typename T, void (*Free)(T*)>
struct FreeWith {
  void operator()(T* p) const { Free(p); }
};
using BnCtxPtr = std::unique_ptr<BN_CTX, FreeWith<BN_CTX, BN_CTX_free>>;
using MontPtr = std::unique_ptr<BN_MONT_CTX, FreeWith<BN_MONT_CTX, BN_MONT_CTX_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, FreeWith<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;

// The fast test key's serials: a platform certificate and a WeChat Pay public key.
constexpr absl::string_view kFastCertSerial = "FA57000000000000000000000000000000000001";
constexpr absl::string_view kFastPubKeyId = "PUB_KEY_ID_0114232134912410000000000000000002";

// FastTestSigner
//
// SHA256withRSA signatures without an RSA private-key operation: the key is a
// 2048-bit modulus made of 32 primes of about 64 bits (worthless as a secret,
// fine as a test key), so a signature is 32 tiny exponentiations joined by the
// Chinese remainder theorem (microseconds; a real RSA-2048 signature
// costs ~1 ms under ASan, which held this target near 1,000 executions per
// second). Its public half is an ordinary RSA-2048 key with e = 65537: the
// gateway verifies with it exactly as with WeChat Pay's keys.
class FastTestSigner {
 public:
  // Makes a new key (once per process). Aborts when OpenSSL fails.
  FastTestSigner() : ctx_(BN_CTX_new()) {
    BN_CTX* ctx = ctx_.get();
    SslPtr<BIGNUM> e(BN_new());
    PALMGATE_FUZZ_CHECK(ctx != nullptr && e != nullptr && BN_set_word(e.get(), 65537) == 1);
    for (;;) {
      primes_.clear();
      SslPtr<BIGNUM> n(BN_new());
      BN_one(n.get());
      // 64-bit primes up to 32..96 bits short of 2048, then one prime that fills
      // the rest (the product has that size or one bit less: retry then).
      while (BN_num_bits(n.get()) < 2048 - 96) AddPrime(64, n.get(), ctx);
      AddPrime(2048 - BN_num_bits(n.get()), n.get(), ctx);
      if (BN_num_bits(n.get()) == 2048) {
        n_ = std::move(n);
        break;
      }
    }
    for (Prime& p : primes_) {
      SslPtr<BIGNUM> p1(BN_dup(p.p.get()));
      PALMGATE_FUZZ_CHECK(p1 != nullptr && BN_sub_word(p1.get(), 1) == 1);
      p.d.reset(BN_mod_inverse(nullptr, e.get(), p1.get(), ctx));  // e*d = 1 mod p-1
      // c = (n/p) * ((n/p)^-1 mod p): 1 mod p, 0 mod every other prime.
      SslPtr<BIGNUM> m(BN_new());
      SslPtr<BIGNUM> rem(BN_new());
      PALMGATE_FUZZ_CHECK(BN_div(m.get(), rem.get(), n_.get(), p.p.get(), ctx) == 1 && BN_is_zero(rem.get()));
      SslPtr<BIGNUM> inv(BN_mod_inverse(nullptr, m.get(), p.p.get(), ctx));
      p.mont.reset(BN_MONT_CTX_new());
      PALMGATE_FUZZ_CHECK(p.mont != nullptr && BN_MONT_CTX_set(p.mont.get(), p.p.get(), ctx) == 1);
      p.c.reset(BN_new());
      PALMGATE_FUZZ_CHECK(p.d != nullptr && inv != nullptr &&
                          BN_mod_mul(p.c.get(), m.get(), inv.get(), n_.get(), ctx) == 1);
    }
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    PALMGATE_FUZZ_CHECK(OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n_.get()) == 1 &&
                        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) == 1);
    OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld.get());
    SslPtr<EVP_PKEY_CTX> pctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
    EVP_PKEY* raw = nullptr;
    PALMGATE_FUZZ_CHECK(params != nullptr && pctx != nullptr && EVP_PKEY_fromdata_init(pctx.get()) == 1 &&
                        EVP_PKEY_fromdata(pctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) == 1);
    OSSL_PARAM_free(params);
    SslPtr<EVP_PKEY> key(raw);
    SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
    PALMGATE_FUZZ_CHECK(PEM_write_bio_PUBKEY(bio.get(), key.get()) == 1);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    public_pem_.assign(data, static_cast<size_t>(len));
  }

  // The public key, as SubjectPublicKeyInfo PEM.
  const std::string& public_pem() const { return public_pem_; }

  // Returns the RSASSA-PKCS1-v1_5 SHA-256 signature of `message` (256 bytes).
  // Not thread-safe (the fuzzer runs one input at a time).
  std::string Sign(absl::string_view message) const {
    // EMSA-PKCS1-v1_5 (RFC 8017 section 9.2): 00 01 FF..FF 00 DigestInfo(SHA-256) hash.
    static constexpr unsigned char kDigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
    unsigned char em[256];
    std::fill(em, em + sizeof(em), 0xff);
    em[0] = 0x00;
    em[1] = 0x01;
    unsigned char* tail = em + sizeof(em) - SHA256_DIGEST_LENGTH - sizeof(kDigestInfo);
    tail[-1] = 0x00;
    std::copy(kDigestInfo, kDigestInfo + sizeof(kDigestInfo), tail);
    SHA256(reinterpret_cast<const unsigned char*>(message.data()), message.size(), tail + sizeof(kDigestInfo));

    BN_CTX* ctx = ctx_.get();
    SslPtr<BIGNUM> m(BN_bin2bn(em, sizeof(em), nullptr));
    SslPtr<BIGNUM> s(BN_new());
    SslPtr<BIGNUM> part(BN_new());
    PALMGATE_FUZZ_CHECK(ctx != nullptr && m != nullptr && s != nullptr && part != nullptr);
    BN_zero(s.get());
    for (const Prime& p : primes_) {  // s = sum of (m^d_i mod p_i) * c_i  (mod n)
      PALMGATE_FUZZ_CHECK(BN_mod_exp_mont(part.get(), m.get(), p.d.get(), p.p.get(), ctx, p.mont.get()) == 1 &&
                          BN_mul(part.get(), part.get(), p.c.get(), ctx) == 1 &&
                          BN_add(s.get(), s.get(), part.get()) == 1);
    }
    PALMGATE_FUZZ_CHECK(BN_nnmod(s.get(), s.get(), n_.get(), ctx) == 1);
    std::string sig(256, '\0');
    PALMGATE_FUZZ_CHECK(BN_bn2binpad(s.get(), reinterpret_cast<unsigned char*>(sig.data()), 256) == 256);
    return sig;
  }

 private:
  struct Prime {
    SslPtr<BIGNUM> p;
    SslPtr<BIGNUM> d;  // e^-1 mod (p - 1)
    SslPtr<BIGNUM> c;  // the CRT coefficient of p modulo n
    MontPtr mont;      // Montgomery form of p, made once (it cost more than the exponentiation)
  };

  // Adds a new prime of `bits` bits (coprime to e - 1 = 65536 and to e) and multiplies it into `n`.
  void AddPrime(int bits, BIGNUM* n, BN_CTX* ctx) {
    for (;;) {
      SslPtr<BIGNUM> p(BN_new());
      PALMGATE_FUZZ_CHECK(BN_generate_prime_ex(p.get(), bits, 0, nullptr, nullptr, nullptr) == 1);
      SslPtr<BIGNUM> p1(BN_dup(p.get()));
      PALMGATE_FUZZ_CHECK(BN_sub_word(p1.get(), 1) == 1);
      if (BN_mod_word(p1.get(), 65537) == 0) continue;  // e must be invertible mod p-1
      bool repeated = false;
      for (const Prime& q : primes_) repeated |= BN_cmp(q.p.get(), p.get()) == 0;
      if (repeated) continue;
      PALMGATE_FUZZ_CHECK(BN_mul(n, n, p.get(), ctx) == 1);
      primes_.push_back({std::move(p), nullptr, nullptr, nullptr});
      return;
    }
  }

  BnCtxPtr ctx_;  // scratch space of Sign (and of the constructor)
  std::vector<Prime> primes_;
  SslPtr<BIGNUM> n_;
  std::string public_pem_;
};

struct TestKey {
  std::string serial;
  crypto::RsaPublicKey public_key;
  const FastTestSigner* signer;  // null: verify-only (the real vectors' keys)
};

struct Keys {
  FastTestSigner fast;
  std::vector<TestKey> keys;  // what this target verifies independently of the ring
  std::shared_ptr<const wechatpay::KeyRing> ring;
};

// Builds the keys once (LLVMFuzzerInitialize); the only private-key operation is
// the fast key's certificate, signed here by K3.
const Keys& GetKeys() {
  static const Keys* keys = [] {
    auto* k = new Keys();
    const std::string fast_pem = k->fast.public_pem();
    absl::StatusOr<crypto::RsaPublicKey> fast = crypto::RsaPublicKey::FromPem(fast_pem);
    PALMGATE_FUZZ_CHECK(fast.ok());
    absl::StatusOr<crypto::RsaPrivateKey> k3_private =
        crypto::RsaPrivateKey::FromPem(TestData("vectors/java_wechat_pay_private_key.pem"));
    PALMGATE_FUZZ_CHECK(k3_private.ok());
    crypto::CertificateSpec spec;
    spec.common_name = "palmgate fuzz fast test key";
    spec.serial_hex = std::string(kFastCertSerial);
    spec.not_before = kNow - absl::Hours(24);
    spec.not_after = kNow + absl::Hours(24 * 365);
    absl::StatusOr<std::string> fast_cert = crypto::IssueCertificate(spec, *fast, *k3_private, nullptr);
    PALMGATE_FUZZ_CHECK(fast_cert.ok());

    absl::StatusOr<crypto::Certificate> k3 = crypto::Certificate::FromPem(TestData("vectors/java_wechat_pay_certificate.pem"));
    absl::StatusOr<crypto::Certificate> k1 = crypto::Certificate::FromPem(TestData("vectors/go_cert.pem"));
    PALMGATE_FUZZ_CHECK(k3.ok() && k1.ok() && k3->serial() == kK3CertSerial && k1->serial() == kK1CertSerial);
    k->keys = {{std::string(kK3CertSerial), k3->public_key(), nullptr},
               {std::string(kPubKeyId), k3->public_key(), nullptr},
               {std::string(kK1CertSerial), k1->public_key(), nullptr},
               {std::string(kFastCertSerial), *fast, &k->fast},
               {std::string(kFastPubKeyId), *fast, &k->fast}};
    wechatpay::KeyRing::Builder b;
    PALMGATE_FUZZ_CHECK(b.AddCertificate(*k3).ok());
    PALMGATE_FUZZ_CHECK(b.AddPublicKeyPem(kPubKeyId, TestData("vectors/java_wechat_pay_public_key.pem")).ok());
    PALMGATE_FUZZ_CHECK(b.AddCertificate(*k1).ok());
    PALMGATE_FUZZ_CHECK(b.AddCertificatePem(*fast_cert).ok());
    PALMGATE_FUZZ_CHECK(b.AddPublicKeyPem(kFastPubKeyId, fast_pem).ok());
    auto ring = std::move(b).Build(kNow);
    PALMGATE_FUZZ_CHECK(ring.ok() && (*ring)->size() == 5);
    k->ring = *std::move(ring);
    // The fast signature verifies with OpenSSL's ordinary RSA verification.
    absl::StatusOr<bool> self_test = fast->VerifySha256("palmgate", k->fast.Sign("palmgate"));
    PALMGATE_FUZZ_CHECK(self_test.ok() && *self_test);
    return k;
  }();
  return *keys;
}

// The key a Wechatpay-Serial value names: a public key ID exactly; a
// certificate serial (hexadecimal) as a number, so in any letter case and with
// leading zeros (as the Java SDK compares them). Null when none.
const TestKey* FindKey(const Keys& keys, absl::string_view serial) {
  for (const TestKey& k : keys.keys) {
    if (k.serial == serial) return &k;
  }
  if (serial.empty() || absl::StartsWith(serial, "PUB_KEY_ID_")) return nullptr;
  for (char c : serial) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return nullptr;
  }
  std::string number = absl::AsciiStrToUpper(serial);
  number.erase(0, std::min(number.find_first_not_of('0'), number.size() - 1));
  for (const TestKey& k : keys.keys) {
    if (k.serial == number) return &k;
  }
  return nullptr;
}

bool IsDecimal(absl::string_view s) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Replaces every "@sign" signature with a real one. Returns true when the first
// Wechatpay-Signature (the one the validator reads) was replaced.
bool SignPlaceholders(HttpResponse* response, const Keys& keys) {
  const std::string message = wechatpay::BuildResponseVerifyMessage(
      response->headers.GetOrEmpty("Wechatpay-Timestamp"), response->headers.GetOrEmpty("Wechatpay-Nonce"),
      response->body);
  // The named key when this target can sign for it, else the fast key (the
  // signature then verifies with no key of the ring under that serial).
  const TestKey* named = FindKey(keys, response->headers.GetOrEmpty("Wechatpay-Serial"));
  const FastTestSigner& signer = named != nullptr && named->signer != nullptr ? *named->signer : keys.fast;
  wechatpay::HttpHeaders headers;
  bool first = true;
  bool first_signed = false;
  for (const auto& [name, value] : response->headers.fields()) {
    if (absl::EqualsIgnoreCase(name, "Wechatpay-Signature")) {
      if (value == "@sign") {
        headers.Add(name, crypto::Base64Encode(signer.Sign(message)));
        first_signed |= first;
      } else {
        headers.Add(name, value);
      }
      first = false;
    } else {
      headers.Add(name, value);
    }
  }
  response->headers = std::move(headers);
  return first_signed;
}

}  // namespace
}  // namespace palmgate::fuzz

// The keys are made before the first input, so that no run pays for them.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  palmgate::fuzz::GetKeys();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  const Keys& keys = GetKeys();
  std::optional<wechatpay::HttpResponse> parsed =
      ParseHttpText(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!parsed.has_value()) return -1;
  wechatpay::HttpResponse& response = *parsed;
  const bool signed_here = SignPlaceholders(&response, keys);

  absl::StatusOr<wechatpay::VerifiedResponse> verified = wechatpay::ValidateResponse(response, *keys.ring, kNow);

  const bool success_status = response.status >= 200 && response.status <= 299 && response.status != 202;
  const absl::string_view timestamp = response.headers.GetOrEmpty("Wechatpay-Timestamp");
  const absl::string_view nonce = response.headers.GetOrEmpty("Wechatpay-Nonce");
  const absl::string_view serial = response.headers.GetOrEmpty("Wechatpay-Serial");
  const absl::string_view signature = response.headers.GetOrEmpty("Wechatpay-Signature");
  int64_t ts = 0;
  const bool in_window = IsDecimal(timestamp) && absl::SimpleAtoi(timestamp, &ts) &&
                         absl::AbsDuration(absl::FromUnixSeconds(ts) - kNow) < absl::Seconds(300);

  if (signed_here && success_status && in_window && !nonce.empty()) {
    const TestKey* named = FindKey(keys, serial);
    if (named != nullptr && named->signer != nullptr) PALMGATE_FUZZ_CHECK(verified.ok());
  }

  if (!verified.ok()) {
    std::optional<wechatpay::UpstreamError> e = wechatpay::GetUpstreamError(verified.status());
    PALMGATE_FUZZ_CHECK(e.has_value() && e->reason != wechatpay::ErrorReason::kUnspecified);
    PALMGATE_FUZZ_CHECK(e->http_status == response.status);
    if (success_status) PALMGATE_FUZZ_CHECK(verified.status().code() == absl::StatusCode::kInternal);
    const grpc::Status converted = service::ToGrpcStatus(verified.status());
    google::rpc::Status rich;
    PALMGATE_FUZZ_CHECK(rich.ParseFromString(converted.error_details()) && IsValidUtf8(rich.message()));
    return 0;
  }

  // Accepted: check it independently of the key ring.
  PALMGATE_FUZZ_CHECK(success_status);
  PALMGATE_FUZZ_CHECK(!nonce.empty() && !serial.empty() && !signature.empty());
  PALMGATE_FUZZ_CHECK(in_window);
  absl::StatusOr<std::string> raw = crypto::Base64Decode(signature);
  PALMGATE_FUZZ_CHECK(raw.ok());
  const std::string message = absl::StrCat(timestamp, "\n", nonce, "\n", response.body, "\n");
  bool verifies_as_named = false;
  for (const TestKey& k : keys.keys) {
    if (k.serial != verified->serial) continue;
    absl::StatusOr<bool> ok = k.public_key.VerifySha256(message, *raw);
    verifies_as_named |= ok.ok() && *ok;
  }
  PALMGATE_FUZZ_CHECK(verifies_as_named);

  absl::StatusOr<wechatpay::AuthorizationResult> result =
      wechatpay::ParseAuthorizationBody(response.body, kOpenid, kOrganizationId);
  if (result.ok()) {
    PALMGATE_FUZZ_CHECK(result->openid == kOpenid && !result->state.empty());
    PALMGATE_FUZZ_CHECK(result->organization_id.empty() || result->organization_id == kOrganizationId);
    PALMGATE_FUZZ_CHECK(!result->authorize_time.has_value() || !result->authorize_time_raw.empty());
    result->request_id = verified->request_id;
    palmgate::v1::Authorization answer;
    service::ToAuthorization(*result, &answer);
    std::string wire;
    PALMGATE_FUZZ_CHECK(answer.SerializeToString(&wire));
    palmgate::v1::Authorization back;
    PALMGATE_FUZZ_CHECK(back.ParseFromString(wire) && back.SerializeAsString() == wire);
  } else {
    PALMGATE_FUZZ_CHECK(wechatpay::GetReason(result.status()) == wechatpay::ErrorReason::kUpstreamMalformedResponse);
  }
  return 0;
}
