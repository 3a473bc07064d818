#include "sandbox/request_log.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace palmgate::sandbox {

using Json = nlohmann::ordered_json;

void RequestLog::Record(RequestRecord record) {
  absl::MutexLock lock(&mu_);
  ++requests_total_;
  if (!record.sign_error_issue.empty()) ++sign_errors_;
  if (!record.fault.empty()) {
    ++faults_injected_;
    ++faults_by_spec_[record.fault];
  }
  if (record.status == 0) ++dropped_;
  ++by_endpoint_[record.endpoint][record.status];
  ++by_status_[record.status];
  records_.push_back(std::move(record));
  while (records_.size() > kMaxRecords) records_.pop_front();
}

std::string RequestLog::StatsJson() const {
  absl::MutexLock lock(&mu_);
  Json by_endpoint = Json::object();
  for (const auto& [endpoint, statuses] : by_endpoint_) {
    Json s = Json::object();
    for (const auto& [status, n] : statuses) s[absl::StrCat(status)] = n;
    by_endpoint[endpoint] = std::move(s);
  }
  Json by_status = Json::object();
  for (const auto& [status, n] : by_status_) by_status[absl::StrCat(status)] = n;
  Json faults_by_spec = Json::object();
  for (const auto& [spec, n] : faults_by_spec_) faults_by_spec[spec] = n;
  Json out = {{"requests_total", requests_total_}, {"by_endpoint", std::move(by_endpoint)},
              {"by_status", std::move(by_status)},  {"sign_errors", sign_errors_},
              {"faults_injected", faults_injected_}, {"faults_by_spec", std::move(faults_by_spec)},
              {"dropped", dropped_}};
  return out.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string RequestLog::RequestsJson() const {
  absl::MutexLock lock(&mu_);
  Json out = Json::array();
  for (const RequestRecord& r : records_) {
    Json j = {{"request_id", r.request_id}, {"method", r.method}, {"target", r.target},
              {"endpoint", r.endpoint},     {"status", r.status}};
    if (r.openid.has_value()) j["openid"] = *r.openid;
    if (r.organization_id.has_value()) j["organization_id"] = *r.organization_id;
    j["fault"] = r.fault.empty() ? Json(nullptr) : Json(r.fault);
    if (!r.response_serial.empty()) j["response_serial"] = r.response_serial;
    if (!r.error_code.empty()) j["error_code"] = r.error_code;
    if (!r.sign_error_issue.empty()) j["sign_error_issue"] = r.sign_error_issue;
    j["unix_ms"] = r.unix_ms;
    out.push_back(std::move(j));
  }
  return out.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void RequestLog::Reset() {
  absl::MutexLock lock(&mu_);
  records_.clear();
  requests_total_ = sign_errors_ = faults_injected_ = dropped_ = 0;
  by_endpoint_.clear();
  by_status_.clear();
  faults_by_spec_.clear();
}

}  // namespace palmgate::sandbox
