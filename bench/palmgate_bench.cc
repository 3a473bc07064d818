// palmgate-bench: the load generator behind scripts/bench (results and method: bench/RESULTS.md).
//
// Drives the real `palmgate` binary against a real `palmgate-sandbox` over
// loopback (HTTPS upstream by default, --http for plain HTTP) with gRPC's
// callback client API, and prints one table row per scenario:
//
//   saturation  closed loop, --concurrency RPCs in flight, no upstream latency;
//               --saturation_runs independent runs, the row is the median ratio
//   steady      open loop at half the saturation rate for --steady_duration; the
//               same load is first sent straight to the sandbox by an in-process
//               PalmServiceClient (same library, same signing and verification),
//               and the row reports how much p99 the gateway adds over that
//               (a direct run that stalled, p99 > 10 x p50, is run again)
//   slow        --slow_inflight RPCs in flight, sandbox --latency_ms=--slow_latency_ms
//   coalesce    Zipf-skewed keys, --coalesce on and off: upstream calls per RPC
//
// For every row: gateway CPU (user+sys from /proc/<pid>/stat) per RPC, the
// sandbox's CPU per RPC, and the crypto floor (RSA-2048 SHA256withRSA sign +
// verify, this process, the same OpenSSL; the median of 0.1 s slices right
// before and right after the scenario), printed as a ratio. Every response is checked against the seeded user; any
// error or mismatch makes the run fail (exit 1). Results go to --json.
//
// The gateway and the sandbox are restarted for every scenario (peak RSS and
// thread counts are per scenario). The sandbox reuses response signatures
// (--signature_cache_ms) so that its own RSA signing does not compete with
// the gateway for the two cores; its CPU is reported anyway.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/opensslv.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "palmgate/v1/palm_authorization.grpc.pb.h"
#include "server/common/clock.h"
#include "server/common/file_util.h"
#include "server/wechatpay/credential.h"
#include "server/wechatpay/curl_transport.h"
#include "server/wechatpay/key_ring.h"
#include "server/wechatpay/palm_service_client.h"
#include "server/wechatpay/rsa_signer.h"
#include "tests/testing/child_process.h"
#include "tests/testing/http_test_client.h"
#include "tests/testing/sandbox_process.h"

ABSL_FLAG(std::string, scenarios, "saturation,slow,steady,coalesce", "comma-separated scenarios to run");
ABSL_FLAG(bool, http, false, "plain HTTP upstream instead of HTTPS");
ABSL_FLAG(bool, smoke, false, "a few seconds in all: tiny loads, checks errors only");
ABSL_FLAG(int, concurrency, 64, "saturation: RPCs in flight");
ABSL_FLAG(int, saturation_runs, 5,
          "saturation: independent runs (fresh sandbox and gateway each); the row is the run with the median ratio");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(3), "load before each measurement (connections, caches)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(15), "measurement time of saturation, slow and coalesce");
ABSL_FLAG(int, slow_inflight, 2000, "slow: RPCs in flight");
ABSL_FLAG(int, slow_latency_ms, 100, "slow: sandbox --latency_ms");
ABSL_FLAG(int, slow_ramp_per_second, 200,
          "slow: RPCs added per second until --slow_inflight (new upstream TLS connections per second)");
ABSL_FLAG(absl::Duration, steady_duration, absl::Seconds(60), "steady: measurement time (each of the two runs)");
ABSL_FLAG(int, steady_baseline_tries, 3,
          "steady: direct runs at most; one whose p99 is over 10x its p50 (a stall of the host, not of the "
          "code measured) is run again, and the last one counts");
ABSL_FLAG(double, steady_rate, 0, "steady: RPCs per second (0: half the saturation rate measured in this run)");
ABSL_FLAG(int, users, 1000, "seeded users (distinct keys)");
ABSL_FLAG(double, zipf_s, 1.1, "coalesce: Zipf exponent of the key popularity");
ABSL_FLAG(int, coalesce_latency_ms, 20, "coalesce: sandbox --latency_ms");
ABSL_FLAG(absl::Duration, rpc_deadline, absl::Seconds(10), "deadline of every RPC");
ABSL_FLAG(int, channels, 4, "gRPC channels (TCP connections) from the load generator");
ABSL_FLAG(int, sandbox_threads, 2, "sandbox --threads");
ABSL_FLAG(std::string, gateway_flags, "", "extra palmgate flags, comma-separated");
ABSL_FLAG(std::string, gateway, "", "palmgate binary (default: the one built with this benchmark)");
ABSL_FLAG(std::string, json, "", "write the results as JSON to this file");
ABSL_FLAG(std::string, openssl_speed, "", "file holding `openssl speed rsa2048` output, copied into the JSON");

