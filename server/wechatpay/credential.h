// File: server/wechatpay/credential.h
//
// Credential: the merchant identity that signs requests, and the builder of the
// `Authorization: WECHATPAY2-SHA256-RSA2048 ...` header (wechatpay-v3.md 2.1–2.4).
//
// Message signed (every line ends with \n, the body line too; empty for GET):
//   METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n
// Header (one line, no spaces after commas, field order of the Go/Java SDKs):
//   WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"
//
// Example:
//   Credential cred("1900000001", "5157F0…", signer, SystemClock::Get());
//   PALMGATE_ASSIGN_OR_RETURN(std::string auth, cred.AuthorizationHeader("GET", target, ""));
#ifndef PALMGATE_SERVER_WECHATPAY_CREDENTIAL_H_
#define PALMGATE_SERVER_WECHATPAY_CREDENTIAL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/clock.h"
#include "server/wechatpay/signer.h"

namespace palmgate::wechatpay {

inline constexpr size_t kNonceLength = 32;

// Returns the exact message to sign.
std::string BuildRequestSignMessage(absl::string_view method, absl::string_view canonical_url,
                                    int64_t timestamp, absl::string_view nonce, absl::string_view body);

// Credential
//
// Immutable; thread-safe. The signer and clock must outlive it (the signer is
// shared).
class Credential {
 public:
  Credential(std::string mchid, std::string serial_no, std::shared_ptr<const Signer> signer,
             const Clock& clock)
      : mchid_(std::move(mchid)), serial_no_(std::move(serial_no)), signer_(std::move(signer)),
        clock_(&clock) {}

  // Returns the Authorization header value for a request, with the current time
  // and a fresh 32-character [0-9A-Za-z] nonce from the CSPRNG.
  // `canonical_url` is the request-target exactly as sent (path and query).
  absl::StatusOr<std::string> AuthorizationHeader(absl::string_view method,
                                                  absl::string_view canonical_url,
                                                  absl::string_view body) const;

  // The same with a given timestamp and nonce (known-answer tests).
  absl::StatusOr<std::string> AuthorizationHeaderAt(absl::string_view method,
                                                    absl::string_view canonical_url,
                                                    absl::string_view body, int64_t timestamp,
                                                    absl::string_view nonce) const;

  const std::string& mchid() const { return mchid_; }
  const std::string& serial_no() const { return serial_no_; }

 private:
  const std::string mchid_;
  const std::string serial_no_;
  const std::shared_ptr<const Signer> signer_;
  const Clock* const clock_;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_CREDENTIAL_H_
