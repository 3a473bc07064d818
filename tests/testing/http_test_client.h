// File: tests/testing/http_test_client.h
//
// A tiny blocking HTTP/1.1 client for tests only (Boost.Beast, optional TLS
// trusting a given CA file). Every operation has a deadline, enforced by
// running async operations on a private io_context; nothing throws.
// Not the gateway's transport (that one is libcurl, in server/wechatpay/).
//
// Example:
//   PALMGATE_ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(url, ca));
//   PALMGATE_ASSERT_OK_AND_ASSIGN(TestHttpResponse r, client->Send({"GET", "/v3/certificates"}));
//
// Thread safety: a TestHttpClient is used by one thread at a time.
#ifndef PALMGATE_TESTS_TESTING_HTTP_TEST_CLIENT_H_
#define PALMGATE_TESTS_TESTING_HTTP_TEST_CLIENT_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace palmgate::testing {

struct TestHttpRequest {
  std::string method = "GET";
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct TestHttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // First value of header `name` (case-insensitive), or nullopt.
  std::optional<std::string> Header(absl::string_view name) const;
};

class TestHttpClient {
 public:
  // Connects to `base_url` ("http://127.0.0.1:PORT" or "https://…"). For
  // https, the server certificate is verified against `ca_file` and the host
  // name. kUnavailable when the connection or handshake fails.
  static absl::StatusOr<std::unique_ptr<TestHttpClient>> Connect(absl::string_view base_url,
                                                                 const std::string& ca_file = "",
                                                                 absl::Duration timeout = absl::Seconds(30));
  ~TestHttpClient();

  // Sends one request on the kept-alive connection and reads the response.
  // kUnavailable when the server closes the connection without a response,
  // kDeadlineExceeded on timeout.
  absl::StatusOr<TestHttpResponse> Send(const TestHttpRequest& request);

  // Waits until the server closes the connection: OK when it did within
  // `timeout`, kDeadlineExceeded otherwise.
  absl::Status WaitForServerClose(absl::Duration timeout);

  class Impl;

 private:
  explicit TestHttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Connects, sends one request and closes.
absl::StatusOr<TestHttpResponse> HttpFetch(absl::string_view base_url, const TestHttpRequest& request,
                                           const std::string& ca_file = "",
                                           absl::Duration timeout = absl::Seconds(30));

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_HTTP_TEST_CLIENT_H_