namespace palmgate::bench {
namespace {

using Clock = std::chrono::steady_clock;
using ::palmgate::testing::ListeningProcess;

// Scenarios 1-3 measure the cost of one RPC = one upstream call: identical
// keys in flight at once (frequent with 2,000 in flight over 1,000 users)
// would otherwise share calls. Scenario 4 measures sharing.
constexpr const char* kNoCoalescing = "--coalesce=false";

int64_t NowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// ---------------------------------------------------------------------------
// /proc readings

struct ProcSample {
  double cpu_s = 0;   // user + sys
  int64_t rss_kb = 0;
  int64_t hwm_kb = 0;  // peak RSS of the process's life
  int threads = 0;
};

ProcSample ReadProc(pid_t pid) {
  ProcSample s;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  if (paren != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(line.substr(paren + 2), ' ');
    // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
    if (f.size() > 13) {
      const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / tick;
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  while (std::getline(status, line)) {
    auto value = [&](const char* key) -> int64_t {
      return std::stoll(line.substr(std::string(key).size()));
    };
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = value("VmRSS:");
    if (line.rfind("VmHWM:", 0) == 0) s.hwm_kb = value("VmHWM:");
    if (line.rfind("Threads:", 0) == 0) s.threads = static_cast<int>(value("Threads:"));
  }
  return s;
}

// Samples a process every 50 ms for its peak thread count and RSS.
class PeakSampler {
 public:
  explicit PeakSampler(pid_t pid) : pid_(pid), thread_([this] { Run(); }) {}
  ~PeakSampler() {
    stop_ = true;
    thread_.join();
  }
  int peak_threads() const { return peak_threads_.load(); }
  int64_t peak_rss_kb() const { return peak_rss_.load(); }

 private:
  void Run() {
    while (!stop_) {
      ProcSample s = ReadProc(pid_);
      peak_threads_ = std::max(peak_threads_.load(), s.threads);
      peak_rss_ = std::max(peak_rss_.load(), s.rss_kb);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  const pid_t pid_;
  std::atomic<bool> stop_{false};
  std::atomic<int> peak_threads_{0};
  std::atomic<int64_t> peak_rss_{0};
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// The crypto floor: what one GetAuthorization must spend in RSA, at best.

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The floor is the median of short slices (five before a scenario, five after):
// a burst of other work on the shared machine during one slice moves one
// sample, not the floor (a single 0.5 s average was seen 20 % off its neighbours).
struct Floor {
  double sign_us = 0;
  double verify_us = 0;
  std::vector<double> sign_slices_us;
  std::vector<double> verify_slices_us;
  double total_us() const { return sign_us + verify_us; }
  void Add(double sign_slice_us, double verify_slice_us) {
    sign_slices_us.push_back(sign_slice_us);
    verify_slices_us.push_back(verify_slice_us);
    sign_us = Median(sign_slices_us);
    verify_us = Median(verify_slices_us);
  }
  void Merge(const Floor& other) {
    for (size_t i = 0; i < other.sign_slices_us.size(); ++i) Add(other.sign_slices_us[i], other.verify_slices_us[i]);
  }
};

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};

std::unique_ptr<EVP_PKEY, PkeyDeleter> ReadKey(const std::string& path, bool is_private) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  EVP_PKEY* k = is_private ? PEM_read_PrivateKey(f, nullptr, nullptr, nullptr) : PEM_read_PUBKEY(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return std::unique_ptr<EVP_PKEY, PkeyDeleter>(k);
}

// As `openssl speed rsa2048` does: one EVP_PKEY_CTX set up once, then
// EVP_PKEY_sign / EVP_PKEY_verify over a SHA-256 digest; thread CPU time.
Floor MeasureFloor(const std::string& private_key_pem_path, const std::string& public_key_pem_path,
                   double seconds_each, int slices) {
  Floor floor;
  auto priv = ReadKey(private_key_pem_path, true);
  auto pub = ReadKey(public_key_pem_path, false);
  auto priv_for_verify = ReadKey(private_key_pem_path, true);
  if (priv == nullptr || pub == nullptr) {
    std::cerr << "bench: cannot read keys for the crypto floor" << std::endl;
    std::exit(2);
  }
  unsigned char digest[32];
  const std::string message = "GET\n/v3/palmservice/authorization/openid/oBench0000001?organization_id=1004\n1700000000\n"
                              "0123456789ABCDEF0123456789ABCDEF\n\n";
  EVP_Digest(message.data(), message.size(), digest, nullptr, EVP_sha256(), nullptr);
  std::unique_ptr<EVP_PKEY_CTX, PkeyDeleter> sctx(EVP_PKEY_CTX_new(priv.get(), nullptr));
  EVP_PKEY_sign_init(sctx.get());
  EVP_PKEY_CTX_set_rsa_padding(sctx.get(), RSA_PKCS1_PADDING);
  EVP_PKEY_CTX_set_signature_md(sctx.get(), EVP_sha256());
  // Verify with the public half of the same key (the same modulus size and exponent as WeChat Pay's keys).
  std::unique_ptr<EVP_PKEY_CTX, PkeyDeleter> vctx(EVP_PKEY_CTX_new(priv_for_verify.get(), nullptr));
  EVP_PKEY_verify_init(vctx.get());
  EVP_PKEY_CTX_set_rsa_padding(vctx.get(), RSA_PKCS1_PADDING);
  EVP_PKEY_CTX_set_signature_md(vctx.get(), EVP_sha256());
  slices = std::max(1, slices);
  const double slice_seconds = seconds_each / slices;
  int bad = 0;
  for (int slice = 0; slice < slices; ++slice) {
    unsigned char sig[512];
    size_t sig_len = sizeof(sig);
    int n = 0;
    double start = ThreadCpuSeconds();
    do {
      sig_len = sizeof(sig);
      EVP_PKEY_sign(sctx.get(), sig, &sig_len, digest, sizeof(digest));
      ++n;
    } while (ThreadCpuSeconds() - start < slice_seconds);
    const double sign_us = (ThreadCpuSeconds() - start) * 1e6 / n;
    n = 0;
    start = ThreadCpuSeconds();
    do {
      if (EVP_PKEY_verify(vctx.get(), sig, sig_len, digest, sizeof(digest)) != 1) ++bad;
      ++n;
    } while (ThreadCpuSeconds() - start < slice_seconds);
    floor.Add(sign_us, (ThreadCpuSeconds() - start) * 1e6 / n);
  }
  if (bad != 0) {
    std::cerr << "bench: crypto floor: verification failed" << std::endl;
    std::exit(2);
  }
  return floor;
}

// ---------------------------------------------------------------------------
// Users and key choice

struct User {
  std::string openid;
  std::string organization_id;
  std::string state;
  palmgate::v1::AuthorizationState expected;
};

std::vector<User> MakeUsers(int n) {
  static const char* kStates[] = {"AUTHORIZATION_STATE_ON", "AUTHORIZATION_STATE_OFF", "AUTHORIZATION_STATE_NONE"};
  static const palmgate::v1::AuthorizationState kEnums[] = {palmgate::v1::AUTHORIZATION_STATE_ON,
                                                            palmgate::v1::AUTHORIZATION_STATE_OFF,
                                                            palmgate::v1::AUTHORIZATION_STATE_NONE};
  std::vector<User> users;
  for (int i = 0; i < n; ++i) {
    users.push_back(User{absl::StrFormat("oBench%07d", i), absl::StrCat(1000 + i % 7), kStates[i % 3], kEnums[i % 3]});
  }
  return users;
}

std::string SeedJson(const std::vector<User>& users) {
  nlohmann::json list = nlohmann::json::array();
  for (const User& u : users) {
    list.push_back({{"openid", u.openid}, {"organization_id", u.organization_id}, {"state", u.state},
                    {"authorize_time", "2024-05-01T10:00:00+08:00"}});
  }
  return nlohmann::json{{"users", list}}.dump();
}

// Picks user indexes: uniform, or Zipf(s) over ranks (rank 0 most popular).
class KeyPicker {
 public:
  KeyPicker(int n, double zipf_s) : n_(n) {
    if (zipf_s <= 0) return;
    cdf_.resize(n);
    double sum = 0;
    for (int k = 0; k < n; ++k) cdf_[k] = (sum += 1.0 / std::pow(k + 1, zipf_s));
    for (double& c : cdf_) c /= sum;
  }
  int Pick() const {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    if (cdf_.empty()) return std::uniform_int_distribution<int>(0, n_ - 1)(rng);
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return std::min<int>(n_ - 1, static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin()));
  }

 private:
  int n_;
  std::vector<double> cdf_;
};

// ---------------------------------------------------------------------------
// Latency recording

class Recorder {
 public:
  void Open(int64_t from_ns) {
    absl::MutexLock lock(&mu_);
    from_ns_ = from_ns;
    to_ns_ = INT64_MAX;
    latencies_.clear();
    completed_ = 0;
  }
  void Close(int64_t to_ns) {
    absl::MutexLock lock(&mu_);
    to_ns_ = to_ns;
  }
  void Record(int64_t start_ns, int64_t end_ns, const std::string& error) {
    absl::MutexLock lock(&mu_);
    if (!error.empty()) {
      ++errors_;  // errors count whenever they happen, warm-up included
      if (error_samples_.size() < 5) error_samples_.push_back(error);
      return;
    }
    if (start_ns < from_ns_ || end_ns > to_ns_) return;
    latencies_.push_back(end_ns - start_ns);
  }
  void NoteCompleted(int64_t end_ns) {
    absl::MutexLock lock(&mu_);
    if (end_ns >= from_ns_ && end_ns <= to_ns_) ++completed_;
  }
  int64_t completed() const {
    absl::MutexLock lock(&mu_);
    return completed_;
  }
  int64_t errors() const {
    absl::MutexLock lock(&mu_);
    return errors_;
  }
  std::vector<std::string> error_samples() const {
    absl::MutexLock lock(&mu_);
    return error_samples_;
  }
  // Quantile q of the latencies in ms.
  double QuantileMs(double q) {
    absl::MutexLock lock(&mu_);
    if (latencies_.empty()) return 0;
    std::sort(latencies_.begin(), latencies_.end());
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(latencies_.size()))) - 1;
    i = std::min(i, latencies_.size() - 1);
    return static_cast<double>(latencies_[i]) / 1e6;
  }

 private:
  mutable absl::Mutex mu_;
  int64_t from_ns_ ABSL_GUARDED_BY(mu_) = INT64_MAX;
  int64_t to_ns_ ABSL_GUARDED_BY(mu_) = INT64_MAX;
  std::vector<int64_t> latencies_ ABSL_GUARDED_BY(mu_);
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> error_samples_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// Load: something that answers GetAuthorization asynchronously.

class Target {
 public:
  virtual ~Target() = default;
  // Starts one call for `user`; `done` gets "" on a verified, correct answer, else what went wrong.
  virtual void Call(const User& user, std::function<void(std::string)> done) = 0;
};

// The gateway over gRPC (callback client API).
class GatewayTarget final : public Target {
 public:
  GatewayTarget(const std::string& address, int channels) {
    for (int i = 0; i < channels; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("palmgate.bench.channel", i);  // distinct args: a distinct connection per channel
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stubs_.push_back(palmgate::v1::PalmAuthorization::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
    }
  }

  void Call(const User& user, std::function<void(std::string)> done) override {
    struct State {
      grpc::ClientContext context;
      palmgate::v1::GetAuthorizationRequest request;
      palmgate::v1::Authorization response;
    };
    auto* s = new State;
    s->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_rpc_deadline)));
    s->request.set_openid(user.openid);
    s->request.set_organization_id(user.organization_id);
    const size_t i = next_.fetch_add(1, std::memory_order_relaxed) % stubs_.size();
    stubs_[i]->async()->GetAuthorization(&s->context, &s->request, &s->response,
                                          [s, &user, done = std::move(done)](grpc::Status status) {
                                            std::string error;
                                            if (!status.ok()) {
                                              error = absl::StrCat("grpc ", status.error_code(), ": ",
                                                                   status.error_message());
                                            } else if (s->response.openid() != user.openid ||
                                                       s->response.organization_id() != user.organization_id ||
                                                       s->response.state() != user.expected ||
                                                       s->response.wechatpay_state() != user.state ||
                                                       s->response.wechatpay_request_id().empty() ||
                                                       !s->response.has_authorize_time()) {
                                              error = "answer does not match the seeded user";
                                            }
                                            delete s;
                                            done(std::move(error));
                                          });
  }

 private:
  std::vector<std::unique_ptr<palmgate::v1::PalmAuthorization::Stub>> stubs_;
  std::atomic<size_t> next_{0};
};

// The sandbox called straight from this process by the gateway's own library
// (PalmServiceClient on CurlTransport): signing, HTTP and verification without the gRPC hop.
class DirectTarget final : public Target {
 public:
  static std::unique_ptr<DirectTarget> Create(const std::string& keys_dir, const std::string& base_url) {
    auto merchant = palmgate::testing::SandboxMerchant::Load(keys_dir);
    auto signer = wechatpay::RsaSha256Signer::FromPemFile(keys_dir + "/apiclient_key.pem");
    auto pub = ReadFile(keys_dir + "/pub_key.pem");
    if (!merchant.ok() || !signer.ok() || !pub.ok()) return nullptr;
    auto t = std::unique_ptr<DirectTarget>(new DirectTarget());
    wechatpay::KeyRing::Builder ring;
    if (!ring.AddPublicKeyPem(merchant->public_key_id(), *pub).ok()) return nullptr;
    auto built = std::move(ring).Build(absl::Now());
    if (!built.ok()) return nullptr;
    t->keys_ = std::make_unique<wechatpay::SwappableKeyStore>(*std::move(built));
    wechatpay::CurlTransport::Options topts;
    topts.ca_file = keys_dir + "/ca_cert.pem";
    auto transport = wechatpay::CurlTransport::Create(topts);
    if (!transport.ok()) return nullptr;
    t->transport_ = *std::move(transport);
    wechatpay::PalmServiceClient::Options copts;
    copts.base_url = base_url;
    t->client_ = std::make_unique<wechatpay::PalmServiceClient>(
        copts,
        std::make_shared<wechatpay::Credential>(merchant->mchid(), merchant->merchant_serial(),
                                                std::shared_ptr<const wechatpay::Signer>(*std::move(signer)),
                                                SystemClock::Get()),
        t->keys_.get(), t->transport_.get(), SystemClock::Get());
    return t;
  }
  ~DirectTarget() override {
    transport_.reset();  // answers what is left while the client exists
  }

