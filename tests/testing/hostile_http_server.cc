#include "tests/testing/hostile_http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/crypto/aes_gcm.h"
#include "server/crypto/base64.h"
#include "server/crypto/rsa.h"
#include "server/crypto/ssl_ptr.h"

namespace palmgate::testing {
namespace {

constexpr size_t kMaxRequestHead = 64 * 1024;

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

// A write to a peer that has gone must fail with EPIPE, not kill the test.
void IgnoreSigpipeOnce() {
  static const bool done = [] {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, nullptr);
    return true;
  }();
  (void)done;
}

}  // namespace

class HostileHttpServer::Impl {
 public:
  ~Impl() { Stop(); }

  absl::Status Listen(const Options& options) {
    IgnoreSigpipeOnce();
    if (!options.tls_cert_pem.empty()) {
      if (absl::Status s = SetUpTls(options); !s.ok()) return s;
    }
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listen_fd_, 512) != 0) {
      return absl::InternalError(absl::StrCat("bind/listen: ", std::strerror(errno)));
    }
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    return absl::OkStatus();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    if (stop_pipe_[1] >= 0) {
      [[maybe_unused]] ssize_t n = ::write(stop_pipe_[1], "x", 1);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    for (int fd : stop_pipe_) {
      if (fd >= 0) ::close(fd);
    }
  }

  int port() const { return port_; }
  bool tls() const { return ctx_ != nullptr; }

  void SetScript(ScriptFn script) {
    absl::MutexLock lock(&mu_);
    script_ = std::make_shared<ScriptFn>(std::move(script));
  }

  std::vector<HostileConnection> Connections() const {
    absl::MutexLock lock(&mu_);
    return connections_;
  }

  size_t RequestCount() const {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const HostileConnection& c : connections_) n += c.heads.size();
    return n;
  }

  bool WaitAllClosed(size_t min_connections, absl::Duration timeout) const {
    auto done = [this, min_connections]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return connections_.size() >= min_connections &&
             std::all_of(connections_.begin(), connections_.end(), [](const HostileConnection& c) { return c.closed; });
    };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

 private:
  absl::Status SetUpTls(const Options& options) {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    if (ctx_ == nullptr) return absl::InternalError("SSL_CTX_new");
    crypto::SslPtr<BIO> cert_bio(BIO_new_mem_buf(options.tls_cert_pem.data(), static_cast<int>(options.tls_cert_pem.size())));
    crypto::SslPtr<X509> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr || SSL_CTX_use_certificate(ctx_.get(), cert.get()) != 1) {
      return absl::InvalidArgumentError("TLS certificate PEM");
    }
    // The rest of the PEM, if any, is the chain.
    while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
      SSL_CTX_add_extra_chain_cert(ctx_.get(), extra);  // takes ownership
    }
    ERR_clear_error();
    crypto::SslPtr<BIO> key_bio(BIO_new_mem_buf(options.tls_key_pem.data(), static_cast<int>(options.tls_key_pem.size())));
    crypto::SslPtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (key == nullptr || SSL_CTX_use_PrivateKey(ctx_.get(), key.get()) != 1) {
      return absl::InvalidArgumentError("TLS key PEM");
    }
    return absl::OkStatus();
  }

  void AcceptLoop() {
    for (;;) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      const size_t index = connections_.size();
      connections_.emplace_back();
      open_fds_.push_back(fd);
      threads_.emplace_back([this, fd, index] { Serve(fd, index); });
    }
  }

  // Blocking I/O on one connection, plain or TLS.
  class Stream {
   public:
    Stream(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
    // Returns bytes read, 0 on EOF or error.
    size_t Read(char* buf, size_t len) {
      if (ssl_ != nullptr) {
        const int n = SSL_read(ssl_.get(), buf, static_cast<int>(len));
        return n > 0 ? static_cast<size_t>(n) : 0;
      }
      for (;;) {
        const ssize_t n = ::recv(fd_, buf, len, 0);
        if (n < 0 && errno == EINTR) continue;
        return n > 0 ? static_cast<size_t>(n) : 0;
      }
    }
    // Returns false when the peer is gone.
    bool Write(absl::string_view data) {
      while (!data.empty()) {
        if (ssl_ != nullptr) {
          const int n = SSL_write(ssl_.get(), data.data(), static_cast<int>(data.size()));
          if (n <= 0) return false;
          data.remove_prefix(static_cast<size_t>(n));
        } else {
          const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) return false;
          data.remove_prefix(static_cast<size_t>(n));
        }
      }
      return true;
    }
    void Close() {
      if (ssl_ != nullptr) SSL_shutdown(ssl_.get());
      ssl_.reset();
    }

   private:
    int fd_;
    std::unique_ptr<SSL, SslDeleter> ssl_;
  };

  void Serve(int fd, size_t index) {
    SSL* ssl = nullptr;
    if (ctx_ != nullptr) {
      ssl = SSL_new(ctx_.get());
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        Closed(fd, index, /*tls_failed=*/true);
        return;
      }
    }
    Stream stream(fd, ssl);
    std::string pending;
    for (;;) {
      // Read one request head.
      size_t end;
      while ((end = pending.find("\r\n\r\n")) == std::string::npos && pending.size() < kMaxRequestHead) {
        char buf[4096];
        const size_t n = stream.Read(buf, sizeof(buf));
        if (n == 0) {
          stream.Close();
          Closed(fd, index, false);
          return;
        }
        pending.append(buf, n);
      }
      if (end == std::string::npos) break;
      std::string head = pending.substr(0, end + 4);
      pending.erase(0, end + 4);
      std::shared_ptr<ScriptFn> script;
      {
        absl::MutexLock lock(&mu_);
        connections_[index].heads.push_back(head);
        script = script_;
      }
      HostileScript s;
      if (script != nullptr && *script) {
        s = (*script)(head);
      } else {
        s.head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
      }
      if (!Run(stream, s, index) || s.close_after || !s.repeat.empty()) break;
    }
    stream.Close();
    Closed(fd, index, false);
  }

  // Sends one script; false when the peer went away or the server stops.
  bool Run(Stream& stream, const HostileScript& s, size_t index) {
    if (!s.head.empty() && !Send(stream, s.head, index)) return false;
    if (s.byte_interval > absl::ZeroDuration()) {
      for (char c : s.body) {
        if (!Send(stream, absl::string_view(&c, 1), index)) return false;
        absl::MutexLock lock(&mu_);
        // The server is slow on purpose: this wait is the behaviour under test.
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), s.byte_interval)) return false;
      }
    } else if (!s.body.empty() && !Send(stream, s.body, index)) {
      return false;
    }
    if (s.repeat.empty()) return true;
    size_t sent = 0;
    while (s.repeat_limit == 0 || sent < s.repeat_limit) {
      absl::string_view piece = s.repeat;
      if (s.repeat_limit != 0) piece = piece.substr(0, s.repeat_limit - sent);
      if (!Send(stream, piece, index)) return false;
      sent += piece.size();
    }
    return true;
  }

  bool Send(Stream& stream, absl::string_view data, size_t index) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return false;
    }
    if (!stream.Write(data)) return false;
    absl::MutexLock lock(&mu_);
    connections_[index].bytes_written += data.size();
    return true;
  }

  void Closed(int fd, size_t index, bool tls_failed) {
    absl::MutexLock lock(&mu_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
    ::close(fd);
    connections_[index].tls_failed = tls_failed;
    connections_[index].closed = true;
  }

  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::thread accept_thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<ScriptFn> script_ ABSL_GUARDED_BY(mu_);
  std::vector<HostileConnection> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<HostileHttpServer>> HostileHttpServer::Start(const Options& options) {
  auto impl = std::make_unique<Impl>();
  if (absl::Status s = impl->Listen(options); !s.ok()) return s;
  std::unique_ptr<HostileHttpServer> server(new HostileHttpServer(std::move(impl)));
  return server;
}

HostileHttpServer::HostileHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  port_ = impl_->port();
  base_url_ = absl::StrCat(impl_->tls() ? "https" : "http", "://127.0.0.1:", port_);
}

