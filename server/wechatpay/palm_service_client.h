// File: server/wechatpay/palm_service_client.h
//
// PalmServiceClient: the palm-scan authorization query
// `GET /v3/palmservice/authorization/openid/{openid}?organization_id=…`
// (wechatpay-v3.md section 1), end to end: validate the inputs, build the
// request-target, sign it, send it with `Wechatpay-Serial` set to the key the
// gateway prefers, classify the HTTP status, verify the response signature,
// and only then parse the body.
//
// Asynchronous: the result arrives in a callback on the transport's thread, so
// a gRPC callback reactor can finish its RPC from there without blocking.
//
// Example:
//   client.GetAuthorization("oUpF8…", "1004", absl::Now() + absl::Seconds(2),
//       [](absl::StatusOr<AuthorizationResult> r) { ... });
#ifndef PALMGATE_SERVER_WECHATPAY_PALM_SERVICE_CLIENT_H_
#define PALMGATE_SERVER_WECHATPAY_PALM_SERVICE_CLIENT_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/wechatpay/credential.h"
#include "server/wechatpay/http_transport.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/response_validator.h"

namespace palmgate::wechatpay {

inline constexpr absl::string_view kProductionBaseUrl = "https://api.mch.weixin.qq.com";
inline constexpr absl::string_view kBackupBaseUrl = "https://api2.mch.weixin.qq.com";

// AuthorizationResult
//
// A verified answer. Every field of WeChat Pay's answer is optional; absent
// strings are empty and an absent time is nullopt.
struct AuthorizationResult {
  std::string openid;
  std::string organization_id;
  std::string state;  // e.g. "AUTHORIZATION_STATE_ON"; passed through verbatim
  std::optional<absl::Time> authorize_time;
  std::string authorize_time_raw;  // as sent, kept even when it does not parse as RFC 3339
  std::string request_id;          // WeChat Pay's Request-ID
  std::string verified_by;         // serial of the key that verified the signature
  absl::Duration clock_skew;       // Wechatpay-Timestamp minus local time
};

// Parses a verified 200 body. kInternal with kUpstreamMalformedResponse when the
// body is not a JSON object, a field has the wrong type, or the answer names
// another openid or organization_id than the ones asked for.
absl::StatusOr<AuthorizationResult> ParseAuthorizationBody(absl::string_view body, absl::string_view openid,
                                                           absl::string_view organization_id);

class PalmServiceClient {
 public:
  struct Options {
    std::string base_url = std::string(kProductionBaseUrl);  // scheme://host[:port], no path
    // Upper bound of one upstream call, whatever the caller's deadline.
    absl::Duration max_timeout = absl::Seconds(10);
    ValidatorOptions validator;
  };

  using Callback = absl::AnyInvocable<void(absl::StatusOr<AuthorizationResult>) &&>;

  // `transport`, `keys` and `clock` must outlive the client.
  PalmServiceClient(Options options, std::shared_ptr<const Credential> credential, const KeyStore* keys,
                    HttpTransport* transport, const Clock& clock);

  // Queries the authorization state of `openid` in `organization_id`.
  // The upstream timeout is min(deadline - now, max_timeout). `done` runs
  // exactly once: on the caller's thread, before this returns, for
  // kInvalidArgument (bad field), kDeadlineExceeded (deadline already past) and
  // signing failures — nothing is sent upstream then; otherwise on the
  // transport's thread. Returns an id for Cancel (0 when nothing was sent).
  TransferId GetAuthorization(absl::string_view openid, absl::string_view organization_id, absl::Time deadline,
                              Callback done) const;

  // Cancels a call; its callback runs with kCancelled unless it already ran.
  void Cancel(TransferId id) const { transport_->Cancel(id); }

  const Options& options() const { return options_; }

 private:
  const Options options_;
  const std::shared_ptr<const Credential> credential_;
  const KeyStore* const keys_;
  HttpTransport* const transport_;
  const Clock& clock_;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_PALM_SERVICE_CLIENT_H_