  void Call(const User& user, std::function<void(std::string)> done) override {
    client_->GetAuthorization(user.openid, user.organization_id, absl::Now() + absl::Seconds(10),
                              [&user, done = std::move(done)](absl::StatusOr<wechatpay::AuthorizationResult> r) {
                                if (!r.ok()) return done(std::string(r.status().ToString()));
                                if (r->openid != user.openid || r->state != user.state) {
                                  return done("answer does not match the seeded user");
                                }
                                done("");
                              });
  }

 private:
  DirectTarget() = default;
  std::unique_ptr<wechatpay::SwappableKeyStore> keys_;
  std::unique_ptr<wechatpay::CurlTransport> transport_;
  std::unique_ptr<wechatpay::PalmServiceClient> client_;
};

// Closed loop: `concurrency` calls always in flight until stopped.
class ClosedLoop {
 public:
  ClosedLoop(Target* target, const std::vector<User>* users, const KeyPicker* picker, Recorder* recorder)
      : target_(target), users_(users), picker_(picker), recorder_(recorder) {}

  // Starts `concurrency` calls, ramping up by `step` every 100 ms (thousands of
  // connections opened at once would only measure a handshake storm).
  void Start(int concurrency, int step) {
    for (int started = 0; started < concurrency;) {
      const int n = std::min(step, concurrency - started);
      for (int i = 0; i < n; ++i) Issue();
      started += n;
      if (started < concurrency) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  // Stops issuing and waits for the calls in flight.
  void Stop() {
    stop_ = true;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return outstanding_ == 0; });
  }

