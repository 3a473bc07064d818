#include "sandbox/server.h"

#include <csignal>
#include <cstdio>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/net_util.h"

namespace palmgate::sandbox {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

void LogLine(const std::string& line) {
  std::string out = absl::StrCat("[palmgate-sandbox] ", line, "\n");
  std::fwrite(out.data(), 1, out.size(), stderr);
}

struct Shared {
  Handler* handler;
  ServerOptions options;
};

// Session<Stream>
//
// One HTTP/1.1 connection. Every handler runs on the connection's strand, so
// the members need no locking. Owned by the shared_ptrs captured in its
// pending operations.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <class... Args>
  Session(const Shared* shared, Args&&... args)
      : shared_(shared), stream_(std::forward<Args>(args)...), timer_(stream_.get_executor()) {}

  void Start() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->Begin(); });
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    beast::error_code peer_ec;
    const tcp::endpoint peer = Lowest().socket().remote_endpoint(peer_ec);
    from_loopback_ = !peer_ec && IsLoopbackIpLiteral(peer.address().to_string());
    if constexpr (kTls) {
      Lowest().expires_after(kHandshakeTimeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->Abort();
                                self->DoRead();
                              });
    } else {
      DoRead();
    }
  }

  void DoRead() {
    parser_.emplace();
    parser_->body_limit(shared_->options.body_limit);
    parser_->header_limit(static_cast<std::uint32_t>(shared_->options.header_limit));
    Lowest().expires_after(absl::ToChronoMilliseconds(shared_->options.idle_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted) {
      return DoClose();
    }
    if (ec == http::error::body_limit) return WriteSimpleError(413, "request body too large");
    if (ec == http::error::header_limit) return WriteSimpleError(431, "request header too large");
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::partial_message) {
      return WriteSimpleError(400, "malformed HTTP request");
    }
    if (ec) return Abort();

    const http::request<http::string_body>& req = parser_->get();
    SandboxRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    for (const auto& field : req) {
      request.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    request.body = req.body();
    request.from_loopback = from_loopback_;
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    const absl::Time start = absl::Now();
    SandboxResponse response = shared_->handler->Handle(request);
    if (shared_->options.access_log && !absl::StartsWith(request.target, "/_sandbox/")) {
      std::string line = absl::StrCat(request.method, " ", request.target, " -> ",
                                      response.drop ? std::string("DROP") : absl::StrCat(response.status));
      for (const HttpHeader& h : response.headers) {
        if (h.name == "Request-ID") absl::StrAppend(&line, " request_id=", h.value);
      }
      if (response.delay_ms > 0) absl::StrAppend(&line, " delay_ms=", response.delay_ms);
      absl::StrAppend(&line, " handled_us=", absl::ToInt64Microseconds(absl::Now() - start));
      if (shared_->options.max_body_log > 0) {
        absl::StrAppend(&line, " body=", response.body.substr(0, shared_->options.max_body_log));
      }
      LogLine(line);
    }
    if (response.drop && response.delay_ms <= 0) return Abort();
    pending_ = std::move(response);
    if (pending_->delay_ms > 0) {
      Lowest().expires_never();
      timer_.expires_after(std::chrono::milliseconds(pending_->delay_ms));
      timer_.async_wait([self = this->shared_from_this()](beast::error_code wait_ec) {
        if (wait_ec) return self->Abort();
        if (self->pending_->drop) return self->Abort();
        self->WritePending();
      });
      return;
    }
    WritePending();
  }

  void WriteSimpleError(int status, const char* message) {
    SandboxResponse r;
    r.status = status;
    r.body = absl::StrCat("{\"code\":\"INVALID_REQUEST\",\"message\":\"", message, "\"}");
    r.headers.push_back({"Content-Type", "application/json; charset=utf-8"});
    r.headers.push_back({"Server", "palmgate-sandbox"});
    keep_alive_ = false;
    version_ = 11;
    pending_ = std::move(r);
    WritePending();
  }

  void WritePending() {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(static_cast<unsigned>(pending_->status));
    for (HttpHeader& h : pending_->headers) res->insert(h.name, h.value);
    res->body() = std::move(pending_->body);
    res->keep_alive(keep_alive_);
    if (keep_alive_) {
      // Whole seconds, rounded up (8000 ms -> "timeout=8", as WeChat Pay sends).
      const int64_t idle_ms = absl::ToInt64Milliseconds(shared_->options.idle_timeout);
      res->set("Keep-Alive", absl::StrCat("timeout=", (idle_ms + 999) / 1000));
    }
    res->prepare_payload();
    pending_.reset();
    response_ = res;
    Lowest().expires_after(kWriteTimeout);
    http::async_write(stream_, *response_,
                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                        self->response_.reset();
                        if (ec) return self->Abort();
                        if (!self->keep_alive_) return self->DoClose();
                        self->DoRead();
                      });
  }

  void DoClose() {
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) { self->Abort(); });
    } else {
      beast::error_code ec;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  // Closes the socket without any further I/O (errors, the drop fault).
  void Abort() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().socket().close(ec);
  }

  const Shared* const shared_;
  Stream stream_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<SandboxResponse> pending_;
  std::shared_ptr<http::response<http::string_body>> response_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  bool from_loopback_ = false;  // the peer's address, read once at accept
};

