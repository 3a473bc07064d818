#include "sandbox/request_verifier.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sandbox/authorization_parser.h"
#include "server/crypto/base64.h"

namespace palmgate::sandbox {
namespace {

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

RequestVerifier::RequestVerifier(MerchantIdentity merchant, const Clock* clock, int64_t window_s,
                                 size_t max_nonces)
    : merchant_(std::move(merchant)), clock_(clock), window_s_(window_s), nonces_(max_nonces) {}

RequestVerification RequestVerifier::Verify(absl::string_view method, absl::string_view raw_target,
                                            absl::string_view body, absl::string_view authorization) {
  RequestVerification out;
  absl::StatusOr<AuthorizationFields> fields = ParseAuthorization(authorization);
  if (!fields.ok()) {
    out.sign_message = BuildRequestSignMessage(method, raw_target, "", "", body);
    out.status = absl::UnauthenticatedError(fields.status().message());
    return out;
  }
  out.mchid = fields->mchid;
  out.sign_message = BuildRequestSignMessage(method, raw_target, fields->timestamp, fields->nonce_str, body);
  if (fields->mchid != merchant_.mchid) {
    out.status = absl::UnauthenticatedError(absl::StrCat("unknown mchid \"", fields->mchid, "\""));
    return out;
  }
  if (!absl::EqualsIgnoreCase(fields->serial_no, merchant_.serial)) {
    out.status = absl::UnauthenticatedError(
        absl::StrCat("serial_no \"", fields->serial_no, "\" is not the merchant API certificate serial"));
    return out;
  }
  int64_t ts = 0;
  if (!AllDigits(fields->timestamp) || fields->timestamp.size() > 12 ||
      !absl::SimpleAtoi(fields->timestamp, &ts)) {
    out.status = absl::UnauthenticatedError("timestamp is not a decimal unix time in seconds");
    return out;
  }
  const int64_t now = absl::ToUnixSeconds(clock_->Now());
  const int64_t skew = ts - now;
  if (skew > window_s_ || skew < -window_s_) {
    out.status = absl::UnauthenticatedError(absl::StrCat("timestamp ", ts, " is ", std::llabs(skew),
                                                         " s away from the server clock (limit ",
                                                         window_s_, " s)"));
    return out;
  }
  absl::StatusOr<std::string> signature = crypto::Base64Decode(fields->signature);
  if (!signature.ok()) {
    out.status = absl::UnauthenticatedError("signature is not valid standard Base64");
    return out;
  }
  absl::StatusOr<bool> valid = merchant_.public_key.VerifySha256(out.sign_message, *signature);
  if (!valid.ok()) {
    out.status = absl::UnauthenticatedError(absl::StrCat("verification error: ", valid.status().message()));
    return out;
  }
  if (!*valid) {
    out.status = absl::UnauthenticatedError("sign not match");
    return out;
  }
  // Only verified requests consume a nonce, so garbage cannot fill the cache.
  if (!nonces_.Insert(absl::StrCat(fields->mchid, "|", fields->nonce_str), ts + window_s_ + 1, now)) {
    out.status = absl::UnauthenticatedError("nonce_str has already been used within the timestamp window");
    return out;
  }
  out.status = absl::OkStatus();
  return out;
}

}  // namespace palmgate::sandbox