 private:
  void Issue() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++outstanding_;
    }
    const User& user = (*users_)[picker_->Pick()];
    const int64_t start = NowNs();
    target_->Call(user, [this, start](std::string error) {
      const int64_t end = NowNs();
      recorder_->Record(start, end, error);
      recorder_->NoteCompleted(end);
      if (!stop_) Issue();
      std::lock_guard<std::mutex> lock(mu_);
      if (--outstanding_ == 0) cv_.notify_all();
    });
  }

  Target* const target_;
  const std::vector<User>* const users_;
  const KeyPicker* const picker_;
  Recorder* const recorder_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t outstanding_ = 0;
};

// Open loop: calls started at a fixed rate whatever the answers do.
void RunOpenLoop(Target* target, const std::vector<User>& users, const KeyPicker& picker, Recorder* recorder,
                 double rate, absl::Duration warmup, absl::Duration duration) {
  std::mutex mu;
  std::condition_variable cv;
  int64_t outstanding = 0;
  const int64_t t0 = NowNs();
  const int64_t measure_from = t0 + absl::ToInt64Nanoseconds(warmup);
  const int64_t measure_to = measure_from + absl::ToInt64Nanoseconds(duration);
  recorder->Open(measure_from);
  const double interval_ns = 1e9 / rate;
  for (int64_t i = 0;; ++i) {
    const int64_t due = t0 + static_cast<int64_t>(static_cast<double>(i) * interval_ns);
    if (due >= measure_to) break;
    const int64_t now = NowNs();
    if (due > now) std::this_thread::sleep_for(std::chrono::nanoseconds(due - now));
    {
      std::lock_guard<std::mutex> lock(mu);
      ++outstanding;
    }
    const int64_t start = NowNs();
    target->Call(users[picker.Pick()], [&, start](std::string error) {
      const int64_t end = NowNs();
      recorder->Record(start, end, error);
      recorder->NoteCompleted(end);
      std::lock_guard<std::mutex> lock(mu);
      if (--outstanding == 0) cv.notify_all();
    });
  }
  recorder->Close(measure_to);
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return outstanding == 0; });
}

// ---------------------------------------------------------------------------
// Processes

struct Setup {
  std::string dir;
  std::string keys;
  std::string seed_path;
  std::vector<User> users;
  std::string gateway_binary;
  bool tls = true;
};

std::unique_ptr<ListeningProcess> StartSandbox(const Setup& setup, int latency_ms) {
  std::vector<std::string> args = {palmgate::testing::SandboxBinaryPath(), "serve", "--keys", setup.keys,
                                   "--listen", "127.0.0.1:0", absl::StrCat("--threads=", absl::GetFlag(FLAGS_sandbox_threads)),
                                   "--access_log=false", "--signature_cache_ms=240000",
                                   absl::StrCat("--latency_ms=", latency_ms), "--seed", setup.seed_path,
                                   "--idle_timeout_ms=60000"};
  if (setup.tls) args.push_back("--tls");
  auto p = ListeningProcess::Start(args, absl::Seconds(30), setup.dir + "/sandbox.log");
  if (!p.ok()) {
    std::cerr << "bench: sandbox: " << p.status() << std::endl;
    std::exit(2);
  }
  return *std::move(p);
}

