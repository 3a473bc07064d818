#include "server/wechatpay/credential.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/common/status_macros.h"
#include "server/crypto/aes_gcm.h"

namespace palmgate::wechatpay {

std::string BuildRequestSignMessage(absl::string_view method, absl::string_view canonical_url,
                                    int64_t timestamp, absl::string_view nonce, absl::string_view body) {
  return absl::StrCat(method, "\n", canonical_url, "\n", timestamp, "\n", nonce, "\n", body, "\n");
}

absl::StatusOr<std::string> Credential::AuthorizationHeader(absl::string_view method,
                                                            absl::string_view canonical_url,
                                                            absl::string_view body) const {
  return AuthorizationHeaderAt(method, canonical_url, body, absl::ToUnixSeconds(clock_->Now()),
                               crypto::RandomAlphanumeric(kNonceLength));
}

absl::StatusOr<std::string> Credential::AuthorizationHeaderAt(absl::string_view method,
                                                              absl::string_view canonical_url,
                                                              absl::string_view body, int64_t timestamp,
                                                              absl::string_view nonce) const {
  PALMGATE_ASSIGN_OR_RETURN(
      std::string signature,
      signer_->Sign(BuildRequestSignMessage(method, canonical_url, timestamp, nonce, body)));
  return absl::StrCat("WECHATPAY2-", signer_->Algorithm(), " mchid=\"", mchid_, "\",nonce_str=\"", nonce,
                      "\",timestamp=\"", timestamp, "\",serial_no=\"", serial_no_, "\",signature=\"",
                      signature, "\"");
}

}  // namespace palmgate::wechatpay
