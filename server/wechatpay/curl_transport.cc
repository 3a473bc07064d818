#include "server/wechatpay/curl_transport.h"

#include <curl/curl.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <set>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/common/net_util.h"
#include "server/wechatpay/error.h"

namespace palmgate::wechatpay {
namespace {

constexpr char kVersion[] = "0.1.0";
constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr absl::Duration kDeadlineGrace = absl::Milliseconds(5);
// A transfer leaving the line with less of its budget left is not sent: it could not be answered in time.
constexpr absl::Duration kMinRunTime = absl::Milliseconds(10);

struct CurlEasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct CurlMultiDeleter {
  void operator()(CURLM* h) const { curl_multi_cleanup(h); }
};
struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlEasyDeleter>;
using CurlMultiPtr = std::unique_ptr<CURLM, CurlMultiDeleter>;
using CurlHeaders = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// CURLOPT_SSL_CTX_FUNCTION: idle TLS connections give their record buffers
// back (about 34 KB each), which matters with thousands of pooled connections.
CURLcode ReleaseIdleBuffers(CURL* /*easy*/, void* ssl_ctx, void* /*userp*/) {
  SSL_CTX_set_mode(static_cast<SSL_CTX*>(ssl_ctx), SSL_MODE_RELEASE_BUFFERS);
  return CURLE_OK;
}

absl::Status TransportError(absl::StatusCode code, ErrorReason reason, std::string message) {
  UpstreamError e;
  e.reason = reason;
  if (reason == ErrorReason::kUpstreamUnavailable || reason == ErrorReason::kUpstreamConnectionsBusy) {
    e.retry_after = absl::Seconds(1);
  }
  return MakeError(code, message, std::move(e));
}

// Maps a failed transfer to a Status (google-cloud-cpp's AsStatus shape).
absl::Status AsStatus(CURLcode code, const char* error_buffer) {
  std::string detail = error_buffer != nullptr && error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return TransportError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                            absl::StrCat("upstream: timed out (", detail, ")"));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return TransportError(absl::StatusCode::kUnavailable, ErrorReason::kUpstreamTlsError,
                            absl::StrCat("upstream: tls: ", detail));
    // libcurl 7.88 refuses a response header line over CURL_MAX_HTTP_HEADER
    // (100 KB) this way (8.6 says CURLE_TOO_LARGE): the answer is at fault,
    // not the site, so it is neither retried nor counted against the host.
    case CURLE_OUT_OF_MEMORY:
      return TransportError(absl::StatusCode::kInternal, ErrorReason::kResponseTooLarge,
                            absl::StrCat("upstream: response refused (a header line beyond libcurl's limit?): ",
                                         detail));
    case CURLE_SSL_CONNECT_ERROR:
      return TransportError(absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable,
                            absl::StrCat("upstream: tls: ", detail));
    default:
      return TransportError(absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable,
                            absl::StrCat("upstream: ", detail));
  }
}

}  // namespace

std::string DefaultUserAgent() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  return absl::StrCat("palmgate/", kVersion, " (libcurl/", info->version, "; ",
                      info->ssl_version != nullptr ? info->ssl_version : "no-tls", ")");
}

// One transfer in the loop. Owned by the loop from submission to completion.
struct Transfer {
  TransferId id = 0;
  HttpRequest request;
  HttpTransport::Callback done;
  CurlPtr easy;
  CurlHeaders headers;
  HttpResponse response;
  // When the loop gives up on it: the end of its budget while it waits in
  // our line; once running, a little after curl's own timeout (libcurl does
  // not time out a transfer waiting for a connection of its own pool).
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time admitted;                       // taken up by the loop
  absl::Time budget_end;                     // admitted + request.budget
  absl::Time started;                        // left the line (handed to libcurl)
  absl::Duration run_limit;                  // min(request.timeout, budget_end - started)
  // The budget, not the transfer's own timeout, bounds its run: it waited in
  // line so long that a time-out then is the gateway's congestion.
  bool budget_bound = false;
  size_t header_bytes = 0;
  size_t max_body = 0;
  bool body_too_large = false;
  bool headers_too_large = false;
  // Times the request was about to go out. libcurl re-sends a request once,
  // unchanged, when a reused connection dies before any answer: the same
  // nonce twice, which WeChat Pay refuses as a replay (401). The second send
  // is aborted instead, the transfer fails as UNAVAILABLE, and the retry
  // layer signs a fresh request.
  int sends = 0;
  bool resend_refused = false;
  char error[CURL_ERROR_SIZE] = {};

