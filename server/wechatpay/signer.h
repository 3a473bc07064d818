// File: server/wechatpay/signer.h
//
// Signer: produces WeChat Pay request signatures. An interface so that a key
// held elsewhere (an HSM, a central signing service) can replace the in-process
// RSA key.
#ifndef PALMGATE_SERVER_WECHATPAY_SIGNER_H_
#define PALMGATE_SERVER_WECHATPAY_SIGNER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::wechatpay {

// Signer
//
// Thread-safe: Sign may be called concurrently.
class Signer {
 public:
  virtual ~Signer() = default;

  // Returns the standard Base64 signature of `message`.
  virtual absl::StatusOr<std::string> Sign(absl::string_view message) const = 0;

  // Returns the algorithm label that follows "WECHATPAY2-" in the scheme,
  // e.g. "SHA256-RSA2048".
  virtual absl::string_view Algorithm() const = 0;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_SIGNER_H_
