// Fuzz target: PEM and key loading (RsaPrivateKey::FromPem for the merchant
// key, as its two steps ParsePemWithoutConsistencyCheck and CheckConsistency;
// RsaPublicKey::FromPem and Certificate::FromPem for WeChat Pay's keys;
// KeyRing::Builder over both).
//
// Input, by its first byte: 'k' private key, 'p' public key, 'c' certificate,
// 'r' key ring (the rest as public key and as certificate); then the PEM text.
//
// Invariants:
//   - accepted keys are RSA-2048; they serialise and parse back to an equal
//     key; a private key that passes FromPem's consistency check signs, and the
//     signature verifies with its public half. The private-key operations (the
//     pairwise check, ~40 ms under ASan, and the signature) run once per
//     distinct private key, for the first kMaxCheckedKeys of them: each input
//     is parsed with ParsePemWithoutConsistencyCheck (FromPem = that + the
//     check), so the per-input path holds no private-key operation. Without
//     the cap a mutated integer inside a valid key (a distinct, inconsistent
//     key) would cost a pairwise check per input;
//   - an accepted certificate has an upper-case hexadecimal serial of whole
//     bytes, and its PEM parses back to the same serial and key;
//   - a key ring finds each key it holds by its serial (a certificate serial in
//     any letter case);
//   - nothing ever prompts for a passphrase (an encrypted key fails).
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "server/crypto/rsa.h"
#include "server/wechatpay/key_ring.h"
#include "tests/fuzz/fuzz_util.h"

namespace palmgate::fuzz {
namespace {

// Distinct private keys that get the private-key checks (see the invariants).
constexpr size_t kMaxCheckedKeys = 64;

void CheckRsa2048(EVP_PKEY* key) {
  PALMGATE_FUZZ_CHECK(EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA && EVP_PKEY_get_bits(key) == 2048);
}

bool IsSerialSpelling(absl::string_view s) {
  if (s.empty() || s.size() % 2 != 0) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && !(c >= 'A' && c <= 'F')) return false;
  }
  return true;
}

}  // namespace
}  // namespace palmgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace palmgate;        // NOLINT
  using namespace palmgate::fuzz;  // NOLINT
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return -1;
  const char mode = in[0];
  in.remove_prefix(1);
  switch (mode) {
    case 'k': {
      absl::StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::ParsePemWithoutConsistencyCheck(in);
      if (!key.ok()) {
        PALMGATE_FUZZ_CHECK(key.status().code() == absl::StatusCode::kInvalidArgument);
        return 0;
      }
      CheckRsa2048(key->get());
      const std::string pkcs8 = key->ToPkcs8Pem();
      absl::StatusOr<crypto::RsaPrivateKey> again = crypto::RsaPrivateKey::ParsePemWithoutConsistencyCheck(pkcs8);
      PALMGATE_FUZZ_CHECK(again.ok() && again->PublicKey().Equals(key->PublicKey()));
      static auto* checked = new std::set<std::string>();  // PKCS#8 PEM of each key checked below
      if (checked->size() >= kMaxCheckedKeys || !checked->insert(pkcs8).second) return 0;
      if (absl::Status consistent = key->CheckConsistency(); !consistent.ok()) {
        PALMGATE_FUZZ_CHECK(consistent.code() == absl::StatusCode::kInvalidArgument);
        return 0;
      }
      absl::StatusOr<std::string> sig = key->SignSha256("palmgate");
      PALMGATE_FUZZ_CHECK(sig.ok());
      absl::StatusOr<bool> valid = key->PublicKey().VerifySha256("palmgate", *sig);
      PALMGATE_FUZZ_CHECK(valid.ok() && *valid);
      return 0;
    }
    case 'p': {
      absl::StatusOr<crypto::RsaPublicKey> key = crypto::RsaPublicKey::FromPem(in);
      if (!key.ok()) {
        PALMGATE_FUZZ_CHECK(key.status().code() == absl::StatusCode::kInvalidArgument);
        return 0;
      }
      CheckRsa2048(key->get());
      absl::StatusOr<crypto::RsaPublicKey> again = crypto::RsaPublicKey::FromPem(key->ToPem());
      PALMGATE_FUZZ_CHECK(again.ok() && again->Equals(*key));
      return 0;
    }
    case 'c': {
      absl::StatusOr<crypto::Certificate> cert = crypto::Certificate::FromPem(in);
      if (!cert.ok()) {
        PALMGATE_FUZZ_CHECK(cert.status().code() == absl::StatusCode::kInvalidArgument);
        return 0;
      }
      CheckRsa2048(cert->public_key().get());
      PALMGATE_FUZZ_CHECK(IsSerialSpelling(cert->serial()));
      absl::StatusOr<crypto::Certificate> again = crypto::Certificate::FromPem(cert->pem());
      PALMGATE_FUZZ_CHECK(again.ok() && again->serial() == cert->serial() &&
                          again->public_key().Equals(cert->public_key()));
      return 0;
    }
    case 'r': {
      wechatpay::KeyRing::Builder b;
      const bool public_ok = b.AddPublicKeyPem(kPubKeyId, in).ok();
      std::string cert_serial;
      if (absl::StatusOr<crypto::Certificate> cert = crypto::Certificate::FromPem(in); cert.ok()) {
        cert_serial = cert->serial();
        PALMGATE_FUZZ_CHECK(b.AddCertificate(*cert).ok());
      }
      absl::StatusOr<std::shared_ptr<const wechatpay::KeyRing>> ring = std::move(b).Build(kNow);
      if (!ring.ok()) {
        PALMGATE_FUZZ_CHECK(ring.status().code() == absl::StatusCode::kFailedPrecondition);
        return 0;
      }
      if (public_ok) PALMGATE_FUZZ_CHECK((*ring)->Find(kPubKeyId) != nullptr);
      for (const wechatpay::VerificationKey& k : (*ring)->keys()) {
        PALMGATE_FUZZ_CHECK((*ring)->Find(k.serial) == &k);
        if (k.kind == wechatpay::VerificationKey::Kind::kPlatformCertificate) {  // case-insensitive hex
          PALMGATE_FUZZ_CHECK((*ring)->Find(absl::AsciiStrToLower(k.serial)) == &k);
        }
      }
      PALMGATE_FUZZ_CHECK((*ring)->Find((*ring)->preferred_serial()) != nullptr);
      return 0;
    }
    default:
      return -1;
  }
}
