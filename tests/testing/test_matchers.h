// File: tests/testing/test_matchers.h
//
// GoogleTest matchers for absl::Status and absl::StatusOr, in the shape of
// Tink's util/test_matchers.h (Debian's Abseil has no status_matchers.h).
//
// Example:
//   EXPECT_THAT(Parse(x), IsOk());
//   EXPECT_THAT(Parse(y), StatusIs(absl::StatusCode::kInvalidArgument));
//   EXPECT_THAT(Validate(z), ReasonIs(wechatpay::ErrorReason::kResponseSignatureProbe));
#ifndef PALMGATE_TESTS_TESTING_TEST_MATCHERS_H_
#define PALMGATE_TESTS_TESTING_TEST_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace palmgate::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + ::testing::PrintToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher, "has status code and message") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status: " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace palmgate::testing

#define PALMGATE_ASSERT_OK_AND_ASSIGN(lhs, expr)                                    \
  PALMGATE_ASSERT_OK_AND_ASSIGN_IMPL_(PALMGATE_TEST_CONCAT_(statusor_, __LINE__), lhs, expr)
#define PALMGATE_TEST_CONCAT_INNER_(a, b) a##b
#define PALMGATE_TEST_CONCAT_(a, b) PALMGATE_TEST_CONCAT_INNER_(a, b)
#define PALMGATE_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                        \
  ASSERT_TRUE(statusor.ok()) << statusor.status();               \
  lhs = std::move(statusor).value()

#endif  // PALMGATE_TESTS_TESTING_TEST_MATCHERS_H_
