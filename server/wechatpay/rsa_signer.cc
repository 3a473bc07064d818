#include "server/wechatpay/rsa_signer.h"

#include <time.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/crypto/base64.h"
#include "server/crypto/secret.h"

namespace palmgate::wechatpay {
namespace {

std::atomic<int64_t> signatures{0};
std::atomic<int64_t> signing_cpu_ns{0};

int64_t ThreadCpuNanos() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

RsaSha256Signer::Totals RsaSha256Signer::ProcessTotals() {
  return {signatures.load(std::memory_order_relaxed),
          absl::Nanoseconds(signing_cpu_ns.load(std::memory_order_relaxed))};
}

absl::StatusOr<std::unique_ptr<RsaSha256Signer>> RsaSha256Signer::FromPemFile(const std::string& path) {
  // The PEM copy is wiped when `pem` goes: the key then lives in OpenSSL's memory only.
  PALMGATE_ASSIGN_OR_RETURN(crypto::SecretString pem, crypto::ReadSecretFile(path));
  absl::StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::FromPem(pem.view());
  if (!key.ok()) {
    return absl::Status(key.status().code(), absl::StrCat("\"", path, "\": ", key.status().message()));
  }
  return std::make_unique<RsaSha256Signer>(*std::move(key));
}

absl::StatusOr<std::string> RsaSha256Signer::Sign(absl::string_view message) const {
  const int64_t start = ThreadCpuNanos();
  absl::StatusOr<std::string> signed_raw = key_.SignSha256(message);
  signing_cpu_ns.fetch_add(ThreadCpuNanos() - start, std::memory_order_relaxed);
  signatures.fetch_add(1, std::memory_order_relaxed);
  PALMGATE_ASSIGN_OR_RETURN(std::string raw, std::move(signed_raw));
  return crypto::Base64Encode(raw);
}

}  // namespace palmgate::wechatpay
