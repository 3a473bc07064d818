// File: server/ops/rpc_interceptor.h
//
// A gRPC server interceptor feeding Metrics: in-flight RPCs, RPCs by method
// and code, RPC latency, and verification failures by reason (read from the
// google.rpc.ErrorInfo detail of a failed RPC's status). Sees every RPC,
// health checks and reflection included.
#ifndef PALMGATE_SERVER_OPS_RPC_INTERCEPTOR_H_
#define PALMGATE_SERVER_OPS_RPC_INTERCEPTOR_H_

#include <memory>

#include <grpcpp/support/server_interceptor.h>

#include "server/ops/metrics.h"

namespace palmgate::ops {

// Returns a factory for builder.experimental().SetInterceptorCreators();
// `metrics` must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRpcMetricsInterceptorFactory(
    Metrics* metrics);

// True for the ErrorInfo reasons that mean a WeChat Pay response failed verification.
bool IsVerificationFailureReason(absl::string_view reason);

}  // namespace palmgate::ops

#endif  // PALMGATE_SERVER_OPS_RPC_INTERCEPTOR_H_
