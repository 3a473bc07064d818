// File: server/service/status_conversion.h
//
// The one place that turns palmgate's absl::Status (with its UpstreamError
// payload, server/wechatpay/error.h) into a grpc::Status carrying the rich
// error model (AIP-193, anchors.md C.2): a google.rpc.Status in
// `grpc-status-details-bin` with exactly one google.rpc.ErrorInfo, plus
// google.rpc.BadRequest for invalid fields and google.rpc.RetryInfo when a
// retry later may help.
#ifndef PALMGATE_SERVER_SERVICE_STATUS_CONVERSION_H_
#define PALMGATE_SERVER_SERVICE_STATUS_CONVERSION_H_

#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace palmgate::service {

// The ErrorInfo domain of every palmgate error.
inline constexpr absl::string_view kErrorDomain = "palmgate.dev";

// Returns the message a caller is told for a failed `status`: short and
// stable, chosen by the reason (wechatpay::ReasonSummary), never the status
// message itself, which may name serials, hosts, addresses or libcurl's text
// and belongs in the RPC's log line. The exception is a local field check
// (INVALID_OPENID, INVALID_ORGANIZATION_ID), whose message describes only the
// caller's own input. "" for OK.
std::string CallerMessage(const absl::Status& status);

// Converts `status` to a grpc::Status. The code is a cast (absl codes track
// google.rpc.Code). An OK status gives grpc::Status::OK. Every other status
// gets CallerMessage() and details: ErrorInfo (reason from the payload,
// "INTERNAL" when there is none; metadata requestId, httpStatus,
// wechatpayCode when of WeChat Pay's form [A-Z][A-Z0-9_]{0,63},
// wechatpayMessage: WeChat Pay's unsigned human text, as
// wechatpay::ToDisplayableText of at most 512 bytes (no controls, no bidi or
// other invisible format characters), field), BadRequest when the payload names a field,
// RetryInfo when the payload has a retry hint. `more` adds further failed statuses whose field
// violations join the same BadRequest (one RPC may have several bad fields).
grpc::Status ToGrpcStatus(const absl::Status& status, const std::vector<absl::Status>& more = {});

}  // namespace palmgate::service

#endif  // PALMGATE_SERVER_SERVICE_STATUS_CONVERSION_H_
