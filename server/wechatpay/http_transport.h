// File: server/wechatpay/http_transport.h
//
// HttpTransport: asynchronous HTTP exchanges. The palmservice client and the
// certificate downloader depend on this interface; CurlTransport implements it
// on a libcurl multi event loop, tests may use fakes.
#ifndef PALMGATE_SERVER_WECHATPAY_HTTP_TRANSPORT_H_
#define PALMGATE_SERVER_WECHATPAY_HTTP_TRANSPORT_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/wechatpay/http_message.h"

namespace palmgate::wechatpay {

using TransferId = uint64_t;

// HttpTransport
//
// Thread-safe: Send and Cancel may be called from any thread, including from
// inside a completion callback.
class HttpTransport {
 public:
  // Receives the response (any HTTP status) or a transport error:
  // kUnavailable (connect, DNS, TLS, connection lost; or, with reason
  // kUpstreamConnectionsBusy, request.budget ran out while the transfer
  // waited for one of the transport's own connections), kDeadlineExceeded
  // (request.timeout passed after the transfer left the line), kCancelled,
  // kInternal (response too large). Errors carry an UpstreamError payload
  // (error.h).
  using Callback = absl::AnyInvocable<void(absl::StatusOr<HttpResponse>) &&>;

  virtual ~HttpTransport() = default;

  // Starts a transfer. `done` runs exactly once, on the transport's own thread,
  // and must not block.
  virtual TransferId Send(HttpRequest request, Callback done) = 0;

  // Stops a transfer; its callback then runs with kCancelled, unless it has
  // already run. Unknown ids are ignored.
  virtual void Cancel(TransferId id) = 0;

  // Runs `fn` on the transport's thread after `delay` (retry backoff without
  // holding a thread). When the transport shuts down, pending functions run
  // at once (anything they Send then completes with kCancelled).
  virtual void Schedule(absl::Duration delay, absl::AnyInvocable<void() &&> fn) = 0;
};

}  // namespace palmgate::wechatpay

#endif  // PALMGATE_SERVER_WECHATPAY_HTTP_TRANSPORT_H_
