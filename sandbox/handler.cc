#include "sandbox/handler.h"

#include <algorithm>
#include <random>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sandbox/certificates.h"
#include "sandbox/fault.h"
#include "sandbox/url_util.h"
#include "server/common/file_util.h"
#include "server/common/status_macros.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"

namespace palmgate::sandbox {
namespace {

using Json = nlohmann::ordered_json;

constexpr absl::string_view kJsonContentType = "application/json; charset=utf-8";
constexpr absl::string_view kSignatureType = "WECHATPAY2-SHA256-RSA2048";
constexpr size_t kTruncatedSignMessageBytes = 100;

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Returns all values of header `name` (case-insensitive).
std::vector<absl::string_view> HeaderValues(const SandboxRequest& request, absl::string_view name) {
  std::vector<absl::string_view> out;
  for (const HttpHeader& h : request.headers) {
    if (absl::EqualsIgnoreCase(h.name, name)) out.push_back(h.value);
  }
  return out;
}

void SetHeader(SandboxResponse& response, absl::string_view name, absl::string_view value) {
  for (HttpHeader& h : response.headers) {
    if (absl::EqualsIgnoreCase(h.name, name)) {
      h.value = std::string(value);
      return;
    }
  }
  response.headers.push_back({std::string(name), std::string(value)});
}

void RemoveHeader(SandboxResponse& response, absl::string_view name) {
  std::vector<HttpHeader> kept;
  for (HttpHeader& h : response.headers) {
    if (!absl::EqualsIgnoreCase(h.name, name)) kept.push_back(std::move(h));
  }
  response.headers = std::move(kept);
}

std::string ErrorBody(absl::string_view code, absl::string_view message, const Json* detail = nullptr) {
  Json j = {{"code", code}, {"message", message}};
  if (detail != nullptr) j["detail"] = *detail;
  return Dump(j);
}

SandboxResponse JsonResponse(int status, std::string body) {
  SandboxResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers.push_back({"Content-Type", std::string(kJsonContentType)});
  return r;
}

SandboxResponse ErrorResponse(int status, absl::string_view code, absl::string_view message,
                              const Json* detail = nullptr) {
  return JsonResponse(status, ErrorBody(code, message, detail));
}

SandboxResponse ParamError(absl::string_view field, absl::string_view location, absl::string_view issue) {
  Json detail = {{"field", field}, {"location", location}, {"issue", issue}};
  return ErrorResponse(400, "PARAM_ERROR", "参数错误", &detail);
}

std::string RandomUpperHex(size_t bytes) {
  return absl::AsciiStrToUpper(absl::BytesToHexString(crypto::RandomBytes(bytes)));
}

}  // namespace

struct Handler::Context {
  RequestRecord record;
  bool omit_request_id = false;  // missing_header=Request-ID fault
};

absl::StatusOr<std::unique_ptr<Handler>> Handler::Create(SandboxKeys keys, UserStore users, HandlerOptions options,
                                                         const Clock* clock) {
  if (!(options.fault_rate >= 0 && options.fault_rate <= 1)) {
    return absl::InvalidArgumentError("fault rate must be within 0..1");
  }
  if (options.fault_rate > 0 && !options.faults_enabled) {
    return absl::InvalidArgumentError("a fault rate needs faults enabled (--faults)");
  }
  std::vector<FaultPlan> random_faults;
  if (options.fault_rate > 0) {
    const std::vector<std::string> specs =
        options.random_faults.empty() ? DefaultRandomFaultSpecs() : options.random_faults;
    for (const std::string& spec : specs) {
      PALMGATE_ASSIGN_OR_RETURN(FaultPlan plan, ParseFaultSpec(spec));
      random_faults.push_back(std::move(plan));
    }
  }
  std::optional<SigningKey> stranger;
  if (options.faults_enabled) {
    PALMGATE_ASSIGN_OR_RETURN(crypto::RsaPrivateKey key, crypto::RsaPrivateKey::Generate());
    stranger = SigningKey{RandomUpperHex(20), std::move(key)};
  }
  return std::unique_ptr<Handler>(new Handler(std::move(keys), std::move(users), std::move(options), clock,
                                              std::move(stranger), std::move(random_faults)));
}

Handler::Handler(SandboxKeys keys, UserStore users, HandlerOptions options, const Clock* clock,
                 std::optional<SigningKey> stranger_key, std::vector<FaultPlan> random_faults)
    : keys_(std::move(keys)),
      users_(std::move(users)),
      options_(std::move(options)),
      clock_(clock),
      public_signing_key_{keys_.public_key_id, keys_.public_key_private},
      stranger_key_(std::move(stranger_key)),
      random_faults_(std::move(random_faults)),
      verifier_(MerchantIdentity{keys_.mchid, keys_.merchant_serial, keys_.merchant_public_key}, clock,
                options.timestamp_window_s),
      signer_(clock, options.signature_cache_ttl),
      request_id_prefix_(RandomUpperHex(16)) {
  platform_.push_back({keys_.platform_cert, SigningKey{keys_.platform_cert.serial(), keys_.platform_key}, true});
  active_serial_ = keys_.platform_cert.serial();
}

std::optional<FaultPlan> Handler::DrawRandomFault() const {
  if (random_faults_.empty()) return std::nullopt;
  // Per-thread generators: no lock on the request path; the draw needs no cryptographic quality.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  if (std::uniform_real_distribution<double>(0, 1)(rng) >= options_.fault_rate) return std::nullopt;
  return random_faults_[std::uniform_int_distribution<size_t>(0, random_faults_.size() - 1)(rng)];
}

std::string Handler::NextRequestId() {
  uint64_t n = request_counter_.fetch_add(1, std::memory_order_relaxed) + 1;
  return absl::StrCat(request_id_prefix_, absl::Hex(n, absl::kZeroPad16));
}

SandboxResponse Handler::Handle(const SandboxRequest& request) {
  Context ctx;
  ctx.record.request_id = NextRequestId();
  ctx.record.method = request.method;
  ctx.record.target = request.target;
  ctx.record.unix_ms = absl::ToUnixMillis(clock_->Now());
  SplitTarget split = SplitRequestTarget(request.target);
  SandboxResponse response;
  const bool admin = absl::StartsWith(split.path, "/_sandbox/");
  if (admin && !request.from_loopback && !options_.admin_from_any) {
    response = ErrorResponse(403, "FORBIDDEN",
                             "sandbox admin endpoints answer loopback clients only (serve --admin_from_any)");
  } else if (admin) {
    response = HandleAdmin(request, split.path, ctx);
  } else {
    response = HandleApi(request, ctx);
    response.delay_ms += options_.latency_ms;
  }
  if (!ctx.omit_request_id) SetHeader(response, "Request-ID", ctx.record.request_id);
  SetHeader(response, "Server", "palmgate-sandbox");
  if (!admin) {
    ctx.record.status = response.drop ? 0 : response.status;
    log_.Record(std::move(ctx.record));
  }
  return response;
}

SandboxResponse Handler::HandleAdmin(const SandboxRequest& request, absl::string_view path, Context&) {
  if (path == "/_sandbox/stats" || path == "/_sandbox/requests") {
    if (request.method != "GET") return ErrorResponse(405, "METHOD_NOT_ALLOWED", "use GET");
    return JsonResponse(200, path == "/_sandbox/stats" ? log_.StatsJson() : log_.RequestsJson());
  }
  if (path == "/_sandbox/reset") {
    if (request.method != "POST") return ErrorResponse(405, "METHOD_NOT_ALLOWED", "use POST");
    log_.Reset();
    return JsonResponse(200, "{}");
  }
  if (path == "/_sandbox/certificates" || absl::StartsWith(path, "/_sandbox/certificates/")) {
    return HandleCertificatesAdmin(request, path);
  }
  return ErrorResponse(404, "NOT_FOUND", "no such sandbox admin path");
}

SandboxResponse Handler::HandleCertificatesAdmin(const SandboxRequest& request, absl::string_view path) {
  auto listing = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(platform_mu_) {
    Json certs = Json::array();
    for (const PlatformEntry& e : platform_) {
      certs.push_back({{"serial_no", e.cert.serial()},
                       {"listed", e.listed},
                       {"active", e.cert.serial() == active_serial_},
                       {"effective_time", FormatRfc3339Cst(e.cert.not_before())},
                       {"expire_time", FormatRfc3339Cst(e.cert.not_after())}});
    }
    return JsonResponse(200, Dump(Json{{"active", active_serial_}, {"certificates", certs}}));
  };
  if (path == "/_sandbox/certificates") {
    if (request.method != "GET") return ErrorResponse(405, "METHOD_NOT_ALLOWED", "use GET");
    absl::MutexLock lock(&platform_mu_);
    return listing();
  }
  if (request.method != "POST") return ErrorResponse(405, "METHOD_NOT_ALLOWED", "use POST");
  if (options_.public_key_only) {
    return ErrorResponse(409, "PUBLIC_KEY_ONLY", "this sandbox runs with --public_key_only: no platform certificates");
  }
  const SplitTarget split = SplitRequestTarget(request.target);
  if (path == "/_sandbox/certificates/add") {
    // A new platform certificate from the sandbox CA, valid from one minute ago for 5 years;
    // listed at once, not active until activated. It is always newer than every certificate
    // before it: X.509 times have whole seconds, and two added within one second would tie
    // (a client that prefers the newest certificate could then keep the older one).
    absl::StatusOr<std::string> ca_pem = ReadFile(absl::StrCat(keys_.dir, "/ca_cert.pem"));
    absl::StatusOr<std::string> ca_key_pem = ReadFile(absl::StrCat(keys_.dir, "/ca_key.pem"));
    if (!ca_pem.ok() || !ca_key_pem.ok()) return ErrorResponse(500, "SYSTEM_ERROR", "cannot read the sandbox CA");
    absl::StatusOr<crypto::Certificate> ca = crypto::Certificate::FromPem(*ca_pem);
    absl::StatusOr<crypto::RsaPrivateKey> ca_key = crypto::RsaPrivateKey::FromPem(*ca_key_pem);
    absl::StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::Generate();
    if (!ca.ok() || !ca_key.ok() || !key.ok()) return ErrorResponse(500, "SYSTEM_ERROR", "cannot load the sandbox CA");
    crypto::CertificateSpec spec;
    spec.common_name = "palmgate sandbox WeChat Pay platform";
    spec.organization = "palmgate sandbox";
    spec.not_before = clock_->Now() - absl::Minutes(1);
    {
      absl::MutexLock lock(&platform_mu_);
      for (const PlatformEntry& e : platform_) {
        spec.not_before = std::max(spec.not_before, e.cert.not_before() + absl::Seconds(1));
      }
    }
    spec.not_after = clock_->Now() + absl::Hours(24 * 365 * 5);
    absl::StatusOr<std::string> pem = crypto::IssueCertificate(spec, key->PublicKey(), *ca_key, &*ca);
    absl::StatusOr<crypto::Certificate> cert = pem.ok() ? crypto::Certificate::FromPem(*pem)
                                                        : absl::StatusOr<crypto::Certificate>(pem.status());
    if (!cert.ok()) return ErrorResponse(500, "SYSTEM_ERROR", "cannot issue a certificate");
    absl::MutexLock lock(&platform_mu_);
    platform_.push_back({*cert, SigningKey{cert->serial(), *std::move(key)}, true});
    return JsonResponse(200, Dump(Json{{"serial_no", cert->serial()}}));
  }
  absl::StatusOr<std::optional<std::string>> serial = FindQueryParameter(split.query, "serial_no");
  if (!serial.ok() || !serial->has_value() || (*serial)->empty()) {
    return ErrorResponse(400, "PARAM_ERROR", "serial_no query parameter required");
  }
  absl::MutexLock lock(&platform_mu_);
  PlatformEntry* entry = nullptr;
  for (PlatformEntry& e : platform_) {
    if (absl::EqualsIgnoreCase(e.cert.serial(), **serial)) entry = &e;
  }
  if (entry == nullptr || !entry->listed) return ErrorResponse(404, "NOT_FOUND", "no listed certificate with that serial");
  if (path == "/_sandbox/certificates/activate") {
    active_serial_ = entry->cert.serial();
    return listing();
  }
  if (path == "/_sandbox/certificates/retire") {
    if (entry->cert.serial() == active_serial_) {
      return ErrorResponse(409, "CERTIFICATE_ACTIVE", "activate another certificate before retiring this one");
    }
    entry->listed = false;
    return listing();
  }
  return ErrorResponse(404, "NOT_FOUND", "no such sandbox admin path");
}

SandboxResponse Handler::HandleApi(const SandboxRequest& request, Context& ctx) {
  RequestRecord& rec = ctx.record;
  const SplitTarget split = SplitRequestTarget(request.target);
  const absl::string_view path = split.path;

  // Routing.
  bool is_palm = false;
  if (absl::StartsWith(path, kPalmPathPrefix)) {
    absl::string_view segment = path.substr(kPalmPathPrefix.size());
    is_palm = !segment.empty() && segment.find('/') == absl::string_view::npos;
  }
  const bool is_certs = path == "/v3/certificates";
  rec.endpoint = is_palm ? "palm_authorization" : is_certs ? "certificates" : "not_found";
  if (!is_palm && !is_certs) {
    rec.error_code = "NOT_FOUND";
    return ErrorResponse(404, "NOT_FOUND", absl::StrCat("no such API: ", path));
  }
  if (request.method != "GET") {
    rec.error_code = "METHOD_NOT_ALLOWED";
    SandboxResponse r = ErrorResponse(405, "METHOD_NOT_ALLOWED", absl::StrCat("method ", request.method,
                                                                              " is not allowed; use GET"));
    r.headers.push_back({"Allow", "GET"});
    return r;
  }

  // (a) Accept and User-Agent.
  std::vector<absl::string_view> accept = HeaderValues(request, "Accept");
  std::vector<absl::string_view> user_agent = HeaderValues(request, "User-Agent");
  if (accept.empty() || user_agent.empty() || accept.front().empty() || user_agent.front().empty()) {
    rec.error_code = "INVALID_REQUEST";
    return ErrorResponse(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent");
  }

  // (b) Authorization.
  std::vector<absl::string_view> auth = HeaderValues(request, "Authorization");
  RequestVerification verification;
  if (auth.size() != 1) {
    verification.status = absl::UnauthenticatedError(auth.empty() ? "missing Authorization header"
                                                                   : "more than one Authorization header");
    verification.sign_message = "";
  } else {
    verification = verifier_.Verify(request.method, request.target, request.body, auth.front());
  }
  if (!verification.status.ok()) {
    rec.error_code = "SIGN_ERROR";
    rec.sign_error_issue = std::string(verification.status.message());
    const std::string& msg = verification.sign_message;
    Json detail = {{"field", "signature"},
                   {"location", "authorization"},
                   {"issue", verification.status.message()},
                   {"sign_information",
                    {{"method", request.method},
                     {"url", path},
                     {"truncated_sign_message", msg.substr(0, kTruncatedSignMessageBytes)},
                     {"sign_message_length", msg.size()}}}};
    return ErrorResponse(401, "SIGN_ERROR", "错误的签名，验签失败", &detail);
  }

  // Response key, chosen by the request's Wechatpay-Serial. A platform
  // certificate that is not (or no longer) active is answered with the active
  // one, as WeChat Pay does once it rotated: the client then sees a new serial.
  // Except /v3/certificates: it is signed with the certificate the client
  // names, so that the listing introducing a new certificate is vouched for by
  // one the client already trusts.
  std::vector<absl::string_view> serial = HeaderValues(request, "Wechatpay-Serial");
  SigningKey platform_key = public_signing_key_;
  std::vector<crypto::Certificate> listed_certs;
  bool serial_is_platform = false;
  {
    absl::MutexLock lock(&platform_mu_);
    for (const PlatformEntry& e : platform_) {
      if (e.cert.serial() == active_serial_) platform_key = e.signing_key;
      if (e.listed) listed_certs.push_back(e.cert);
      if (serial.size() == 1 && absl::EqualsIgnoreCase(serial.front(), e.cert.serial())) serial_is_platform = true;
    }
    if (is_certs && serial_is_platform) {
      for (const PlatformEntry& e : platform_) {
        if (absl::EqualsIgnoreCase(serial.front(), e.cert.serial())) platform_key = e.signing_key;
      }
    }
  }
  const SigningKey* key = options_.public_key_only ? &public_signing_key_ : &platform_key;
  if (serial.size() > 1) {
    rec.error_code = "INVALID_REQUEST";
    return ErrorResponse(400, "INVALID_REQUEST", "Wechatpay-Serial appears more than once");
  }
  if (serial.size() == 1) {
    if (serial.front() == keys_.public_key_id) {
      key = &public_signing_key_;
    } else if (!options_.public_key_only && serial_is_platform) {
      key = &platform_key;
    } else {
      rec.error_code = "INVALID_REQUEST";
      return ErrorResponse(400, "INVALID_REQUEST",
                           absl::StrCat("Wechatpay-Serial \"", serial.front(),
                                        options_.public_key_only
                                            ? "\" is not the merchant's WeChat Pay public key id"
                                            : "\" is neither a platform certificate serial nor the public key id"));
    }
  }

  // Fault spec from the header (a seed fault comes later, once the user is known).
  std::optional<FaultPlan> fault;
  if (options_.faults_enabled) {
    std::vector<absl::string_view> spec = HeaderValues(request, "X-Sandbox-Fault");
    if (!spec.empty()) {
      absl::StatusOr<FaultPlan> plan = ParseFaultSpec(spec.front());
      if (!plan.ok()) {
        rec.error_code = "SANDBOX_FAULT_INVALID";
        return ErrorResponse(400, "SANDBOX_FAULT_INVALID", plan.status().message());
      }
      fault = std::move(*plan);
    }
  }

  // (c) Path and query, then (d) the answer.
  SandboxResponse response;
  if (is_palm) {
    absl::string_view segment = path.substr(kPalmPathPrefix.size());
    absl::StatusOr<std::string> openid = PercentDecode(segment);
    if (!openid.ok()) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("openid", "path", "openid has a malformed percent escape");
    }
    rec.openid = *openid;
    if (!IsValidUtf8(*openid)) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("openid", "path", "openid is not valid UTF-8");
    }
    if (openid->size() > kMaxOpenidBytes) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("openid", "path", absl::StrCat("openid is longer than ", kMaxOpenidBytes, " bytes"));
    }
    absl::StatusOr<std::optional<std::string>> raw_org = FindQueryParameter(split.query, "organization_id");
    if (!raw_org.ok()) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("organization_id", "query", "query has a malformed percent escape");
    }
    if (!raw_org->has_value() || (*raw_org)->empty()) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("organization_id", "query", "organization_id is required");
    }
    absl::StatusOr<std::string> org = PercentDecode(**raw_org);
    if (!org.ok()) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("organization_id", "query", "organization_id has a malformed percent escape");
    }
    rec.organization_id = *org;
    if (!IsValidUtf8(*org)) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("organization_id", "query", "organization_id is not valid UTF-8");
    }
    if (org->size() > kMaxOrganizationIdBytes) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("organization_id", "query",
                        absl::StrCat("organization_id is longer than ", kMaxOrganizationIdBytes, " bytes"));
    }
    const SeedUser* user = users_.Find(*openid, *org);
    if (options_.faults_enabled && !fault.has_value() && user != nullptr && user->fault.has_value()) {
      absl::StatusOr<FaultPlan> plan = ParseFaultSpec(*user->fault);  // validated at load time
      if (plan.ok()) fault = std::move(*plan);
    }
    if (options_.faults_enabled && !fault.has_value()) fault = DrawRandomFault();
    Json body = {{"openid", *openid}, {"organization_id", *org},
                 {"state", user != nullptr ? user->state : std::string(kDefaultState)}};
    if (user != nullptr && user->authorize_time.has_value()) body["authorize_time"] = *user->authorize_time;
    response = JsonResponse(200, Dump(body));
  } else {
    absl::StatusOr<std::optional<std::string>> algorithm = FindQueryParameter(split.query, "algorithm_type");
    if (!algorithm.ok() || (algorithm->has_value() && **algorithm != "RSA")) {
      rec.error_code = "PARAM_ERROR";
      return ParamError("algorithm_type", "query", "algorithm_type must be RSA");
    }
    if (options_.public_key_only) {
      response = ErrorResponse(404, "RESOURCE_NOT_EXISTS", "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥。");
      rec.error_code = "RESOURCE_NOT_EXISTS";
    } else {
      absl::StatusOr<std::string> body = BuildCertificatesBody(listed_certs, keys_.apiv3_key);
      if (!body.ok()) {
        rec.error_code = "SYSTEM_ERROR";
        return ErrorResponse(500, "SYSTEM_ERROR", "系统异常，请稍后重试");
      }
      response = JsonResponse(200, std::move(*body));
    }
  }

  // Fault injection.
  FaultPlan plan = fault.has_value() ? std::move(*fault) : FaultPlan();
  if (!plan.empty()) rec.fault = plan.spec;
  response.delay_ms = plan.latency_ms;
  if (plan.drop) {
    response.drop = true;
    return response;
  }
  if (plan.html_error) {
    SandboxResponse r;
    r.status = 502;
    r.body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
             "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    r.headers.push_back({"Content-Type", "text/html"});
    r.delay_ms = response.delay_ms;
    rec.error_code = "html_error";
    return r;
  }
  if (plan.status.has_value()) {
    SandboxResponse r = ErrorResponse(plan.status->http_status, plan.status->code, plan.status->message);
    r.delay_ms = response.delay_ms;
    rec.error_code = plan.status->code;
    return r;
  }
  if (response.status < 200 || response.status > 299) return response;

  if (plan.malformed_json) response.body = response.body.substr(0, response.body.size() / 2);
  if (plan.empty_body) response.body.clear();
  if (plan.huge_body.has_value() && *plan.huge_body > response.body.size()) {
    response.body.append(*plan.huge_body - response.body.size(), ' ');  // JSON allows trailing whitespace
  }

  const SigningKey* signing_key = key;
  if (plan.unknown_serial && stranger_key_.has_value()) signing_key = &*stranger_key_;
  absl::StatusOr<ResponseSignature> sig = signer_.Sign(*signing_key, response.body, plan.skew_timestamp_s);
  if (!sig.ok()) {
    rec.error_code = "SYSTEM_ERROR";
    return ErrorResponse(500, "SYSTEM_ERROR", "系统异常，请稍后重试");
  }
  if (plan.corrupt_signature) {
    absl::StatusOr<std::string> wrong =
        SignResponse(signing_key->key, sig->timestamp, sig->nonce, absl::StrCat(response.body, "#corrupted"));
    if (wrong.ok()) sig->signature = *wrong;
  }
  if (plan.probe_signature) {
    sig->signature = absl::StrCat("WECHATPAY/SIGNTEST/", crypto::Base64Encode(crypto::RandomBytes(33)));
  }
  rec.response_serial = sig->serial;
  if (!plan.missing_signature_headers) {
    response.headers.push_back({"Wechatpay-Nonce", sig->nonce});
    response.headers.push_back({"Wechatpay-Signature", sig->signature});
    response.headers.push_back({"Wechatpay-Timestamp", sig->timestamp});
    response.headers.push_back({"Wechatpay-Serial", sig->serial});
    response.headers.push_back({"Wechatpay-Signature-Type", std::string(kSignatureType)});
  }
  for (const std::string& name : plan.missing_headers) {
    if (name == "Request-ID") {
      ctx.omit_request_id = true;
    } else {
      RemoveHeader(response, name);
    }
  }
  return response;
}

}  // namespace palmgate::sandbox