// A loopback port free right now (for the gateway's --metrics_listen; the
// gateway's own log names the port only at --log_level=info).
int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

// Starts the gateway; `metrics_url` receives its /metrics base URL.
std::unique_ptr<ListeningProcess> StartGateway(const Setup& setup, const std::string& upstream,
                                               const std::vector<std::string>& extra, std::string* metrics_url) {
  const std::string metrics_address = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  *metrics_url = "http://" + metrics_address;
  auto merchant = palmgate::testing::SandboxMerchant::Load(setup.keys);
  if (!merchant.ok()) {
    std::cerr << "bench: " << merchant.status() << std::endl;
    std::exit(2);
  }
  std::vector<std::string> args = {setup.gateway_binary,
                                   "--listen=127.0.0.1:0",
                                   "--mchid=" + merchant->mchid(),
                                   "--merchant_serial=" + merchant->merchant_serial(),
                                   "--merchant_private_key=" + setup.keys + "/apiclient_key.pem",
                                   "--wechatpay_public_key=" + setup.keys + "/pub_key.pem",
                                   "--wechatpay_public_key_id=" + merchant->public_key_id(),
                                   "--upstream=" + upstream,
                                   "--upstream_ca=" + setup.keys + "/ca_cert.pem",
                                   "--key_reload_interval=0",
                                   "--metrics_listen=" + metrics_address};
  for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_gateway_flags), ',', absl::SkipEmpty())) {
    args.emplace_back(f);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = ListeningProcess::Start(args, absl::Seconds(30), setup.dir + "/palmgate.log");
  if (!p.ok()) {
    std::cerr << "bench: palmgate: " << p.status() << std::endl;
    std::exit(2);
  }
  return *std::move(p);
}


// The gateway's own account of its request signing (palmgate_signatures_total,
// palmgate_signing_cpu_seconds_total): the RSA part of its CPU, measured inside it.
struct SigningSample {
  double signatures = 0;
  double cpu_s = 0;
};

SigningSample ScrapeSigning(const std::string& metrics_url) {
  SigningSample sample;
  if (metrics_url.empty()) return sample;
  palmgate::testing::TestHttpRequest req;
  req.target = "/metrics";
  auto r = palmgate::testing::HttpFetch(metrics_url, req);
  if (!r.ok() || r->status != 200) return sample;
  for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
    auto value = [&line](absl::string_view name) { return std::stod(std::string(line.substr(name.size()))); };
    if (absl::StartsWith(line, "palmgate_signatures_total ")) sample.signatures = value("palmgate_signatures_total ");
    if (absl::StartsWith(line, "palmgate_signing_cpu_seconds_total ")) {
      sample.cpu_s = value("palmgate_signing_cpu_seconds_total ");
    }
  }
  return sample;
}

int64_t SandboxRequests(const Setup& setup, const std::string& base_url) {
  palmgate::testing::TestHttpRequest req;
  req.target = "/_sandbox/stats";
  auto r = palmgate::testing::HttpFetch(base_url, req, setup.keys + "/ca_cert.pem");
  if (!r.ok() || r->status != 200) return -1;
  nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  return j.is_object() ? j.value("requests_total", int64_t{-1}) : -1;
}

// ---------------------------------------------------------------------------
// Scenarios

struct Row {
  std::string name;
  double rps = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  int64_t rpcs = 0;
  int64_t errors = 0;
  double gateway_cpu_us = 0;  // per RPC
  double gateway_sign_us = 0;  // the gateway's own signing CPU per signature (its metrics)
  double gateway_other_us = 0;  // gateway CPU per RPC minus its signing CPU per RPC
  double sandbox_cpu_us = 0;  // per RPC
  Floor floor;
  int peak_threads = 0;
  double peak_rss_mb = 0;
  double upstream_per_rpc = 0;
  double baseline_p99_ms = -1;  // steady: the direct run
  double baseline_p50_ms = -1;
  int baseline_runs = 0;
  bool baseline_stable = true;  // the direct run that counts had p99 <= 10 x p50
  double added_p99_ms = -1;
  double target_rps = -1;       // slow: 90 % of min(latency bound, CPU bound)
  std::vector<std::string> error_samples;
  double ratio() const { return floor.total_us() > 0 ? gateway_cpu_us / floor.total_us() : 0; }
};

struct Measured {
  Recorder recorder;
  ProcSample gw0, gw1, sb0, sb1;
  int64_t upstream0 = 0, upstream1 = 0;
  SigningSample sign0, sign1;
  int64_t t0 = 0, t1 = 0;
};

class Bench {
 public:
  explicit Bench(Setup setup) : setup_(std::move(setup)) {}

  Floor MeasureFloorNow() {
    return MeasureFloor(setup_.keys + "/apiclient_key.pem", setup_.keys + "/pub_key.pem",
                        absl::GetFlag(FLAGS_smoke) ? 0.05 : 0.5, /*slices=*/5);
  }

  // Closed loop against a fresh sandbox + gateway.
  Row RunClosed(const std::string& name, int concurrency, int latency_ms, double zipf_s,
                const std::vector<std::string>& gateway_flags, absl::Duration warmup, absl::Duration duration,
                int ramp_step = 100) {
    Row row;
    row.name = name;
    row.floor = MeasureFloorNow();
    auto sandbox = StartSandbox(setup_, latency_ms);
    auto gateway = StartGateway(setup_, sandbox->address(), gateway_flags, &gateway_metrics_url_);
    GatewayTarget target(gateway->address(), absl::GetFlag(FLAGS_channels));
    KeyPicker picker(static_cast<int>(setup_.users.size()), zipf_s);
    Measured m;
    {
      PeakSampler sampler(gateway->pid());
      ClosedLoop loop(&target, &setup_.users, &picker, &m.recorder);
      loop.Start(concurrency, ramp_step);
      absl::SleepFor(warmup);
      Snapshot(m, gateway->pid(), sandbox->pid(), sandbox->address(), /*start=*/true);
      absl::SleepFor(duration);
      Snapshot(m, gateway->pid(), sandbox->pid(), sandbox->address(), /*start=*/false);
      loop.Stop();
      row.peak_threads = sampler.peak_threads();
    }
    Fill(row, m);
    row.peak_rss_mb = static_cast<double>(ReadProc(gateway->pid()).hwm_kb) / 1024.0;
    AddFloorAfter(row);
    return row;
  }

