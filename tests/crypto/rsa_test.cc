#include "server/crypto/rsa.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "server/crypto/base64.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::crypto {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::IsOkAndHolds;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::testing::HasSubstr;

// vectors.md V1: wechatpay-go utils/sign_test.go.
constexpr char kV1Signature[] =
    "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1Rky"
    "aII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwN"
    "cQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD"
    "27EpSQEqA8bX9+8m1rLg==";

TEST(RsaPrivateKeyTest, SignsV1KnownAnswer) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey key, RsaPrivateKey::FromPem(ReadTestData("vectors/go_key.pem")));
  PALMGATE_ASSERT_OK_AND_ASSIGN(std::string sig, key.SignSha256("source"));
  EXPECT_EQ(Base64Encode(sig), kV1Signature);
}

TEST(RsaPrivateKeyTest, Pkcs1AndPkcs8GiveTheSameSignature) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey pkcs1, RsaPrivateKey::FromPem(ReadTestData("keys/go_key_pkcs1.pem")));
  PALMGATE_ASSERT_OK_AND_ASSIGN(std::string sig, pkcs1.SignSha256("source"));
  EXPECT_EQ(Base64Encode(sig), kV1Signature);
}

TEST(RsaPublicKeyTest, VerifiesV1WithPublicKeyAndCertificate) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPublicKey pub, RsaPublicKey::FromPem(ReadTestData("vectors/go_pub.pem")));
  PALMGATE_ASSERT_OK_AND_ASSIGN(Certificate cert, Certificate::FromPem(ReadTestData("vectors/go_cert.pem")));
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPublicKey pkcs1, RsaPublicKey::FromPem(ReadTestData("keys/go_pub_pkcs1.pem")));
  EXPECT_EQ(cert.serial(), "F5765756002FDD77");
  EXPECT_TRUE(pub.Equals(cert.public_key()));
  EXPECT_TRUE(pub.Equals(pkcs1));
  const std::string sig = *Base64Decode(kV1Signature);
  const RsaPublicKey* keys[] = {&pub, &cert.public_key(), &pkcs1};
  for (const RsaPublicKey* k : keys) {
    EXPECT_THAT(k->VerifySha256("source", sig), IsOkAndHolds(true));
    EXPECT_THAT(k->VerifySha256("wrong source", sig), IsOkAndHolds(false));
    EXPECT_THAT(k->VerifySha256("", sig), IsOkAndHolds(false));
    EXPECT_THAT(k->VerifySha256("source", ""), IsOkAndHolds(false));
  }
}

TEST(RsaPublicKeyTest, RejectsEveryFlippedBitAndTruncation) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPublicKey pub, RsaPublicKey::FromPem(ReadTestData("vectors/go_pub.pem")));
  const std::string sig = *Base64Decode(kV1Signature);
  for (size_t byte = 0; byte < sig.size(); byte += 17) {
    for (int bit = 0; bit < 8; bit += 3) {
      std::string bad = sig;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      EXPECT_THAT(pub.VerifySha256("source", bad), IsOkAndHolds(false)) << byte << ":" << bit;
    }
  }
  EXPECT_THAT(pub.VerifySha256("source", sig.substr(0, sig.size() - 1)), IsOkAndHolds(false));
  EXPECT_THAT(pub.VerifySha256("source", sig + "x"), IsOkAndHolds(false));
}

TEST(RsaPrivateKeyTest, GeneratedKeyRoundTrips) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey key, RsaPrivateKey::Generate());
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey again, RsaPrivateKey::FromPem(key.ToPkcs8Pem()));
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPublicKey pub, RsaPublicKey::FromPem(key.PublicKey().ToPem()));
  PALMGATE_ASSERT_OK_AND_ASSIGN(std::string sig, again.SignSha256("palmgate"));
  EXPECT_THAT(pub.VerifySha256("palmgate", sig), IsOkAndHolds(true));
}

