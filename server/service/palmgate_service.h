// File: server/service/palmgate_service.h
//
// PalmAuthorizationService: palmgate.v1.PalmAuthorization on gRPC's callback
// API. No thread is held per RPC: each GetAuthorization validates its request,
// starts the asynchronous upstream call (PalmServiceClient, driven by the
// libcurl event loop) and finishes the RPC from that call's completion.
//
// Deadlines: the upstream timeout is the caller's remaining deadline minus a
// small margin (so the answer still reaches the caller), capped by the
// client's configured maximum; an RPC whose deadline has already passed is
// answered DEADLINE_EXCEEDED without any upstream call. A cancelled RPC
// cancels its upstream transfer.
//
// Request parsing: the generated handler of method 0 is replaced by one whose
// request type is the wire image with `bytes` fields, see HandleGetAuthorization.
//
// Thread safety: thread-safe; one instance serves all RPCs.
#ifndef PALMGATE_SERVER_SERVICE_PALMGATE_SERVICE_H_
#define PALMGATE_SERVER_SERVICE_PALMGATE_SERVICE_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "service/wire/get_authorization_request.pb.h"
#include "server/common/clock.h"
#include "server/wechatpay/palm_service_client.h"

namespace palmgate::service {

// Returns a short, stable, non-reversible tag of an openid for logs
// ("sha256:" + 12 hex digits); openids never appear in clear.
std::string OpenidTag(absl::string_view openid);

class PalmAuthorizationService final : public palmgate::v1::PalmAuthorization::CallbackService {
 public:
  struct Options {
    // Kept from the caller's deadline for sending the answer back.
    absl::Duration deadline_margin = absl::Milliseconds(20);
    // Logs one line per RPC.
    bool log_rpcs = true;
  };

  // `client` and `clock` must outlive the service.
  PalmAuthorizationService(wechatpay::PalmServiceClient* client, const Clock& clock, Options options);

  // Serves PalmAuthorization.GetAuthorization. The request arrives parsed as
  // its wire image (server/service/wire/), so that invalid UTF-8 reaches the
  // validator instead of failing inside gRPC.
  grpc::ServerUnaryReactor* HandleGetAuthorization(grpc::CallbackServerContext* context,
                                                   const palmgate::internal::wire::GetAuthorizationRequest* request,
                                                   palmgate::v1::Authorization* response);

 private:
  class Reactor;
  wechatpay::PalmServiceClient* const client_;
  const Clock& clock_;
  const Options options_;
};

}  // namespace palmgate::service

#endif  // PALMGATE_SERVER_SERVICE_PALMGATE_SERVICE_H_