HostileHttpServer::~HostileHttpServer() { impl_->Stop(); }

void HostileHttpServer::SetScript(ScriptFn script) { impl_->SetScript(std::move(script)); }

std::vector<HostileConnection> HostileHttpServer::Connections() const { return impl_->Connections(); }

size_t HostileHttpServer::RequestCount() const { return impl_->RequestCount(); }

bool HostileHttpServer::WaitAllClosed(size_t min_connections, absl::Duration timeout) const {
  return impl_->WaitAllClosed(min_connections, timeout);
}

absl::StatusOr<std::string> WechatpaySignatureHeaders(absl::string_view body, const std::string& private_key_pem,
                                                      const std::string& serial, absl::Time now,
                                                      absl::string_view request_id) {
  absl::StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::FromPem(private_key_pem);
  if (!key.ok()) return key.status();
  const std::string timestamp = absl::StrCat(absl::ToUnixSeconds(now));
  const std::string nonce = crypto::RandomAlphanumeric(32);
  absl::StatusOr<std::string> signature = key->SignSha256(absl::StrCat(timestamp, "\n", nonce, "\n", body, "\n"));
  if (!signature.ok()) return signature.status();
  return absl::StrCat("Wechatpay-Timestamp: ", timestamp, "\r\nWechatpay-Nonce: ", nonce,
                      "\r\nWechatpay-Signature: ", crypto::Base64Encode(*signature), "\r\nWechatpay-Serial: ", serial,
                      "\r\nRequest-ID: ", request_id, "\r\n");
}

}  // namespace palmgate::testing