TEST(RsaPrivateKeyTest, RefusesWhatIsNotAnRsa2048PrivateKey) {
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("keys/rsa1024_key.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA-1024")));
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("keys/rsa3072_key.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA-3072")));
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("keys/ec_key.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an RSA key")));
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("vectors/go_cert.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("found a certificate")));
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("vectors/go_pub.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("found a public key")));
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("keys/go_key_encrypted.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("encrypted")));
  EXPECT_THAT(RsaPrivateKey::FromPem("hello"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PEM private key")));
  EXPECT_THAT(RsaPrivateKey::FromPem(""), StatusIs(absl::StatusCode::kInvalidArgument));
  std::string truncated = ReadTestData("vectors/go_key.pem");
  truncated.resize(truncated.size() / 2);
  EXPECT_THAT(RsaPrivateKey::FromPem(truncated), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RsaPublicKeyTest, RefusesWhatIsNotAnRsa2048PublicKey) {
  EXPECT_THAT(RsaPublicKey::FromPem(ReadTestData("keys/rsa1024_pub.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA-1024")));
  EXPECT_THAT(RsaPublicKey::FromPem(ReadTestData("keys/ec_pub.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an RSA key")));
  EXPECT_THAT(RsaPublicKey::FromPem(ReadTestData("vectors/go_cert.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("found a certificate")));
  EXPECT_THAT(RsaPublicKey::FromPem(ReadTestData("vectors/go_key.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("found a private key")));
}

TEST(CertificateTest, ReadsSerialValidityAndKey) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(Certificate cert,
                                Certificate::FromPem(ReadTestData("vectors/java_wechat_pay_certificate.pem")));
  EXPECT_EQ(cert.serial(), "440024045C4A427599D09BB4E3DE0279F2E813FD");
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPublicKey pub,
                                RsaPublicKey::FromPem(ReadTestData("vectors/java_wechat_pay_public_key.pem")));
  EXPECT_TRUE(cert.public_key().Equals(pub));
  EXPECT_LT(cert.not_before(), cert.not_after());
  EXPECT_EQ(absl::FormatTime("%Y-%m-%d", cert.not_before(), absl::UTCTimeZone()), "2022-05-10");
  EXPECT_TRUE(cert.is_ca());  // the SDK test certificate is self-signed with CA:TRUE
  PALMGATE_ASSERT_OK_AND_ASSIGN(Certificate merchant,
                                Certificate::FromPem(ReadTestData("vectors/java_merchant_certificate.pem")));
  EXPECT_EQ(merchant.serial(), "5F1C72E2A8931B72A2E13AF8DEE92471EB397115");
}

TEST(CertificateTest, IssuesACertificateChain) {
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey ca_key, RsaPrivateKey::Generate());
  CertificateSpec ca_spec;
  ca_spec.common_name = "test CA";
  ca_spec.is_ca = true;
  ca_spec.not_before = absl::Now() - absl::Hours(1);
  ca_spec.not_after = absl::Now() + absl::Hours(24);
  PALMGATE_ASSERT_OK_AND_ASSIGN(std::string ca_pem, IssueCertificate(ca_spec, ca_key.PublicKey(), ca_key, nullptr));
  PALMGATE_ASSERT_OK_AND_ASSIGN(Certificate ca, Certificate::FromPem(ca_pem));
  EXPECT_TRUE(ca.is_ca());
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey leaf_key, RsaPrivateKey::Generate());
  CertificateSpec leaf_spec = ca_spec;
  leaf_spec.is_ca = false;
  leaf_spec.common_name = "leaf";
  leaf_spec.serial_hex = "00ABCDEF0123";
  PALMGATE_ASSERT_OK_AND_ASSIGN(std::string leaf_pem, IssueCertificate(leaf_spec, leaf_key.PublicKey(), ca_key, &ca));
  PALMGATE_ASSERT_OK_AND_ASSIGN(Certificate leaf, Certificate::FromPem(leaf_pem));
  EXPECT_EQ(leaf.serial(), "ABCDEF0123");
  EXPECT_FALSE(leaf.is_ca());
  EXPECT_TRUE(leaf.public_key().Equals(leaf_key.PublicKey()));
  EXPECT_EQ(ca.serial().size(), 40u);
}

// Found by fuzzing (tests/fuzz/corpus/pem_keys/crash-inconsistent-private-key):
// a PKCS#1 key whose modulus is not p*q was accepted, and would have signed
// every request wrongly.
TEST(RsaPrivateKeyTest, RefusesInconsistentKey) {
  std::string pem = ReadTestData("keys/go_key_pkcs1.pem");
  ASSERT_THAT(RsaPrivateKey::FromPem(pem), IsOk());
  const std::string modulus_part = "Gtjcquw4HNxJQUOmDeJf2vg6byms9RUipiq4SzbJKqJFlUpbuIPDpSpWz10PYmyC";
  const size_t at = pem.find(modulus_part);
  ASSERT_NE(at, std::string::npos);
  pem.replace(at, modulus_part.size(), "Gtjcquw4HNxJQUOmDeJf2vg6byms9RUipiBNlKIAwwHICEgnj1PDpSpWz10PYmyC");
  EXPECT_THAT(RsaPrivateKey::FromPem(pem), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inconsistent")));
}

// Found by fuzzing (tests/fuzz/corpus/pem_keys/crash-negative-certificate-serial):
// a certificate with a negative serial was accepted with the serial "-6EEF..."
// (then "0-6EEF...", padded to whole bytes), which no key ring lookup by
// Wechatpay-Serial finds in other letter case.
TEST(CertificateTest, RefusesNegativeSerial) {
  absl::StatusOr<RsaPrivateKey> key = RsaPrivateKey::FromPem(ReadTestData("keys/go_key_pkcs1.pem"));
  ASSERT_THAT(key, IsOk());
  CertificateSpec spec;
  spec.common_name = "negative serial";
  spec.not_before = absl::FromUnixSeconds(1700000000);
  spec.not_after = spec.not_before + absl::Hours(24);
  spec.serial_hex = "6EEFFEEBF3B5BD8A";
  absl::StatusOr<std::string> positive = IssueCertificate(spec, key->PublicKey(), *key, nullptr);
  ASSERT_THAT(positive, IsOk());
  ASSERT_THAT(Certificate::FromPem(*positive), IsOk());
  spec.serial_hex = "-6EEFFEEBF3B5BD8A";
  absl::StatusOr<std::string> negative = IssueCertificate(spec, key->PublicKey(), *key, nullptr);
  ASSERT_THAT(negative, IsOk());
  EXPECT_THAT(Certificate::FromPem(*negative), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
}


// The PEM text of `pem` with the last base64 digit before the padding changed
// in a bit that decoding drops (non-canonical base64: same DER, other text).
std::string WithNonCanonicalPadding(std::string pem) {
  constexpr absl::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const size_t pad = pem.find('=');
  if (pad == std::string::npos || pad == 0) return "";
  pem[pad - 1] = kAlphabet[kAlphabet.find(pem[pad - 1]) ^ 1];
  return pem;
}

// The armor around a key is read strictly (server/crypto/pem.h) before any
// byte reaches OpenSSL; OpenSSL's own PEM reader took the first of two keys and
// ignored the bits that canonical base64 leaves zero.
TEST(RsaPrivateKeyTest, RefusesLooseArmor) {
  const std::string pem = ReadTestData("keys/go_key_pkcs1.pem");
  const std::string other = ReadTestData("vectors/go_key.pem");
  ASSERT_THAT(RsaPrivateKey::FromPem(pem), IsOk());
  EXPECT_THAT(RsaPrivateKey::FromPem(pem + other),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PEM private key")));
  const std::string non_canonical = WithNonCanonicalPadding(pem);
  ASSERT_FALSE(non_canonical.empty());
  EXPECT_THAT(RsaPrivateKey::FromPem(non_canonical), StatusIs(absl::StatusCode::kInvalidArgument));
  std::string header = pem;
  header.insert(header.find('\n') + 1, "Comment: a header line\n");
  EXPECT_THAT(RsaPrivateKey::FromPem(header), StatusIs(absl::StatusCode::kInvalidArgument));
  std::string mismatched = pem;
  mismatched.replace(mismatched.find("END RSA PRIVATE KEY"), 19, "END PRIVATE KEY");
  EXPECT_THAT(RsaPrivateKey::FromPem(mismatched), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RsaPrivateKey::FromPem(ReadTestData("keys/rsa3072_key.pem") + "\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA-3072")));
}

// What RFC 7468 allows around the block still loads: explanatory text, a
// certificate in the same file, CR LF line ends.
TEST(RsaPrivateKeyTest, AcceptsTextAndOtherBlocksAroundTheKey) {
  const std::string pem = ReadTestData("keys/go_key_pkcs1.pem");
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey key, RsaPrivateKey::FromPem(pem));
  PALMGATE_ASSERT_OK_AND_ASSIGN(
      RsaPrivateKey with_cert,
      RsaPrivateKey::FromPem(absl::StrCat("Bag Attributes\n", ReadTestData("vectors/go_cert.pem"), pem, "\n")));
  EXPECT_TRUE(with_cert.PublicKey().Equals(key.PublicKey()));
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey crlf, RsaPrivateKey::FromPem(absl::StrReplaceAll(pem, {{"\n", "\r\n"}})));
  EXPECT_TRUE(crlf.PublicKey().Equals(key.PublicKey()));
}

TEST(RsaPublicKeyTest, RefusesLooseArmor) {
  const std::string pem = ReadTestData("vectors/go_pub.pem");
  ASSERT_THAT(RsaPublicKey::FromPem(pem), IsOk());
  EXPECT_THAT(RsaPublicKey::FromPem(pem + ReadTestData("keys/rsa1024_pub.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string non_canonical = WithNonCanonicalPadding(ReadTestData("keys/ec_pub.pem"));
  ASSERT_FALSE(non_canonical.empty());
  EXPECT_THAT(RsaPublicKey::FromPem(non_canonical),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PEM public key")));
}

// FromPem = ParsePemWithoutConsistencyCheck + CheckConsistency; the fuzz target
// uses the parts so that its per-input path holds no private-key operation.
TEST(RsaPrivateKeyTest, ConsistencyIsASeparateCheck) {
  std::string pem = ReadTestData("keys/go_key_pkcs1.pem");
  const std::string modulus_part = "Gtjcquw4HNxJQUOmDeJf2vg6byms9RUipiq4SzbJKqJFlUpbuIPDpSpWz10PYmyC";
  pem.replace(pem.find(modulus_part), modulus_part.size(),
              "Gtjcquw4HNxJQUOmDeJf2vg6byms9RUipiBNlKIAwwHICEgnj1PDpSpWz10PYmyC");
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey key, RsaPrivateKey::ParsePemWithoutConsistencyCheck(pem));
  EXPECT_THAT(key.CheckConsistency(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inconsistent")));
  PALMGATE_ASSERT_OK_AND_ASSIGN(RsaPrivateKey good,
                                RsaPrivateKey::ParsePemWithoutConsistencyCheck(ReadTestData("vectors/go_key.pem")));
  EXPECT_THAT(good.CheckConsistency(), IsOk());
}

}  // namespace
}  // namespace palmgate::crypto
