#include "server/wechatpay/key_ring.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace palmgate::wechatpay {
namespace {

constexpr absl::string_view kPublicKeyIdPrefix = "PUB_KEY_ID_";

// Certificate serials are hexadecimal numbers (the Java SDK compares them as
// integers); public key ids are opaque strings.
std::string Normalise(absl::string_view serial) {
  const bool hex = std::all_of(serial.begin(), serial.end(),
                               [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); });
  if (!hex || absl::StartsWith(serial, kPublicKeyIdPrefix)) return std::string(serial);
  std::string s = absl::AsciiStrToUpper(serial);
  size_t zeros = 0;
  while (zeros + 1 < s.size() && s[zeros] == '0') ++zeros;
  return s.substr(zeros);
}

}  // namespace

absl::Status KeyRing::Builder::AddPublicKeyPem(absl::string_view id, absl::string_view pem) {
  if (id.empty()) return absl::InvalidArgumentError("wechatpay public key: empty key id");
  absl::StatusOr<crypto::RsaPublicKey> key = crypto::RsaPublicKey::FromPem(pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("wechatpay public key \"", id, "\": ", key.status().message()));
  }
  for (const auto& k : keys_) {
    if (Normalise(k.serial) == Normalise(id)) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate key id \"", id, "\""));
    }
  }
  keys_.push_back({VerificationKey::Kind::kPublicKey, std::string(id), *std::move(key)});
  return absl::OkStatus();
}

absl::Status KeyRing::Builder::AddCertificate(const crypto::Certificate& certificate) {
  for (const auto& k : keys_) {
    if (Normalise(k.serial) == Normalise(certificate.serial())) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate certificate serial ", certificate.serial()));
    }
  }
  keys_.push_back({VerificationKey::Kind::kPlatformCertificate, certificate.serial(), certificate.public_key(),
                   certificate.not_before(), certificate.not_after()});
  return absl::OkStatus();
}

absl::Status KeyRing::Builder::AddCertificatePem(absl::string_view pem) {
  PALMGATE_ASSIGN_OR_RETURN(crypto::Certificate cert, crypto::Certificate::FromPem(pem));
  return AddCertificate(cert);
}

absl::StatusOr<std::shared_ptr<const KeyRing>> KeyRing::Builder::Build(absl::Time now) && {
  std::shared_ptr<KeyRing> ring(new KeyRing());
  const VerificationKey* newest_cert = nullptr;
  const VerificationKey* public_key = nullptr;
  for (auto& k : keys_) {
    if (k.not_after <= now) continue;  // expired: WeChat Pay no longer signs with it
    ring->keys_.push_back(std::move(k));
  }
  for (size_t i = 0; i < ring->keys_.size(); ++i) {
    const VerificationKey& k = ring->keys_[i];
    ring->index_[Normalise(k.serial)] = i;
    if (k.kind == VerificationKey::Kind::kPublicKey) {
      if (public_key == nullptr) public_key = &k;
    } else if (k.not_before <= now && (newest_cert == nullptr || k.not_before > newest_cert->not_before)) {
      newest_cert = &k;
    }
  }
  if (ring->keys_.empty()) {
    return absl::FailedPreconditionError("no usable WeChat Pay verification key (none configured, or all expired)");
  }
  const VerificationKey* preferred = public_key != nullptr ? public_key : newest_cert;
  if (preferred == nullptr) preferred = &ring->keys_.front();  // only not-yet-valid certificates
  ring->preferred_serial_ = preferred->serial;
  return std::shared_ptr<const KeyRing>(std::move(ring));
}

const VerificationKey* KeyRing::Find(absl::string_view serial) const {
  if (serial.empty()) return nullptr;
  auto it = index_.find(Normalise(serial));
  return it == index_.end() ? nullptr : &keys_[it->second];
}

std::vector<std::string> KeyRing::Serials() const {
  std::vector<std::string> out;
  for (const auto& k : keys_) out.push_back(k.serial);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace palmgate::wechatpay
