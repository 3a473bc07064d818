#include "tests/testing/http_test_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace palmgate::testing {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

absl::Status IoError(absl::string_view what, const beast::error_code& ec) {
  if (ec == beast::error::timeout) return absl::DeadlineExceededError(absl::StrCat(what, ": timeout"));
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

}  // namespace

std::optional<std::string> TestHttpResponse::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return std::nullopt;
}

class TestHttpClient::Impl {
 public:
  Impl(bool tls, absl::Duration timeout)
      : tls_(tls), timeout_(timeout), ssl_ctx_(ssl::context::tls_client), plain_(ioc_) {}

  absl::Status Connect(const std::string& host, const std::string& port, const std::string& ca_file) {
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(host, port, ec);
    if (ec) return IoError("resolve", ec);
    if (tls_) {
      ssl_ctx_.set_verify_mode(ssl::verify_peer, ec);
      ssl_ctx_.load_verify_file(ca_file, ec);
      if (ec) return IoError(absl::StrCat("load CA ", ca_file), ec);
      tls_stream_.emplace(ioc_, ssl_ctx_);
      tls_stream_->set_verify_callback(ssl::host_name_verification(host), ec);
      if (!SSL_set_tlsext_host_name(tls_stream_->native_handle(), host.c_str())) {
        return absl::InternalError("SNI");
      }
    }
    beast::tcp_stream& lowest = Lowest();
    lowest.expires_after(absl::ToChronoMilliseconds(timeout_));
    lowest.async_connect(results, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    Run();
    if (ec) return IoError("connect", ec);
    if (tls_) {
      lowest.expires_after(absl::ToChronoMilliseconds(timeout_));
      tls_stream_->async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
      Run();
      if (ec) return IoError("TLS handshake", ec);
    }
    host_ = host;
    return absl::OkStatus();
  }

  absl::StatusOr<TestHttpResponse> Send(const TestHttpRequest& request) {
    http::request<http::string_body> req;
    req.version(11);
    req.method_string(request.method);
    req.target(request.target);
    req.set(http::field::host, host_);
    for (const auto& [k, v] : request.headers) req.insert(k, v);
    req.body() = request.body;
    if (!request.body.empty() || request.method != "GET") req.prepare_payload();
    beast::error_code ec;
    Lowest().expires_after(absl::ToChronoMilliseconds(timeout_));
    if (tls_) {
      http::async_write(*tls_stream_, req, [&](beast::error_code e, size_t) { ec = e; });
    } else {
      http::async_write(plain_, req, [&](beast::error_code e, size_t) { ec = e; });
    }
    Run();
    if (ec) return IoError("write", ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(256u << 20);
    Lowest().expires_after(absl::ToChronoMilliseconds(timeout_));
    if (tls_) {
      http::async_read(*tls_stream_, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
    } else {
      http::async_read(plain_, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
    }
    Run();
    if (ec) return IoError("read response", ec);
    TestHttpResponse out;
    const auto& res = parser.get();
    out.status = static_cast<int>(res.result_int());
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    out.body = res.body();
    return out;
  }

  absl::Status WaitForServerClose(absl::Duration timeout) {
    beast::error_code ec;
    char byte;
    Lowest().expires_after(absl::ToChronoMilliseconds(timeout));
    if (tls_) {
      tls_stream_->async_read_some(net::buffer(&byte, 1), [&](beast::error_code e, size_t) { ec = e; });
    } else {
      plain_.async_read_some(net::buffer(&byte, 1), [&](beast::error_code e, size_t) { ec = e; });
    }
    Run();
    if (ec == beast::error::timeout) return absl::DeadlineExceededError("server kept the connection open");
    if (!ec) return absl::FailedPreconditionError("server sent unexpected data");
    return absl::OkStatus();  // eof, reset, TLS close: all mean closed
  }

  ~Impl() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().socket().close(ec);
  }

 private:
  beast::tcp_stream& Lowest() { return tls_ ? beast::get_lowest_layer(*tls_stream_) : plain_; }
  void Run() {
    ioc_.restart();
    ioc_.run();
  }

  const bool tls_;
  const absl::Duration timeout_;
  net::io_context ioc_;
  ssl::context ssl_ctx_;
  beast::tcp_stream plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_stream_;
  beast::flat_buffer buffer_;
  std::string host_;
};

absl::StatusOr<std::unique_ptr<TestHttpClient>> TestHttpClient::Connect(absl::string_view base_url,
                                                                         const std::string& ca_file,
                                                                         absl::Duration timeout) {
  bool tls;
  absl::string_view rest = base_url;
  if (absl::ConsumePrefix(&rest, "http://")) {
    tls = false;
  } else if (absl::ConsumePrefix(&rest, "https://")) {
    tls = true;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("bad base URL ", base_url));
  }
  size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos) return absl::InvalidArgumentError("base URL without port");
  std::string host(rest.substr(0, colon));
  std::string port(absl::StripSuffix(rest.substr(colon + 1), "/"));
  auto impl = std::make_unique<Impl>(tls, timeout);
  absl::Status s = impl->Connect(host, port, ca_file);
  if (!s.ok()) return s;
  return std::unique_ptr<TestHttpClient>(new TestHttpClient(std::move(impl)));
}

TestHttpClient::TestHttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TestHttpClient::~TestHttpClient() = default;

absl::StatusOr<TestHttpResponse> TestHttpClient::Send(const TestHttpRequest& request) { return impl_->Send(request); }

absl::Status TestHttpClient::WaitForServerClose(absl::Duration timeout) { return impl_->WaitForServerClose(timeout); }

absl::StatusOr<TestHttpResponse> HttpFetch(absl::string_view base_url, const TestHttpRequest& request,
                                           const std::string& ca_file, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<TestHttpClient>> client = TestHttpClient::Connect(base_url, ca_file, timeout);
  if (!client.ok()) return client.status();
  return (*client)->Send(request);
}

}  // namespace palmgate::testing