  static size_t OnBody(char* data, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    size_t len = size * n;
    if (t->response.body.size() + len > t->max_body) {
      t->body_too_large = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    t->response.body.append(data, len);
    return len;
  }

  // CURLOPT_PREREQFUNCTION: right before each send of the request.
  static int OnPrereq(void* self, char* /*primary_ip*/, char* /*local_ip*/, int /*primary_port*/, int /*local_port*/) {
    auto* t = static_cast<Transfer*>(self);
    if (++t->sends > 1) {
      t->resend_refused = true;
      return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
  }

  static size_t OnHeader(char* data, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    size_t len = size * n;
    t->header_bytes += len;
    if (t->header_bytes > kMaxHeaderBytes) {
      t->headers_too_large = true;
      return 0;
    }
    absl::string_view line(data, len);
    if (absl::StartsWith(line, "HTTP/")) {
      // A new response head (after 100-continue, or after a proxy's CONNECT answer).
      t->response.headers = HttpHeaders();
      return len;
    }
    size_t colon = line.find(':');
    if (colon != absl::string_view::npos && colon > 0) {
      t->response.headers.Add(std::string(absl::StripAsciiWhitespace(line.substr(0, colon))),
                              std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
    }
    return len;
  }
};

class CurlTransport::Loop {
 public:
  // Event-driven (curl_multi_socket_action over epoll): each wakeup costs
  // work for the sockets that are ready, not for every transfer in flight, so
  // thousands of slow transfers cost no more per request than a few.
  Loop(Options options, CurlMultiPtr multi) : options_(std::move(options)), multi_(std::move(multi)) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETFUNCTION, &Loop::OnSocket);
    curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_.get(), CURLMOPT_TIMERFUNCTION, &Loop::OnTimer);
    curl_multi_setopt(multi_.get(), CURLMOPT_TIMERDATA, this);
    thread_ = std::thread([this] { Run(); });
  }

