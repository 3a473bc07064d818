// palmctl: command-line client for the palmgate gateway.
//
//   palmctl get --addr HOST:PORT --openid OPENID --organization_id ORG [--json] [--timeout 2s]
//   palmctl health --addr HOST:PORT [--service NAME] [--timeout 2s]
//
// `get` calls palmgate.v1.PalmAuthorization/GetAuthorization with the given
// deadline and prints the verified answer (or one JSON line with --json).
// `health` calls grpc.health.v1.Health/Check ("" = the whole server).
// Failed calls print "error: CODE_NAME: message" and the rich error details
// (ErrorInfo, BadRequest, RetryInfo) on stderr.
//
// Exit status: 0 success (health: SERVING), 1 the call failed or the service
// is not SERVING, 2 usage error. --openid and --organization_id must be given
// but may be empty: the gateway, not palmctl, validates them.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/palmctl_output.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"

namespace palmgate::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage:\n"
    "  palmctl get --addr HOST:PORT --openid OPENID --organization_id ORG [--json] [--timeout 2s]\n"
    "  palmctl health --addr HOST:PORT [--service NAME] [--timeout 2s]\n"
    "\n"
    "  --addr       gateway address (default 127.0.0.1:50051)\n"
    "  --timeout    deadline of the call, e.g. 500ms, 2s (default 2s)\n"
    "  --json       get: print the answer as one line of protobuf JSON\n"
    "  --service    health: service name (default \"\": the whole server)\n"
    "\n"
    "exit status: 0 ok, 1 call failed or not SERVING, 2 usage error\n";

// Parsed "--name value" / "--name=value" / "--flag" arguments of one subcommand.
struct Args {
  std::map<std::string, std::string> values;
  std::set<std::string> bools;
};

int UsageError(const std::string& message) {
  std::cerr << "palmctl: " << message << "\n\n" << kUsage;
  return kExitUsage;
}

// Returns the parsed arguments, or a message naming the offending argument.
std::optional<Args> ParseArgs(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
                              const std::set<std::string>& bool_flags, std::string* error) {
  Args args;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!absl::StartsWith(arg, "--")) {
      *error = absl::StrCat("unexpected argument \"", arg, "\"");
      return std::nullopt;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (bool_flags.count(name) > 0) {
      if (value.has_value() && *value != "true" && *value != "false") {
        *error = absl::StrCat("--", name, " takes no value (or =true/=false)");
        return std::nullopt;
      }
      if (!value.has_value() || *value == "true") args.bools.insert(name);
      continue;
    }
    if (value_flags.count(name) == 0) {
      *error = absl::StrCat("unknown flag --", name);
      return std::nullopt;
    }
    if (!value.has_value()) {
      if (i + 1 >= argv.size()) {
        *error = absl::StrCat("--", name, " needs a value");
        return std::nullopt;
      }
      value = argv[++i];
    }
    args.values[name] = *value;
  }
  return args;
}

std::string ValueOr(const Args& args, const std::string& name, const std::string& fallback) {
  auto it = args.values.find(name);
  return it == args.values.end() ? fallback : it->second;
}

// Returns the --timeout as a deadline for a call starting now, or nullopt after printing a usage error.
std::optional<std::chrono::system_clock::time_point> Deadline(const Args& args) {
  const std::string text = ValueOr(args, "timeout", "2s");
  absl::Duration timeout;
  if (!absl::ParseDuration(text, &timeout) || timeout <= absl::ZeroDuration()) {
    UsageError(absl::StrCat("--timeout: \"", text, "\" is not a positive duration (e.g. 500ms, 2s)"));
    return std::nullopt;
  }
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
}

std::shared_ptr<grpc::Channel> Connect(const Args& args) {
  return grpc::CreateChannel(ValueOr(args, "addr", "127.0.0.1:50051"), grpc::InsecureChannelCredentials());
}

int Get(const std::vector<std::string>& argv) {
  std::string error;
  std::optional<Args> args =
      ParseArgs(argv, {"addr", "openid", "organization_id", "timeout"}, {"json"}, &error);
  if (!args.has_value()) return UsageError(error);
  for (const char* required : {"openid", "organization_id"}) {
    if (args->values.count(required) == 0) return UsageError(absl::StrCat("get: --", required, " is required"));
  }
  std::optional<std::chrono::system_clock::time_point> deadline = Deadline(*args);
  if (!deadline.has_value()) return kExitUsage;

  palmgate::v1::GetAuthorizationRequest request;
  request.set_openid(args->values["openid"]);
  request.set_organization_id(args->values["organization_id"]);
  palmgate::v1::Authorization authorization;
  grpc::ClientContext context;
  context.set_deadline(*deadline);
  std::unique_ptr<palmgate::v1::PalmAuthorization::Stub> stub = palmgate::v1::PalmAuthorization::NewStub(Connect(*args));
  const grpc::Status status = stub->GetAuthorization(&context, request, &authorization);
  if (!status.ok()) {
    std::cerr << FormatError(status);
    return kExitFailed;
  }
  if (args->bools.count("json") > 0) {
    absl::StatusOr<std::string> json = FormatAuthorizationJson(authorization);
    if (!json.ok()) {
      std::cerr << "error: " << json.status().message() << "\n";
      return kExitFailed;
    }
    std::cout << *json << std::endl;
  } else {
    std::cout << FormatAuthorization(authorization) << std::flush;
  }
  return kExitOk;
}

int Health(const std::vector<std::string>& argv) {
  std::string error;
  std::optional<Args> args = ParseArgs(argv, {"addr", "service", "timeout"}, {}, &error);
  if (!args.has_value()) return UsageError(error);
  std::optional<std::chrono::system_clock::time_point> deadline = Deadline(*args);
  if (!deadline.has_value()) return kExitUsage;

  grpc::health::v1::HealthCheckRequest request;
  request.set_service(ValueOr(*args, "service", ""));
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  context.set_deadline(*deadline);
  const grpc::Status status = grpc::health::v1::Health::NewStub(Connect(*args))->Check(&context, request, &response);
  if (!status.ok()) {
    std::cerr << FormatError(status);
    return kExitFailed;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()) << std::endl;
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitFailed;
}

int Main(int argc, char** argv) {
  if (argc < 2) return UsageError("missing command");
  const std::string command = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (command == "get") return Get(rest);
  if (command == "health") return Health(rest);
  if (command == "help" || command == "--help" || command == "-h") {
    std::cout << kUsage;
    return kExitOk;
  }
  return UsageError(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace palmgate::client

int main(int argc, char** argv) { return palmgate::client::Main(argc, argv); }
