// File: tests/fuzz/fuzz_util.h
//
// Shared pieces of the libFuzzer targets: an invariant check that stops the
// fuzzer (a crash libFuzzer records as an artifact), test data access, the
// fixed clock and the test keys, and the text format of an HTTP response that
// the response targets read:
//
//   STATUS\n
//   Name: value\n        (any number of header lines)
//   \n
//   BODY                 (everything after the empty line, any bytes)
//
// Example:
//   PALMGATE_FUZZ_CHECK(target.find('#') == std::string::npos);
#ifndef PALMGATE_TESTS_FUZZ_FUZZ_UTIL_H_
#define PALMGATE_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/file_util.h"
#include "server/wechatpay/http_message.h"

// Stops the run when an invariant of the code under test does not hold.
#define PALMGATE_FUZZ_CHECK(cond)                                                           \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                                     \
    }                                                                                       \
  } while (0)

namespace palmgate::fuzz {

// The local time of every target: the time at which wechatpay-java's test
// vectors D3/D4 (tests/wechatpay/response_validator_test.cc) were signed.
inline const absl::Time kNow = absl::FromUnixSeconds(1722850421);

// wechatpay-java's test keys: K3 signs as platform certificate
// 440024045C4A427599D09BB4E3DE0279F2E813FD and as public key kPubKeyId;
// wechatpay-go's K1 as certificate F5765756002FDD77.
inline constexpr absl::string_view kK3CertSerial = "440024045C4A427599D09BB4E3DE0279F2E813FD";
inline constexpr absl::string_view kPubKeyId = "PUB_KEY_ID_0114232134912410000000000000000001";
inline constexpr absl::string_view kK1CertSerial = "F5765756002FDD77";
// The APIv3 key of wechatpay-java's /v3/certificates vector (tests/testdata/vectors/java_certs_response.json).
inline constexpr absl::string_view kApiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
// The query of vectors D3/D4.
inline constexpr absl::string_view kOpenid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
inline constexpr absl::string_view kOrganizationId = "1004";

// Returns tests/testdata/<relative>; aborts when unreadable (a broken setup, not a finding).
inline std::string TestData(const std::string& relative) {
  absl::StatusOr<std::string> contents = ReadFile(std::string(PALMGATE_TESTDATA_DIR) + "/" + relative);
  if (!contents.ok()) {
    std::fprintf(stderr, "fuzz setup: %s\n", std::string(contents.status().message()).c_str());
    std::abort();
  }
  return *std::move(contents);
}

// Parses the text form above. Returns nullopt when the status line is not a number.
inline std::optional<wechatpay::HttpResponse> ParseHttpText(absl::string_view in) {
  wechatpay::HttpResponse r;
  size_t eol = in.find('\n');
  if (eol == absl::string_view::npos) return std::nullopt;
  if (!absl::SimpleAtoi(in.substr(0, eol), &r.status)) return std::nullopt;
  in.remove_prefix(eol + 1);
  while (!in.empty()) {
    eol = in.find('\n');
    absl::string_view line = in.substr(0, eol);
    in.remove_prefix(eol == absl::string_view::npos ? in.size() : eol + 1);
    if (line.empty()) break;
    // As the transport does: name and value split at the first ':' and trimmed.
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos || colon == 0) continue;
    r.headers.Add(std::string(absl::StripAsciiWhitespace(line.substr(0, colon))),
                  std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  r.body = std::string(in);
  return r;
}

}  // namespace palmgate::fuzz

#endif  // PALMGATE_TESTS_FUZZ_FUZZ_UTIL_H_
