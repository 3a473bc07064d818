// File: server/wechatpay/key_ring.h
//
// The verification keys of WeChat Pay, by serial: platform certificates
// (serial read from the certificate) and WeChat Pay public keys
// (`PUB_KEY_ID_…` → SPKI public key), both at once during WeChat Pay's
// migration ("mixed mode", wechatpay-v3.md 4.4–4.5).
//
// A KeyRing is an immutable snapshot; a KeyStore hands out the current one and
// swaps it atomically (copy-on-write), so that a verification in progress keeps
// the snapshot it started with and a refresh never leaves an empty window.
//
// Example:
//   KeyRing::Builder b;
//   PALMGATE_RETURN_IF_ERROR(b.AddPublicKeyPem("PUB_KEY_ID_0114…", pem));
//   PALMGATE_ASSIGN_OR_RETURN(std::shared_ptr<const KeyRing> ring, b.Build(clock.Now()));
#ifndef PALMGATE_SERVER_WECHATPAY_KEY_RING_H_
#define PALMGATE_SERVER_WECHATPAY_KEY_RING_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/swappable.h"
#include "server/crypto/rsa.h"

namespace palmgate::wechatpay {

// VerificationKey
//
// One key WeChat Pay may sign responses with.
struct VerificationKey {
  enum class Kind { kPublicKey, kPlatformCertificate };
  Kind kind;
  std::string serial;  // "PUB_KEY_ID_…" or the certificate serial (upper-case hex)
  crypto::RsaPublicKey key;
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfiniteFuture();
};

// KeyRing
//
// Immutable; thread-safe.
class KeyRing {
 public:
  class Builder {
   public:
    // Adds a WeChat Pay public key (SPKI PEM) under its id. kInvalidArgument for
    // an empty id, a PEM that is not an RSA-2048 public key, or a duplicate id.
    absl::Status AddPublicKeyPem(absl::string_view id, absl::string_view pem);

    // Adds a platform certificate; its serial comes from the certificate.
    // kInvalidArgument for a duplicate serial.
    absl::Status AddCertificate(const crypto::Certificate& certificate);
    absl::Status AddCertificatePem(absl::string_view pem);

    // Returns the ring, dropping certificates already expired at `now`.
    // kFailedPrecondition when no usable key remains.
    absl::StatusOr<std::shared_ptr<const KeyRing>> Build(absl::Time now) &&;

   private:
    std::vector<VerificationKey> keys_;
  };

  // Returns the key for the serial of a response (`Wechatpay-Serial`), or
  // null. Certificate serials match case-insensitively; public key ids exactly.
  const VerificationKey* Find(absl::string_view serial) const;

  // The serial to send as the request's `Wechatpay-Serial`, so that WeChat Pay
  // signs responses with a key in this ring: the public key id when there is
  // one, else the currently valid platform certificate that became valid last.
  const std::string& preferred_serial() const { return preferred_serial_; }

  // All serials, sorted.
  std::vector<std::string> Serials() const;
  size_t size() const { return keys_.size(); }
  const std::vector<VerificationKey>& keys() const { return keys_; }

 private:
  KeyRing() = default;
  std::vector<VerificationKey> keys_;
  std::map<std::string, size_t> index_;  // normalised serial -> keys_ index
  std::string preferred_serial_;
};

// KeyStore
//
// Hands out the current KeyRing snapshot. Thread-safe.
class KeyStore {
 public:
  virtual ~KeyStore() = default;
  // Never null once the store is constructed.
  virtual std::shared_ptr<const KeyRing> Current() const = 0;
};

// SwappableKeyStore
//
// A KeyStore whose ring is replaced atomically by Replace(); verifications
// already holding the old ring finish with it.
class SwappableKeyStore final : public KeyStore {
 public:
  explicit SwappableKeyStore(std::shared_ptr<const KeyRing> ring) : ring_(std::move(ring)) {}
  std::shared_ptr<const KeyRing> Current() const override { return ring_.Current(); }
  void Replace(std::shared_ptr<const KeyRing> ring) { ring_.Replace(std::move(ring)); }

 private:
  Swappable<KeyRing> ring_;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_KEY_RING_H_