  // Steady: the same open-loop load straight to the sandbox, then through the gateway.
  Row RunSteady(double rate, absl::Duration warmup, absl::Duration duration) {
    Row row;
    row.name = "steady";
    row.floor = MeasureFloorNow();
    auto sandbox = StartSandbox(setup_, 0);
    KeyPicker picker(static_cast<int>(setup_.users.size()), 0);
    {
      auto direct = DirectTarget::Create(setup_.keys, sandbox->address());
      if (direct == nullptr) {
        std::cerr << "bench: steady: cannot set up the direct client" << std::endl;
        std::exit(2);
      }
      // The direct run is the reference: a stall of the host during it (seen: p99 52 ms with p50 1.5 ms)
      // would make "added" meaningless, so such a run is repeated. The gateway's run is never repeated.
      const int tries = std::max(1, absl::GetFlag(FLAGS_steady_baseline_tries));
      for (int i = 0; i < tries; ++i) {
        Recorder recorder;
        RunOpenLoop(direct.get(), setup_.users, picker, &recorder, rate, warmup, duration);
        row.baseline_p50_ms = recorder.QuantileMs(0.50);
        row.baseline_p99_ms = recorder.QuantileMs(0.99);
        row.baseline_runs = i + 1;
        row.errors += recorder.errors();
        for (auto& e : recorder.error_samples()) row.error_samples.push_back("direct: " + e);
        row.baseline_stable = row.baseline_p99_ms <= 10 * row.baseline_p50_ms;
        if (row.baseline_stable) break;
      }
    }
    auto gateway = StartGateway(setup_, sandbox->address(), {kNoCoalescing}, &gateway_metrics_url_);
    GatewayTarget target(gateway->address(), absl::GetFlag(FLAGS_channels));
    Measured m;
    {
      PeakSampler sampler(gateway->pid());
      std::thread snap([&] {
        absl::SleepFor(warmup);
        Snapshot(m, gateway->pid(), sandbox->pid(), sandbox->address(), true);
        absl::SleepFor(duration);
        Snapshot(m, gateway->pid(), sandbox->pid(), sandbox->address(), false);
      });
      RunOpenLoop(&target, setup_.users, picker, &m.recorder, rate, warmup, duration);
      snap.join();
      row.peak_threads = sampler.peak_threads();
    }
    const int64_t direct_errors = row.errors;
    Fill(row, m);
    row.errors += direct_errors;
    row.peak_rss_mb = static_cast<double>(ReadProc(gateway->pid()).hwm_kb) / 1024.0;
    row.added_p99_ms = row.p99_ms - row.baseline_p99_ms;
    AddFloorAfter(row);
    return row;
  }

 private:
  // The floor again after the load: the median of the slices before and after follows the
  // machine's drift (other work on shared cores) over the scenario.
  void AddFloorAfter(Row& row) {
    row.floor.Merge(MeasureFloorNow());
  }

  void Snapshot(Measured& m, pid_t gw, pid_t sb, const std::string& sandbox_url, bool start) {
    (start ? m.t0 : m.t1) = NowNs();
    if (start) m.recorder.Open(m.t0);
    (start ? m.gw0 : m.gw1) = ReadProc(gw);
    (start ? m.sb0 : m.sb1) = ReadProc(sb);
    if (!start) m.recorder.Close(m.t1);
    (start ? m.upstream0 : m.upstream1) = SandboxRequests(setup_, sandbox_url);
    (start ? m.sign0 : m.sign1) = ScrapeSigning(gateway_metrics_url_);
  }

  void Fill(Row& row, Measured& m) {
    row.rpcs = m.recorder.completed();
    const double secs = static_cast<double>(m.t1 - m.t0) / 1e9;
    row.rps = static_cast<double>(row.rpcs) / secs;
    row.p50_ms = m.recorder.QuantileMs(0.50);
    row.p99_ms = m.recorder.QuantileMs(0.99);
    row.p999_ms = m.recorder.QuantileMs(0.999);
    row.errors += m.recorder.errors();
    for (auto& e : m.recorder.error_samples()) row.error_samples.push_back(e);
    if (row.rpcs > 0) {
      row.gateway_cpu_us = (m.gw1.cpu_s - m.gw0.cpu_s) * 1e6 / static_cast<double>(row.rpcs);
      row.sandbox_cpu_us = (m.sb1.cpu_s - m.sb0.cpu_s) * 1e6 / static_cast<double>(row.rpcs);
      // The stats request itself is not counted by the sandbox (admin endpoint).
      row.upstream_per_rpc = static_cast<double>(m.upstream1 - m.upstream0) / static_cast<double>(row.rpcs);
      const double signatures = m.sign1.signatures - m.sign0.signatures;
      if (signatures > 0) {
        row.gateway_sign_us = (m.sign1.cpu_s - m.sign0.cpu_s) * 1e6 / signatures;
        row.gateway_other_us = row.gateway_cpu_us - (m.sign1.cpu_s - m.sign0.cpu_s) * 1e6 / static_cast<double>(row.rpcs);
      }
    }
  }

  Setup setup_;
  std::string gateway_metrics_url_;  // of the gateway of the scenario running
};

std::string Fmt(double v, int decimals = 1) { return absl::StrFormat("%.*f", decimals, v); }

void PrintHeader() {
  std::printf("%-15s %9s %8s %8s %9s %7s %9s %9s %7s %8s %8s %9s %8s %7s %8s  %s\n", "scenario", "req/s", "p50 ms",
              "p99 ms", "p99.9 ms", "errors", "gw us/rpc", "floor us", "ratio", "gw sign", "gw other", "sbx us/rpc",
              "rss MB", "threads", "up/rpc", "notes");
}

