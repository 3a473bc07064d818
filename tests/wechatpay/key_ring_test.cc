#include "server/wechatpay/key_ring.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_matchers.h"
#include "tests/testing/testdata.h"

namespace palmgate::wechatpay {
namespace {

using ::palmgate::testing::IsOk;
using ::palmgate::testing::ReadTestData;
using ::palmgate::testing::StatusIs;
using ::testing::ElementsAre;

crypto::Certificate IssueTestCertificate(const crypto::RsaPrivateKey& key, absl::Time not_before, absl::Time not_after) {
  crypto::CertificateSpec spec;
  spec.common_name = "platform";
  spec.not_before = not_before;
  spec.not_after = not_after;
  auto pem = crypto::IssueCertificate(spec, key.PublicKey(), key, nullptr);
  EXPECT_THAT(pem, IsOk());
  auto cert = crypto::Certificate::FromPem(*pem);
  EXPECT_THAT(cert, IsOk());
  return *cert;
}

TEST(KeyRingTest, EmptyRingIsRefused) {
  EXPECT_THAT(KeyRing::Builder().Build(absl::Now()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(KeyRingTest, RejectsBadPublicKeysAndDuplicates) {
  KeyRing::Builder b;
  EXPECT_THAT(b.AddPublicKeyPem("", ReadTestData("vectors/go_pub.pem")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(b.AddPublicKeyPem("PUB_KEY_ID_1", ReadTestData("vectors/go_cert.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(b.AddPublicKeyPem("PUB_KEY_ID_1", ReadTestData("keys/rsa1024_pub.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(b.AddPublicKeyPem("PUB_KEY_ID_1", ReadTestData("vectors/go_pub.pem")), IsOk());
  EXPECT_THAT(b.AddPublicKeyPem("PUB_KEY_ID_1", ReadTestData("vectors/go_pub.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(b.AddCertificatePem(ReadTestData("vectors/go_cert.pem")), IsOk());
  EXPECT_THAT(b.AddCertificatePem(ReadTestData("vectors/go_cert.pem")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(b.AddCertificatePem(ReadTestData("vectors/go_pub.pem")), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(KeyRingTest, DropsExpiredCertificatesAndPrefersNewestValid) {
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  auto key = crypto::RsaPrivateKey::Generate();
  ASSERT_THAT(key, IsOk());
  auto expired = IssueTestCertificate(*key, now - absl::Hours(48), now - absl::Hours(1));
  auto old_valid = IssueTestCertificate(*key, now - absl::Hours(48), now + absl::Hours(48));
  auto new_valid = IssueTestCertificate(*key, now - absl::Hours(2), now + absl::Hours(48));
  auto future = IssueTestCertificate(*key, now + absl::Hours(24), now + absl::Hours(96));
  KeyRing::Builder b;
  for (const auto* c : {&expired, &old_valid, &new_valid, &future}) ASSERT_THAT(b.AddCertificate(*c), IsOk());
  auto ring = std::move(b).Build(now);
  ASSERT_THAT(ring, IsOk());
  EXPECT_EQ((*ring)->size(), 3u);
  EXPECT_EQ((*ring)->Find(expired.serial()), nullptr);
  EXPECT_NE((*ring)->Find(future.serial()), nullptr);  // kept for when WeChat Pay starts using it
  EXPECT_EQ((*ring)->preferred_serial(), new_valid.serial());
  EXPECT_EQ((*ring)->Find(""), nullptr);
}

TEST(KeyRingTest, PublicKeyIsPreferredInMixedMode) {
  KeyRing::Builder b;
  ASSERT_THAT(b.AddCertificatePem(ReadTestData("vectors/go_cert.pem")), IsOk());
  ASSERT_THAT(b.AddPublicKeyPem("PUB_KEY_ID_0114", ReadTestData("vectors/java_wechat_pay_public_key.pem")), IsOk());
  auto ring = std::move(b).Build(absl::FromUnixSeconds(1700000000));
  ASSERT_THAT(ring, IsOk());
  EXPECT_EQ((*ring)->preferred_serial(), "PUB_KEY_ID_0114");
  EXPECT_THAT((*ring)->Serials(), ElementsAre("F5765756002FDD77", "PUB_KEY_ID_0114"));
  // Public key ids are opaque: no case folding.
  EXPECT_EQ((*ring)->Find("pub_key_id_0114"), nullptr);
  EXPECT_NE((*ring)->Find("f5765756002fdd77"), nullptr);
  EXPECT_NE((*ring)->Find("00F5765756002FDD77"), nullptr);
}

TEST(SwappableKeyStoreTest, ReadersAlwaysSeeACompleteRing) {
  auto build = [](const char* id) {
    KeyRing::Builder b;
    EXPECT_THAT(b.AddPublicKeyPem(id, ReadTestData("vectors/go_pub.pem")), IsOk());
    return *std::move(b).Build(absl::Now());
  };
  auto a = build("PUB_KEY_ID_A");
  auto b = build("PUB_KEY_ID_B");
  SwappableKeyStore store(a);
  std::atomic<bool> stop{false};
  std::atomic<int> empty{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto ring = store.Current();
        if (ring == nullptr || ring->size() != 1 ||
            (ring->Find("PUB_KEY_ID_A") == nullptr && ring->Find("PUB_KEY_ID_B") == nullptr)) {
          empty.fetch_add(1);
        }
      }
    });
  }
  for (int i = 0; i < 20000; ++i) store.Replace(i % 2 == 0 ? b : a);
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(empty.load(), 0);
}

}  // namespace
}  // namespace palmgate::wechatpay
