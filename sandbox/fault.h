// File: sandbox/fault.h
//
// Fault-injection specs (only honoured when the sandbox runs with --faults).
// A spec is one or more faults separated by ';', each `name` or `name=arg`:
//
//   latency=MS                extra delay before the response (asio timer)
//   status=HTTP[:CODE[:MSG]]  that status (400..599) with {"code","message"}
//   drop                      close the connection without any response
//   corrupt_signature         valid Base64 of a wrong signature
//   probe_signature           "WECHATPAY/SIGNTEST/" + Base64-ish text
//   missing_signature_headers omit Wechatpay-{Timestamp,Nonce,Serial,Signature}
//                             (and Wechatpay-Signature-Type) on a 2xx
//   missing_header=NAME       omit one response header (a Wechatpay-* header
//                             or Request-ID)
//   skew_timestamp=SECONDS    sign with the timestamp shifted (still valid)
//   unknown_serial            sign with a fresh key under an unknown serial
//   malformed_json            a correctly signed 200 whose body is not JSON
//   empty_body                a correctly signed 200 with an empty body
//   html_error                a 502 with an HTML body, as from a proxy
//   huge_body=BYTES           a signed 200 of exactly BYTES bytes (the JSON
//                             padded with trailing spaces; max 64 MiB)
//
// Example: "latency=200;status=500" or "status=429:FREQUENCY_LIMITED:slow down".
//
// Thread safety: stateless parser; FaultPlan is a value type.
#ifndef PALMGATE_SANDBOX_FAULT_H_
#define PALMGATE_SANDBOX_FAULT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace palmgate::sandbox {

struct StatusFault {
  int http_status = 500;
  std::string code;
  std::string message;
};

struct FaultPlan {
  std::string spec;  // as given, for logs
  int64_t latency_ms = 0;
  std::optional<StatusFault> status;
  bool drop = false;
  bool corrupt_signature = false;
  bool probe_signature = false;
  bool missing_signature_headers = false;
  std::vector<std::string> missing_headers;  // canonical spelling
  int64_t skew_timestamp_s = 0;
  bool unknown_serial = false;
  bool malformed_json = false;
  bool empty_body = false;
  bool html_error = false;
  std::optional<size_t> huge_body;

  bool empty() const { return spec.empty(); }
};

// Parses a spec. kInvalidArgument naming the offending part for an unknown
// fault, a missing or bad argument, or an empty spec.
absl::StatusOr<FaultPlan> ParseFaultSpec(absl::string_view spec);

// Returns one spec per fault kind (each status code with its default WeChat
// code, one missing header, a skew beyond the 5-minute window, a 1 MiB body):
// what `serve --fault_rate` draws from unless --fault_kinds says otherwise.
std::vector<std::string> DefaultRandomFaultSpecs();

// Default WeChat error code and message for an HTTP status (400 PARAM_ERROR,
// 401 SIGN_ERROR, 403 NO_AUTH, 404 NOT_FOUND, 429 RATELIMIT_EXCEEDED,
// 500 SYSTEM_ERROR, 502/503 SERVICE_UNAVAILABLE, other 4xx INVALID_REQUEST,
// other 5xx SYSTEM_ERROR).
StatusFault DefaultStatusFault(int http_status);

}  // namespace palmgate::sandbox

#endif  // PALMGATE_SANDBOX_FAULT_H_
