// File: server/wechatpay/key_refresher.h
//
// KeyRefresher: asks for fresh WeChat Pay verification keys now. The layer
// that runs calls uses it when a response names a serial the key ring does
// not hold (a certificate WeChat Pay just started using): it requests a
// refresh, and once that finished re-validates the same raw response once.
// Keeping this an interface keeps the arrows pointing down (STYLE.md): the
// validator only reports UNKNOWN_WECHATPAY_SERIAL; the certificate manager
// implements the refresh from the signer and the transport directly.
#ifndef PALMGATE_SERVER_WECHATPAY_KEY_REFRESHER_H_
#define PALMGATE_SERVER_WECHATPAY_KEY_REFRESHER_H_

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace palmgate::wechatpay {

// KeyRefresher
//
// Thread-safe.
class KeyRefresher {
 public:
  using Callback = absl::AnyInvocable<void(absl::Status) &&>;
  virtual ~KeyRefresher() = default;

  // Requests a refresh because a response named `serial`. `done` runs exactly
  // once, on any thread, after the key store holds the result of a refresh
  // that started after this call (OK), or with the reason none could be made:
  // kResourceExhausted when refreshes are rate limited (an earlier one found
  // nothing new too recently), kUnavailable / kNotFound when the download
  // failed, kInternal when it could not be trusted. Concurrent requests share
  // one download.
  virtual void RefreshForUnknownSerial(absl::string_view serial, Callback done) = 0;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_KEY_REFRESHER_H_