absl::StatusOr<tcp::endpoint> ParseListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("--listen must be HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: bad port in \"", listen, "\""));
  }
  beast::error_code ec;
  net::ip::address address = net::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--listen: bad IP address \"", host, "\""));
  return tcp::endpoint(address, static_cast<unsigned short>(port));
}

}  // namespace

class Server::Impl {
 public:
  Impl(Handler* handler, const ServerOptions& options)
      : shared_{handler, options},
        ssl_ctx_(ssl::context::tls_server),
        ioc_(options.threads > 0 ? options.threads : 1),
        acceptor_(ioc_),
        signals_(ioc_) {}

  absl::Status Init() {
    const ServerOptions& o = shared_.options;
    if (o.tls) {
      beast::error_code ec;
      ssl_ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                               ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                           ec);
      ssl_ctx_.use_certificate_chain_file(o.tls_cert_path, ec);
      if (ec) return absl::InvalidArgumentError(absl::StrCat("TLS certificate ", o.tls_cert_path, ": ", ec.message()));
      ssl_ctx_.use_private_key_file(o.tls_key_path, ssl::context::pem, ec);
      if (ec) return absl::InvalidArgumentError(absl::StrCat("TLS key ", o.tls_key_path, ": ", ec.message()));
    }
    absl::StatusOr<tcp::endpoint> endpoint = ParseListen(o.listen);
    if (!endpoint.ok()) return endpoint.status();
    beast::error_code ec;
    acceptor_.open(endpoint->protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(*endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", o.listen, ": ", ec.message()));
    // The address really bound, as the kernel reports it: 0.0.0.0 or [::]
    // when that is what --listen asked for (every interface), never a
    // reassuring 127.0.0.1 in its place.
    const tcp::endpoint bound = acceptor_.local_endpoint(ec);
    if (ec) return absl::UnavailableError(absl::StrCat("cannot read the address bound for ", o.listen, ": ", ec.message()));
    port_ = bound.port();
    host_ = bound.address().is_v6() ? absl::StrCat("[", bound.address().to_string(), "]") : bound.address().to_string();
    return absl::OkStatus();
  }

  void Run() {
    if (shared_.options.handle_signals) {
      beast::error_code ec;
      signals_.add(SIGINT, ec);
      signals_.add(SIGTERM, ec);
      signals_.async_wait([this](beast::error_code wait_ec, int signo) {
        if (wait_ec) return;
        LogLine(absl::StrCat("signal ", signo, ": shutting down"));
        Shutdown();
      });
    }
    DoAccept();
    const int n = shared_.options.threads > 0 ? shared_.options.threads : 1;
    std::vector<std::thread> threads;
    for (int i = 1; i < n; ++i) threads.emplace_back([this] { ioc_.run(); });
    ioc_.run();
    for (std::thread& t : threads) t.join();
  }

  void Shutdown() {
    net::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      signals_.cancel(ec);
      ioc_.stop();
    });
  }

  int port() const { return port_; }
  std::string base_url() const {
    return absl::StrCat(shared_.options.tls ? "https" : "http", "://", host_, ":", port_);
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) {
        beast::error_code opt_ec;
        socket.set_option(tcp::no_delay(true), opt_ec);
        if (shared_.options.tls) {
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(&shared_, std::move(socket), ssl_ctx_)
              ->Start();
        } else {
          std::make_shared<Session<beast::tcp_stream>>(&shared_, std::move(socket))->Start();
        }
      } else {
        LogLine(absl::StrCat("accept: ", ec.message()));
      }
      DoAccept();
    });
  }

  Shared shared_;
  ssl::context ssl_ctx_;  // before ioc_: sessions (destroyed with ioc_) use it
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::signal_set signals_;
  int port_ = 0;
  std::string host_;
};

absl::StatusOr<std::unique_ptr<Server>> Server::Create(Handler* handler, const ServerOptions& options) {
  auto impl = std::make_unique<Impl>(handler, options);
  absl::Status s = impl->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;
int Server::port() const { return impl_->port(); }
std::string Server::base_url() const { return impl_->base_url(); }
void Server::Run() { impl_->Run(); }
void Server::Shutdown() { impl_->Shutdown(); }

}  // namespace palmgate::sandbox
