#include "server/wechatpay/palm_service_client.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/wechatpay/error.h"
#include "server/wechatpay/request_target.h"

namespace palmgate::wechatpay {
namespace {

absl::Status Malformed(absl::string_view why, const std::string& request_id) {
  UpstreamError e;
  e.reason = ErrorReason::kUpstreamMalformedResponse;
  e.http_status = 200;
  e.request_id = request_id;
  return MakeError(absl::StatusCode::kInternal, absl::StrCat("wechatpay: malformed response: ", why), std::move(e));
}

// Reads an optional string member. Returns false when present with another type.
bool OptionalString(const nlohmann::json& obj, const char* name, std::string* out) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

}  // namespace

absl::StatusOr<AuthorizationResult> ParseAuthorizationBody(absl::string_view body, absl::string_view openid,
                                                           absl::string_view organization_id) {
  nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return Malformed("body is not a JSON object", "");
  AuthorizationResult r;
  for (auto [name, out] : {std::pair{"openid", &r.openid}, std::pair{"organization_id", &r.organization_id},
                           std::pair{"state", &r.state}, std::pair{"authorize_time", &r.authorize_time_raw}}) {
    if (!OptionalString(doc, name, out)) return Malformed(absl::StrCat("\"", name, "\" is not a string"), "");
  }
  // A verified answer about someone else is still the wrong answer.
  if (!r.openid.empty() && r.openid != openid) return Malformed("answer is for another openid", "");
  if (!r.organization_id.empty() && r.organization_id != organization_id) {
    return Malformed("answer is for another organization_id", "");
  }
  if (!r.authorize_time_raw.empty()) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, r.authorize_time_raw, &t, &err)) r.authorize_time = t;
  }
  return r;
}

PalmServiceClient::PalmServiceClient(Options options, std::shared_ptr<const Credential> credential,
                                     const KeyStore* keys, HttpTransport* transport, const Clock& clock)
    : options_(std::move(options)), credential_(std::move(credential)), keys_(keys), transport_(transport),
      clock_(clock) {}

TransferId PalmServiceClient::GetAuthorization(absl::string_view openid, absl::string_view organization_id,
                                               absl::Time deadline, Callback done) const {
  absl::StatusOr<std::string> target = AuthorizationQueryTarget(openid, organization_id);
  if (!target.ok()) {
    std::move(done)(target.status());
    return 0;
  }
  const absl::Duration remaining = deadline - clock_.Now();
  if (remaining <= absl::ZeroDuration()) {
    std::move(done)(MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                              "deadline already expired; nothing sent upstream"));
    return 0;
  }
  absl::StatusOr<std::string> authorization = credential_->AuthorizationHeader("GET", *target, "");
  if (!authorization.ok()) {
    std::move(done)(MakeError(absl::StatusCode::kInternal, ErrorReason::kConfiguration,
                              absl::StrCat("sign request: ", authorization.status().message())));
    return 0;
  }
  HttpRequest request;
  request.method = "GET";
  request.url = absl::StrCat(options_.base_url, *target);
  request.timeout = std::min(remaining, options_.max_timeout);
  request.headers.Add("Accept", "application/json");
  request.headers.Add("Authorization", *std::move(authorization));
  request.headers.Add("Wechatpay-Serial", keys_->Current()->preferred_serial());

  return transport_->Send(
      std::move(request),
      [this, openid = std::string(openid), organization_id = std::string(organization_id),
       done = std::move(done)](absl::StatusOr<HttpResponse> response) mutable {
        if (!response.ok()) {
          std::move(done)(response.status());
          return;
        }
        // The snapshot taken now is used for the whole verification, even if keys rotate meanwhile.
        std::shared_ptr<const KeyRing> ring = keys_->Current();
        absl::StatusOr<VerifiedResponse> verified =
            ValidateResponse(*response, *ring, clock_.Now(), options_.validator);
        if (!verified.ok()) {
          std::move(done)(verified.status());
          return;
        }
        absl::StatusOr<AuthorizationResult> result = ParseAuthorizationBody(response->body, openid, organization_id);
        if (!result.ok()) {
          std::optional<UpstreamError> e = GetUpstreamError(result.status());
          if (e.has_value()) {
            e->request_id = verified->request_id;
            std::move(done)(MakeError(result.status().code(), result.status().message(), *std::move(e)));
          } else {
            std::move(done)(result.status());
          }
          return;
        }
        result->request_id = verified->request_id;
        result->verified_by = verified->serial;
        result->clock_skew = verified->skew;
        std::move(done)(std::move(result));
      });
}

}  // namespace palmgate::wechatpay
