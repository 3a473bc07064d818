// File: server/wechatpay/response_validator.h
//
// Checks a WeChat Pay response before anything in it is used
// (wechatpay-v3.md section 3), in this order:
//   1. HTTP status: non-2xx is an error carrying WeChat Pay's code, message,
//      detail and Request-ID (ClassifyHttpStatus); it is not verified.
//   2. All four headers Wechatpay-Timestamp, -Nonce, -Signature, -Serial present.
//   3. Timestamp decimal (at most 12 digits).
//   4. Serial known to the key ring.
//   5. Not a `WECHATPAY/SIGNTEST/` probe; strict Base64 of 256 bytes.
//   6. SHA256withRSA signature valid over `TIMESTAMP\nNONCE\nRAW_BODY\n`.
//   7. Timestamp within the window (default 300 s, both directions): the
//      replay window. Judged only once the signature verified, so that
//      kResponseTimestampSkew always means "WeChat Pay really signed this
//      time" and unverified headers never feed the gateway's clock-skew
//      reports; any earlier failure keeps its own reason whatever the time.
// Each failure has its own ErrorReason; all are kInternal except the HTTP
// classification. The Request-ID header is not covered by the signature: it
// is kept only when well-formed (ReadRequestId), in answers and errors alike. Unknown serial is only reported: refreshing keys and
// re-validating is the job of the layer that runs calls.
#ifndef PALMGATE_SERVER_WECHATPAY_RESPONSE_VALIDATOR_H_
#define PALMGATE_SERVER_WECHATPAY_RESPONSE_VALIDATOR_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/wechatpay/http_message.h"
#include "server/wechatpay/key_ring.h"

namespace palmgate::wechatpay {

inline constexpr absl::string_view kSignatureProbePrefix = "WECHATPAY/SIGNTEST/";

struct ValidatorOptions {
  // A response timestamp this far from the local clock (or farther) is rejected.
  absl::Duration max_clock_skew = absl::Seconds(300);
};

// What a successful validation learnt.
struct VerifiedResponse {
  std::string serial;      // the key that verified it
  std::string request_id;  // WeChat Pay's Request-ID, "" when absent or not well-formed (ReadRequestId)
  std::string request_id_dropped;  // for the log only: why a Request-ID header was not kept
  absl::Duration skew;     // Wechatpay-Timestamp minus local time
};

// Returns the exact message WeChat Pay signs for a response.
std::string BuildResponseVerifyMessage(absl::string_view timestamp, absl::string_view nonce,
                                       absl::string_view body);

// Validates `response` against `ring` at local time `now` (steps 1–7 above).
absl::StatusOr<VerifiedResponse> ValidateResponse(const HttpResponse& response, const KeyRing& ring,
                                                  absl::Time now, const ValidatorOptions& options = {});

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_RESPONSE_VALIDATOR_H_