  ~Loop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    Wake();
    thread_.join();
    multi_.reset();  // before the descriptors its callbacks use
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }

  TransferId Submit(HttpRequest request, Callback done) {
    auto t = std::make_unique<Transfer>();
    t->request = std::move(request);
    t->done = std::move(done);
    t->max_body = options_.max_response_bytes;
    TransferId id;
    {
      absl::MutexLock lock(&mu_);
      id = t->id = ++next_id_;
      submitted_.push_back(std::move(t));
    }
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    // A loop that is running picks the transfer up before it next waits: only
    // a waiting loop needs the eventfd (one write(2) and one wake-up less per
    // call under load).
    if (waiting_for_events_.exchange(false)) Wake();
    return id;
  }

  void Cancel(TransferId id) {
    {
      absl::MutexLock lock(&mu_);
      cancelled_.push_back(id);
    }
    Wake();
  }

  void Schedule(absl::Duration delay, absl::AnyInvocable<void() &&> fn) {
    {
      absl::MutexLock lock(&mu_);
      timers_.emplace(absl::Now() + delay, next_timer_++, std::move(fn));
    }
    Wake();
  }

  int64_t InFlight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  }

  // CURLMOPT_SOCKETFUNCTION: keeps the epoll set equal to what curl waits for.
  static int OnSocket(CURL* /*easy*/, curl_socket_t fd, int what, void* self, void* /*socketp*/) {
    auto* loop = static_cast<Loop*>(self);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      loop->watched_.erase(fd);
      return 0;
    }
    epoll_event ev{};
    ev.events = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? EPOLLIN : 0u) |
                (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    const bool known = loop->watched_.count(fd) != 0;
    // A descriptor closed and reused behind our back: fall back to the other operation.
    if (epoll_ctl(loop->epoll_fd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
      epoll_ctl(loop->epoll_fd_, known ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
    }
    loop->watched_.insert(fd);
    return 0;
  }

  // CURLMOPT_TIMERFUNCTION: when curl wants CURL_SOCKET_TIMEOUT (-1: never).
  static int OnTimer(CURLM* /*multi*/, long timeout_ms, void* self) {  // NOLINT(runtime/int): curl's type
    auto* loop = static_cast<Loop*>(self);
    loop->curl_due_ = timeout_ms < 0 ? absl::InfiniteFuture() : absl::Now() + absl::Milliseconds(timeout_ms);
    return 0;
  }

  void ReadDone() {
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
      CURLcode result = msg->data.result;
      curl_multi_remove_handle(multi_.get(), msg->easy_handle);
      auto it = running_.find(raw->id);
      std::unique_ptr<Transfer> t = std::move(it->second);
      running_.erase(it);
      deadlines_.erase({t->deadline, t->id});
      Complete(std::move(t), result);
    }
  }

  // Runs the timers due at `now` (all of them when `all`); returns the time
  // until the next one (or a second).
  absl::Duration RunTimers(bool all) {
    for (;;) {
      absl::AnyInvocable<void() &&> fn;
      {
        absl::MutexLock lock(&mu_);
        if (timers_.empty()) return absl::Seconds(1);
        const absl::Duration left = timers_.begin()->due - absl::Now();
        if (!all && left > absl::ZeroDuration()) return left;
        fn = std::move(timers_.begin()->fn);
        timers_.erase(timers_.begin());
      }
      std::move(fn)();
    }
  }

  void Run() {
    for (;;) {
      const absl::Duration next_timer = RunTimers(/*all=*/false);
      std::deque<std::unique_ptr<Transfer>> submitted;
      std::vector<TransferId> cancelled;
      bool stop;
      {
        absl::MutexLock lock(&mu_);
        submitted.swap(submitted_);
        cancelled.swap(cancelled_);
        stop = stop_;
      }
      for (auto& t : submitted) Admit(std::move(t));
      for (TransferId id : cancelled) {
        std::unique_ptr<Transfer> t = Take(id);
        if (t == nullptr) continue;
        Finish(std::move(t), TransportError(absl::StatusCode::kCancelled, ErrorReason::kCancelled,
                                            "upstream: call cancelled"));
      }
      if (stop) break;
      int still_running = 0;
      if (absl::Now() >= curl_due_) {
        curl_due_ = absl::InfiniteFuture();
        curl_multi_socket_action(multi_.get(), CURL_SOCKET_TIMEOUT, 0, &still_running);
      }
      ReadDone();
      ExpireOverdue();
      StartWaiting();
      // Waits for socket activity, curl's own timer, a wakeup, our next timer or transfer deadline.
      absl::Duration wait = std::min(next_timer, curl_due_ - absl::Now());
      if (!deadlines_.empty()) wait = std::min(wait, deadlines_.begin()->first - absl::Now());
      // Set before the last look at the queues (both seq_cst, Submit does the
      // reverse): a transfer submitted after that look sees the flag and wakes us.
      waiting_for_events_.store(true);
      {
        absl::MutexLock lock(&mu_);
        if (!submitted_.empty() || !cancelled_.empty() || stop_) wait = absl::ZeroDuration();
      }
      const int wait_ms = static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1))), 0, 1000));
      epoll_event events[256];
      const int n = epoll_wait(epoll_fd_, events, 256, wait_ms);
      waiting_for_events_.store(false);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.fd == wake_fd_) {
          uint64_t count;
          [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof(count));
          continue;
        }
        const int flags = ((events[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                          ((events[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                          ((events[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(multi_.get(), events[i].data.fd, flags, &still_running);
      }
      ReadDone();
      StartWaiting();
    }
    // Shutting down: nothing may be left without an answer. Callbacks may
    // schedule or send more; repeat until nothing is left.
    for (;;) {
      RunTimers(/*all=*/true);
      for (auto& [id, t] : running_) {
        curl_multi_remove_handle(multi_.get(), t->easy.get());
        Finish(std::move(t), TransportError(absl::StatusCode::kCancelled, ErrorReason::kCancelled,
                                            "upstream: transport shutting down"));
      }
      running_.clear();
      for (auto& [id, t] : waiting_) {
        Finish(std::move(t), TransportError(absl::StatusCode::kCancelled, ErrorReason::kCancelled,
                                            "upstream: transport shutting down"));
      }
      waiting_.clear();
      deadlines_.clear();
      std::deque<std::unique_ptr<Transfer>> late;
      {
        absl::MutexLock lock(&mu_);
        late.swap(submitted_);
        if (late.empty() && timers_.empty()) break;
      }
      for (auto& t : late) {
        Finish(std::move(t), TransportError(absl::StatusCode::kCancelled, ErrorReason::kCancelled,
                                            "upstream: transport shutting down"));
      }
    }
  }

  // A new transfer: its deadline runs from now. It starts at once, or waits
  // in line (first come, first served) while max_connections transfers run.
  // libcurl's own queue for CURLMOPT_MAX_TOTAL_CONNECTIONS is not: every
  // freed connection wakes all pending transfers to race for it, which costs
  // CPU per pending transfer and let single calls wait past their deadline
  // while later ones went through (2,000 in flight over 512 connections).
  // The transfer's own timeout starts when it leaves the line (Start): time
  // in our line is our congestion, and counting it against the timeout made
  // healthy upstreams look dead (40 callers over 4 connections at 0.6 s per
  // answer: "Connection timed out after 2 milliseconds", the breaker opened).
  // The line is bounded by the request's budget (UPSTREAM_CONNECTIONS_BUSY).
  void Admit(std::unique_ptr<Transfer> t) {
    const absl::Time now = absl::Now();
    t->request.timeout = std::max(t->request.timeout, absl::Milliseconds(1));
    t->admitted = now;
    t->budget_end = now + (t->request.budget > absl::ZeroDuration() ? t->request.budget : t->request.timeout);
    if (options_.max_connections > 0 &&
        (running_.size() >= static_cast<size_t>(options_.max_connections) || !waiting_.empty())) {
      const TransferId id = t->id;
      t->deadline = t->budget_end;
      deadlines_.emplace(t->deadline, id);
      waiting_.emplace(id, std::move(t));
      return;
    }
    Start(std::move(t), now);
  }

  // Starts waiting transfers, oldest first (ids grow in submission order), while there is room.
  void StartWaiting() {
    while (!waiting_.empty() &&
           (options_.max_connections <= 0 || running_.size() < static_cast<size_t>(options_.max_connections))) {
      std::unique_ptr<Transfer> t = std::move(waiting_.begin()->second);
      waiting_.erase(waiting_.begin());
      deadlines_.erase({t->deadline, t->id});
      const absl::Time now = absl::Now();
      if (t->budget_end - now < kMinRunTime) {
        absl::Status busy = Busy(*t, now);
        Finish(std::move(t), std::move(busy));
        continue;
      }
      Start(std::move(t), now);
    }
  }

  // The error of a transfer whose budget ran out in line, or running after a wait (budget_bound).
  absl::Status Busy(const Transfer& t, absl::Time now) const {
    if (t.easy == nullptr) {
      return TransportError(
          absl::StatusCode::kUnavailable, ErrorReason::kUpstreamConnectionsBusy,
          absl::StrCat("upstream: none of the gateway's own ", options_.max_connections,
                       " connections became free within the call's time (waited ",
                       absl::FormatDuration(absl::Trunc(now - t.admitted, absl::Milliseconds(1))),
                       " in line); nothing was sent"));
    }
    return TransportError(
        absl::StatusCode::kUnavailable, ErrorReason::kUpstreamConnectionsBusy,
        absl::StrCat("upstream: the call's time ran out ",
                     absl::FormatDuration(absl::Trunc(now - t.started, absl::Milliseconds(1))),
                     " after the transfer left the gateway's line, where it waited ",
                     absl::FormatDuration(absl::Trunc(t.started - t.admitted, absl::Milliseconds(1))),
                     " for a connection (its own limit: ", absl::FormatDuration(t.request.timeout), ")"));
  }

  // Removes a transfer, running or waiting, from the loop; nullptr if unknown.
  std::unique_ptr<Transfer> Take(TransferId id) {
    if (auto it = running_.find(id); it != running_.end()) {
      std::unique_ptr<Transfer> t = std::move(it->second);
      running_.erase(it);
      curl_multi_remove_handle(multi_.get(), t->easy.get());
      deadlines_.erase({t->deadline, id});
      return t;
    }
    if (auto it = waiting_.find(id); it != waiting_.end()) {
      std::unique_ptr<Transfer> t = std::move(it->second);
      waiting_.erase(it);
      deadlines_.erase({t->deadline, id});
      return t;
    }
    return nullptr;
  }

  // Hands a transfer to libcurl at `now`; its own timeout runs from here, within what is left of its budget.
  void Start(std::unique_ptr<Transfer> t, absl::Time now) {
    t->started = now;
    t->run_limit = std::min(t->request.timeout, t->budget_end - now);
    t->budget_bound = t->run_limit < t->request.timeout;
    // A little after curl's own timeout, which names what was going on when it fires.
    t->deadline = now + t->run_limit + kDeadlineGrace;
    t->easy.reset(curl_easy_init());
    if (t->easy == nullptr) {
      Finish(std::move(t), TransportError(absl::StatusCode::kInternal, ErrorReason::kInternal, "curl_easy_init failed"));
      return;
    }
    CURL* h = t->easy.get();
    curl_slist* list = nullptr;
    for (const auto& [name, value] : t->request.headers.fields()) {
      list = curl_slist_append(list, absl::StrCat(name, ": ", value).c_str());
    }
    // libcurl would add "Accept: */*" and, for bodies, "Expect: 100-continue" on its own.
    if (!t->request.headers.Get("Accept").has_value()) list = curl_slist_append(list, "Accept: application/json");
    list = curl_slist_append(list, "Expect:");
    t->headers.reset(list);

    const int64_t timeout_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(t->run_limit));
    const int64_t connect_ms =
        std::max<int64_t>(1, std::min(timeout_ms, absl::ToInt64Milliseconds(options_.connect_timeout)));
    curl_easy_setopt(h, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(h, CURLOPT_URL, t->request.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // sign and send the same bytes
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers.get());
    curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_ms));
    curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, static_cast<long>(absl::ToInt64Seconds(options_.max_idle_connection_age)));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     options_.http2 ? static_cast<long>(CURL_HTTP_VERSION_2TLS) : static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, &ReleaseIdleBuffers);
    // Answers are small (max_response_bytes caps them); libcurl's default receive buffer is 16 KB per transfer.
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Transfer::OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, &Transfer::OnPrereq);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, t.get());
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (!options_.proxy.empty()) curl_easy_setopt(h, CURLOPT_PROXY, options_.proxy.c_str());
    // Plain http:// to this machine never goes through a proxy (flag or environment): it would read the
    // signed request in clear text, and its loopback is not ours.
    if (IsPlainHttpLoopbackUrl(t->request.url)) curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (!options_.proxy_username.empty()) {
      // libcurl keeps its own copies for the handle's life (not wiped: see SECURITY.md).
      curl_easy_setopt(h, CURLOPT_PROXYUSERNAME, options_.proxy_username.value().c_str());
      curl_easy_setopt(h, CURLOPT_PROXYPASSWORD, options_.proxy_password.value().c_str());
    }
    if (t->request.method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, t->request.method.c_str());
      if (!t->request.body.empty() || t->request.method == "POST") {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->request.body.data());
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->request.body.size()));
      }
    }
    if (CURLMcode rc = curl_multi_add_handle(multi_.get(), h); rc != CURLM_OK) {
      Finish(std::move(t), TransportError(absl::StatusCode::kInternal, ErrorReason::kInternal,
                                          absl::StrCat("curl_multi_add_handle: ", curl_multi_strerror(rc))));
      return;
    }
    TransferId id = t->id;
    deadlines_.emplace(t->deadline, id);
    running_.emplace(id, std::move(t));
  }

  // Ends the transfers past their deadline that curl has not ended: the ones
  // still waiting in line (ours, or libcurl's for a connection).
  void ExpireOverdue() {
    const absl::Time now = absl::Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      const TransferId id = deadlines_.begin()->second;
      std::unique_ptr<Transfer> t = Take(id);
      if (t == nullptr) {
        deadlines_.erase(deadlines_.begin());
        continue;
      }
      if (t->easy == nullptr || t->budget_bound) {
        absl::Status busy = Busy(*t, now);
        Finish(std::move(t), std::move(busy));
        continue;
      }
      Finish(std::move(t), TransportError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kUpstreamTimeout,
                                          "upstream: timed out (no connection became free in time)"));
    }
  }

  void Complete(std::unique_ptr<Transfer> t, CURLcode result) {
    if (t->body_too_large) {
      Finish(std::move(t), TransportError(absl::StatusCode::kInternal, ErrorReason::kResponseTooLarge,
                                          absl::StrCat("upstream: response body larger than ",
                                                       options_.max_response_bytes, " bytes; refused")));
      return;
    }
    if (t->headers_too_large) {
      Finish(std::move(t), TransportError(absl::StatusCode::kInternal, ErrorReason::kResponseTooLarge,
                                          absl::StrCat("upstream: response headers larger than ", kMaxHeaderBytes,
                                                       " bytes; refused")));
      return;
    }
    if (t->resend_refused) {
      Finish(std::move(t), TransportError(absl::StatusCode::kUnavailable, ErrorReason::kUpstreamUnavailable,
                                          "upstream: connection closed before any answer (a signed request is "
                                          "never sent twice; the retry signs a new one)"));
      return;
    }
    if (result == CURLE_OPERATION_TIMEDOUT && t->budget_bound) {
      absl::Status s = Busy(*t, absl::Now());
      Finish(std::move(t), std::move(s));
      return;
    }
    if (result != CURLE_OK) {
      absl::Status s = AsStatus(result, t->error);
      Finish(std::move(t), std::move(s));
      return;
    }
    long status = 0;
    curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &status);
    long version = 0;
    curl_easy_getinfo(t->easy.get(), CURLINFO_HTTP_VERSION, &version);
    t->response.status = static_cast<int>(status);
    t->response.http_version = version == CURL_HTTP_VERSION_2_0 ? "2" : version == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1";
    HttpResponse response = std::move(t->response);
    Finish(std::move(t), std::move(response));
  }

  void Finish(std::unique_ptr<Transfer> t, absl::StatusOr<HttpResponse> result) {
    HttpTransport::Callback done = std::move(t->done);
    t.reset();  // release the handle (back to the pool) before the callback runs
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    std::move(done)(std::move(result));
  }

  const Options options_;
  CurlMultiPtr multi_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  // Touched by the loop thread only (curl calls OnSocket/OnTimer from socket_action on it).
  std::unordered_set<int> watched_;
  absl::Time curl_due_ = absl::InfiniteFuture();
  std::thread thread_;
  std::atomic<int64_t> in_flight_{0};
  // True from just before the loop's last look at submitted_ until epoll_wait returns.
  std::atomic<bool> waiting_for_events_{false};
  // Touched by the loop thread only.
  std::map<TransferId, std::unique_ptr<Transfer>> running_;  // added to the multi handle
  // In line for a free connection; the smallest id is the oldest (Submit numbers them in order).
  std::map<TransferId, std::unique_ptr<Transfer>> waiting_;
  std::set<std::pair<absl::Time, TransferId>> deadlines_;  // of the transfers in running_ and waiting_

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  TransferId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::unique_ptr<Transfer>> submitted_ ABSL_GUARDED_BY(mu_);
  std::vector<TransferId> cancelled_ ABSL_GUARDED_BY(mu_);
  struct Timer {
    absl::Time due;
    uint64_t seq;  // keeps equal due times in submission order
    mutable absl::AnyInvocable<void() &&> fn;
    Timer(absl::Time d, uint64_t s, absl::AnyInvocable<void() &&> f) : due(d), seq(s), fn(std::move(f)) {}
    bool operator<(const Timer& o) const { return due != o.due ? due < o.due : seq < o.seq; }
  };
  std::set<Timer> timers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_timer_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::StatusOr<std::unique_ptr<CurlTransport>> CurlTransport::Create(Options options) {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) return absl::InternalError(absl::StrCat("curl_global_init: ", curl_easy_strerror(init)));
  CurlMultiPtr multi(curl_multi_init());
  if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
  curl_multi_setopt(multi.get(), CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  // libcurl's default cache keeps 4 x the transfers *currently* running: after
  // a burst it closes connections that the next burst must open again (TCP and
  // TLS handshakes). Keep what was opened; idle ones still retire after
  // max_idle_connection_age.
  curl_multi_setopt(multi.get(), CURLMOPT_MAXCONNECTS, static_cast<long>(options.max_cached_connections));
  curl_multi_setopt(multi.get(), CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(std::max(0, options.max_connections)));
  return std::unique_ptr<CurlTransport>(new CurlTransport(std::make_unique<Loop>(std::move(options), std::move(multi))));
}

CurlTransport::CurlTransport(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}

CurlTransport::~CurlTransport() = default;

TransferId CurlTransport::Send(HttpRequest request, Callback done) {
  return loop_->Submit(std::move(request), std::move(done));
}

void CurlTransport::Cancel(TransferId id) { loop_->Cancel(id); }

void CurlTransport::Schedule(absl::Duration delay, absl::AnyInvocable<void() &&> fn) {
  loop_->Schedule(delay, std::move(fn));
}

int64_t CurlTransport::InFlight() const { return loop_->InFlight(); }

}  // namespace palmgate::wechatpay