void PrintRow(const Row& r, const std::string& notes) {
  std::printf("%-15s %9s %8s %8s %9s %7lld %9s %9s %6sx %8s %8s %9s %8s %7d %8s  %s\n", r.name.c_str(),
              Fmt(r.rps, 0).c_str(), Fmt(r.p50_ms, 2).c_str(), Fmt(r.p99_ms, 2).c_str(), Fmt(r.p999_ms, 2).c_str(),
              static_cast<long long>(r.errors), Fmt(r.gateway_cpu_us).c_str(), Fmt(r.floor.total_us()).c_str(),
              Fmt(r.ratio(), 2).c_str(), Fmt(r.gateway_sign_us).c_str(), Fmt(r.gateway_other_us).c_str(),
              Fmt(r.sandbox_cpu_us).c_str(), Fmt(r.peak_rss_mb).c_str(), r.peak_threads,
              Fmt(r.upstream_per_rpc, 3).c_str(), notes.c_str());
  std::fflush(stdout);
}

nlohmann::json ToJson(const Row& r) {
  nlohmann::json j = {{"scenario", r.name},
                      {"rps", r.rps},
                      {"rpcs", r.rpcs},
                      {"p50_ms", r.p50_ms},
                      {"p99_ms", r.p99_ms},
                      {"p999_ms", r.p999_ms},
                      {"errors", r.errors},
                      {"gateway_cpu_us_per_rpc", r.gateway_cpu_us},
                      {"sandbox_cpu_us_per_rpc", r.sandbox_cpu_us},
                      {"floor_sign_us", r.floor.sign_us},
                      {"floor_verify_us", r.floor.verify_us},
                      {"floor_sign_slices_us", r.floor.sign_slices_us},
                      {"floor_verify_slices_us", r.floor.verify_slices_us},
                      {"floor_us", r.floor.total_us()},
                      {"cpu_ratio_to_floor", r.ratio()},
                      {"gateway_sign_cpu_us_per_signature", r.gateway_sign_us},
                      {"gateway_other_cpu_us_per_rpc", r.gateway_other_us},
                      {"gateway_peak_threads", r.peak_threads},
                      {"gateway_peak_rss_mb", r.peak_rss_mb},
                      {"upstream_calls_per_rpc", r.upstream_per_rpc},
                      {"error_samples", r.error_samples}};
  if (r.baseline_p99_ms >= 0) {
    j["direct_p50_ms"] = r.baseline_p50_ms;
    j["direct_runs"] = r.baseline_runs;
    j["direct_stable"] = r.baseline_stable;
    j["direct_p99_ms"] = r.baseline_p99_ms;
    j["added_p99_ms"] = r.added_p99_ms;
  }
  if (r.target_rps >= 0) j["target_rps"] = r.target_rps;
  return j;
}

std::string Machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "?";
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return absl::StrCat(std::thread::hardware_concurrency(), " CPUs, ", model, ", ", OPENSSL_VERSION_TEXT, ", gRPC ",
                      grpc::Version());
}

