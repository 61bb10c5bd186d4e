// SHA-256 (OpenSSL's libcrypto), as lowercase hex: recorded for prepare's
// inputs, and to tell whether a resumed run trains on the same data.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cllm {

inline constexpr std::size_t kSha256HexChars = 64;  // of every hash below

std::string sha256_hex(std::string_view bytes);

// The same over bytes that arrive in pieces.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  std::string hex();  // of everything so far; once

 private:
  void* context_;  // OpenSSL's EVP_MD_CTX
};

}  // namespace cllm
