#include "server/crypto/aes_gcm.h"

#include <openssl/rand.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "server/crypto/ssl_ptr.h"

namespace palmgate::crypto {
namespace {

const EVP_CIPHER* CipherFor(size_t key_len) {
  switch (key_len) {
    case 16: return EVP_aes_128_gcm();
    case 24: return EVP_aes_192_gcm();
    case 32: return EVP_aes_256_gcm();
    default: return nullptr;
  }
}

const unsigned char* U(absl::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

absl::StatusOr<SslPtr<EVP_CIPHER_CTX>> Init(absl::string_view key, absl::string_view nonce, bool encrypt) {
  const EVP_CIPHER* cipher = CipherFor(key.size());
  if (cipher == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("aes-gcm: key is ", key.size(), " bytes, expected 32"));
  }
  if (nonce.empty()) return absl::InvalidArgumentError("aes-gcm: empty nonce");
  SslPtr<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return SslErrorStatus("EVP_CIPHER_CTX_new");
  if (EVP_CipherInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr, encrypt ? 1 : 0) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) != 1 ||
      EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, U(key), U(nonce), encrypt ? 1 : 0) != 1) {
    return SslErrorStatus("aes-gcm init");
  }
  return ctx;
}

}  // namespace

absl::StatusOr<std::string> AesGcmSeal(absl::string_view key, absl::string_view nonce,
                                       absl::string_view associated_data, absl::string_view plaintext) {
  auto ctx = Init(key, nonce, /*encrypt=*/true);
  if (!ctx.ok()) return ctx.status();
  int len = 0;
  if (!associated_data.empty() &&
      EVP_EncryptUpdate(ctx->get(), nullptr, &len, U(associated_data), static_cast<int>(associated_data.size())) != 1) {
    return SslErrorStatus("aes-gcm aad");
  }
  std::string out(plaintext.size() + kGcmTagBytes, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int total = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx->get(), o, &len, U(plaintext), static_cast<int>(plaintext.size())) != 1) {
      return SslErrorStatus("aes-gcm encrypt");
    }
    total = len;
  }
  if (EVP_EncryptFinal_ex(ctx->get(), o + total, &len) != 1) return SslErrorStatus("aes-gcm final");
  total += len;
  if (EVP_CIPHER_CTX_ctrl(ctx->get(), EVP_CTRL_GCM_GET_TAG, kGcmTagBytes, o + total) != 1) {
    return SslErrorStatus("aes-gcm tag");
  }
  out.resize(static_cast<size_t>(total) + kGcmTagBytes);
  return out;
}

absl::StatusOr<std::string> AesGcmOpen(absl::string_view key, absl::string_view nonce,
                                       absl::string_view associated_data,
                                       absl::string_view ciphertext_and_tag) {
  if (ciphertext_and_tag.size() < kGcmTagBytes) {
    return absl::InvalidArgumentError("aes-gcm: ciphertext shorter than the 16-byte tag");
  }
  auto ctx = Init(key, nonce, /*encrypt=*/false);
  if (!ctx.ok()) return ctx.status();
  absl::string_view body = ciphertext_and_tag.substr(0, ciphertext_and_tag.size() - kGcmTagBytes);
  absl::string_view tag = ciphertext_and_tag.substr(body.size());
  int len = 0;
  if (!associated_data.empty() &&
      EVP_DecryptUpdate(ctx->get(), nullptr, &len, U(associated_data), static_cast<int>(associated_data.size())) != 1) {
    return SslErrorStatus("aes-gcm aad");
  }
  std::string out(body.size() + 16, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int total = 0;
  if (!body.empty()) {
    if (EVP_DecryptUpdate(ctx->get(), o, &len, U(body), static_cast<int>(body.size())) != 1) {
      return SslErrorStatus("aes-gcm decrypt");
    }
    total = len;
  }
  if (EVP_CIPHER_CTX_ctrl(ctx->get(), EVP_CTRL_GCM_SET_TAG, kGcmTagBytes,
                          const_cast<char*>(tag.data())) != 1) {
    return SslErrorStatus("aes-gcm set tag");
  }
  if (EVP_DecryptFinal_ex(ctx->get(), o + total, &len) != 1) {
    ClearSslErrors();
    return absl::DataLossError("aes-gcm: authentication failed (wrong APIv3 key, nonce or associated data)");
  }
  total += len;
  out.resize(static_cast<size_t>(total));
  return out;
}

std::string RandomBytes(size_t length) {
  std::string out(length, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(length)) != 1) {
    // The CSPRNG failing is a broken invariant: continuing would emit predictable nonces.
    std::abort();
  }
  return out;
}

namespace {

// Bumped in the child of every fork(): a pool filled before the fork must not
// hand the same bytes to both processes.
std::atomic<uint64_t> fork_generation{0};

void OnFork() { fork_generation.fetch_add(1, std::memory_order_relaxed); }

// Per-thread CSPRNG output for nonces. OpenSSL's DRBG costs about 7 µs per
// RAND_bytes call here whatever the length (lock, fork check, derivation), so
// one call fills 1 KB (about 40 nonces of 32 characters). Bytes are zeroed as
// they are consumed: what is left in the pool is never a past nonce.
class NoncePool {
 public:
  unsigned char Next() {
    const uint64_t generation = fork_generation.load(std::memory_order_relaxed);
    if (used_ == sizeof(bytes_) || generation != generation_) Refill(generation);
    const unsigned char c = bytes_[used_];
    bytes_[used_++] = 0;
    return c;
  }

 private:
  void Refill(uint64_t generation) {
    static const bool registered = pthread_atfork(nullptr, nullptr, &OnFork) == 0;
    // The CSPRNG failing (or the fork hook missing) is a broken invariant:
    // continuing could emit predictable or repeated nonces.
    if (!registered || RAND_bytes(bytes_, sizeof(bytes_)) != 1) std::abort();
    used_ = 0;
    generation_ = generation;
  }

  unsigned char bytes_[1024];
  size_t used_ = sizeof(bytes_);
  uint64_t generation_ = 0;
};

}  // namespace

std::string RandomAlphanumeric(size_t length) {
  static constexpr char kSymbols[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  thread_local NoncePool pool;
  std::string out;
  out.reserve(length);
  while (out.size() < length) {
    const unsigned char c = pool.Next();
    // Rejection sampling keeps the distribution uniform: 248 = 4 * 62.
    if (c < 248) out.push_back(kSymbols[c % 62]);
  }
  return out;
}

}  // namespace palmgate::crypto