int Main() {
  const bool smoke = absl::GetFlag(FLAGS_smoke);
  // 2,000 upstream connections + 2,000 gRPC streams + the sandbox's side of
  // every connection: raise the descriptor limit to the hard limit (inherited
  // by the gateway and the sandbox).
  rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  getrlimit(RLIMIT_NOFILE, &nofile);

  auto dir = palmgate::testing::MakeTempDir("palmgate-bench");
  if (!dir.ok()) {
    std::cerr << "bench: " << dir.status() << std::endl;
    return 2;
  }
  Setup setup;
  setup.dir = *dir;
  setup.keys = *dir + "/keys";
  setup.tls = !absl::GetFlag(FLAGS_http);
  setup.gateway_binary = absl::GetFlag(FLAGS_gateway).empty() ? PALMGATE_GATEWAY_BINARY : absl::GetFlag(FLAGS_gateway);
  setup.users = MakeUsers(smoke ? 50 : absl::GetFlag(FLAGS_users));
  setup.seed_path = *dir + "/seed.json";
  if (absl::Status s = palmgate::testing::RunSandboxKeygen(setup.keys); !s.ok()) {
    std::cerr << "bench: keygen: " << s << std::endl;
    return 2;
  }
  if (absl::Status s = WriteFile(setup.seed_path, SeedJson(setup.users)); !s.ok()) {
    std::cerr << "bench: " << s << std::endl;
    return 2;
  }

  const absl::Duration warmup = smoke ? absl::Milliseconds(300) : absl::GetFlag(FLAGS_warmup);
  const absl::Duration duration = smoke ? absl::Seconds(1) : absl::GetFlag(FLAGS_duration);
  const int concurrency = smoke ? 4 : absl::GetFlag(FLAGS_concurrency);
  const int slow_inflight = smoke ? 40 : absl::GetFlag(FLAGS_slow_inflight);
  const int slow_latency = smoke ? 20 : absl::GetFlag(FLAGS_slow_latency_ms);
  const std::vector<std::string> scenarios = absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',', absl::SkipEmpty());
  auto wanted = [&](const char* s) { return std::find(scenarios.begin(), scenarios.end(), s) != scenarios.end(); };

  std::printf("palmgate-bench: %s; upstream %s; RLIMIT_NOFILE %llu\n", Machine().c_str(),
              setup.tls ? "HTTPS" : "HTTP", static_cast<unsigned long long>(nofile.rlim_cur));
  PrintHeader();
  Bench bench(setup);
  std::vector<Row> rows;
  nlohmann::json targets = nlohmann::json::object();
  double saturation_rps = 0;

  nlohmann::json saturation_ratios = nlohmann::json::array();
  if (wanted("saturation")) {
    // One window on a shared machine moves by +-10 %: the row is the median of several independent runs.
    const int runs = smoke ? 1 : std::max(1, absl::GetFlag(FLAGS_saturation_runs));
    std::vector<Row> all;
    for (int i = 0; i < runs; ++i) {
      all.push_back(bench.RunClosed("saturation", concurrency, 0, 0, {kNoCoalescing}, warmup, duration));
      saturation_ratios.push_back(all.back().ratio());
    }
    std::vector<std::string> each;
    for (const Row& r : all) each.push_back(Fmt(r.ratio(), 2));
    std::sort(all.begin(), all.end(), [](const Row& a, const Row& b) { return a.ratio() < b.ratio(); });
    Row r = all[all.size() / 2];
    for (const Row& other : all) {
      if (&other == &all[all.size() / 2]) continue;
      r.errors += other.errors;
      r.error_samples.insert(r.error_samples.end(), other.error_samples.begin(), other.error_samples.end());
    }
    saturation_rps = r.rps;
    targets["saturation_cpu_ratio_le_1.4"] = r.ratio() <= 1.4;
    PrintRow(r, absl::StrCat("c=", concurrency, "; target ratio <= 1.40; median of ", runs, " runs (",
                             absl::StrJoin(each, ", "), ")"));
    rows.push_back(r);
  }
  // Steady runs before slow: in the seconds after the slow scenario (2,000 calls, 512 upstream
  // connections, ~150 MB freed) the in-process direct run stalled (p99 71-649 ms, p50 1.1 ms; seen
  // in 4 of 4 tries), while run alone it did not (p99 2.0-2.4 ms in 5 runs).
  if (wanted("steady")) {
    double rate = absl::GetFlag(FLAGS_steady_rate);
    if (rate <= 0) rate = saturation_rps > 0 ? saturation_rps / 2 : 200;
    if (smoke) rate = std::min(rate, 50.0);
    Row r = bench.RunSteady(rate, smoke ? absl::Milliseconds(300) : absl::Seconds(3),
                            smoke ? absl::Seconds(1) : absl::GetFlag(FLAGS_steady_duration));
    // Unknown (not "met") when even the last direct run stalled.
    targets["steady_added_p99_le_2ms"] = r.baseline_stable && r.added_p99_ms <= 2.0;
    PrintRow(r, absl::StrCat(Fmt(rate, 0), " req/s offered; direct p50/p99 ", Fmt(r.baseline_p50_ms, 2), "/",
                             Fmt(r.baseline_p99_ms, 2), " ms (", r.baseline_runs, r.baseline_runs == 1 ? " run" : " runs",
                             r.baseline_stable ? "" : ", STALLED: row invalid", "), added p99 ",
                             Fmt(r.added_p99_ms, 2), " ms (target <= 2)"));
    rows.push_back(r);
  }
  if (wanted("slow")) {
    // Ramp-up: every RPC in flight holds its own upstream HTTP/1.1 connection; opened all at
    // once, their TLS handshakes swamp this 2-core machine (the sandbox signs one per handshake).
    const int step = smoke ? 100 : std::max(1, absl::GetFlag(FLAGS_slow_ramp_per_second) / 10);
    Row r = bench.RunClosed("slow", slow_inflight, slow_latency, 0, {kNoCoalescing}, warmup + absl::Seconds(smoke ? 0 : 3),
                            duration, step);
    const double latency_bound = slow_inflight / (slow_latency / 1000.0);
    // CPU bound: what the machine delivered at saturation in this run.
    const double bound = saturation_rps > 0 ? std::min(latency_bound, saturation_rps) : latency_bound;
    r.target_rps = 0.9 * bound;
    targets["slow_rps_ge_90pct_bound"] = r.rps >= r.target_rps;
    targets["slow_rss_lt_150mb"] = r.peak_rss_mb < 150;
    PrintRow(r, absl::StrCat("in flight ", slow_inflight, ", ", slow_latency, " ms; target >= ", Fmt(r.target_rps, 0),
                             " req/s (latency bound ", Fmt(latency_bound, 0), ")"));
    rows.push_back(r);
    if (wanted("saturation")) {
      targets["threads_independent_of_inflight"] = r.peak_threads <= rows.front().peak_threads + 2;
    }
  }
  if (wanted("coalesce")) {
    const int latency = smoke ? 10 : absl::GetFlag(FLAGS_coalesce_latency_ms);
    for (bool on : {true, false}) {
      Row r = bench.RunClosed(on ? "coalesce-on" : "coalesce-off", concurrency, latency, absl::GetFlag(FLAGS_zipf_s),
                              {absl::StrCat("--coalesce=", on ? "true" : "false")}, warmup, duration);
      PrintRow(r, absl::StrCat("zipf s=", absl::GetFlag(FLAGS_zipf_s), " over ", setup.users.size(), " keys, c=",
                               concurrency, ", ", latency, " ms"));
      rows.push_back(r);
    }
  }

  int64_t errors = 0;
  for (const Row& r : rows) {
    errors += r.errors;
    for (const std::string& e : r.error_samples) std::printf("  %s error: %s\n", r.name.c_str(), e.c_str());
  }
  std::printf("targets:");
  for (auto& [k, v] : targets.items()) std::printf(" %s=%s", k.c_str(), v.get<bool>() ? "met" : "MISSED");
  std::printf("\n%s\n", errors == 0 ? "bench: OK (no errors, every response verified)" : "bench: FAILED: errors");

  if (!absl::GetFlag(FLAGS_json).empty()) {
    nlohmann::json out = {{"machine", Machine()}, {"upstream", setup.tls ? "https" : "http"}, {"smoke", smoke},
                          {"nofile_limit", nofile.rlim_cur}, {"targets", targets}, {"errors", errors},
                          {"saturation_run_ratios", saturation_ratios}};
    out["rows"] = nlohmann::json::array();
    for (const Row& r : rows) out["rows"].push_back(ToJson(r));
    if (!absl::GetFlag(FLAGS_openssl_speed).empty()) {
      auto speed = ReadFile(absl::GetFlag(FLAGS_openssl_speed));
      if (speed.ok()) out["openssl_speed_rsa2048"] = *speed;
    }
    std::ofstream(absl::GetFlag(FLAGS_json)) << out.dump(2) << "\n";
  }
  std::error_code ec;
  std::filesystem::remove_all(setup.dir, ec);
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace palmgate::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return palmgate::bench::Main();
}
