// Tokens on their way into a dataset: a temporary file, removed with the
// spool, that prepare appends to as it tokenizes and the dataset is written
// from at the end, so that memory stays bounded whatever the corpus. Each
// token is stored in the dataset's element type (little-endian uint8, 16 or
// 32, by the vocabulary).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace cllm {

class TokenSpool {
 public:
  // Creates the spool `what` ("train") of the dataset at path, beside it
  // and hidden (replacing a file there). Errors are std::runtime_error
  // naming the dataset.
  TokenSpool(const std::filesystem::path& dataset, const std::string& what, int vocab_size);
  ~TokenSpool();
  TokenSpool(const TokenSpool&) = delete;
  TokenSpool& operator=(const TokenSpool&) = delete;

  // Throws std::runtime_error naming the file (a full disk among the causes).
  void append(std::span<const std::int32_t> tokens);
  // Tokens given as their stored bytes (element_size() each): byte-level
  // text is its own token ids.
  void append_bytes(std::span<const unsigned char> bytes);
  std::uint64_t size() const { return size_; }  // tokens
  std::size_t element_size() const { return element_size_; }
  // The stored bytes of tokens [start, start + count).
  void read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const;

 private:
  std::filesystem::path dataset_, path_;
  int fd_ = -1;
  std::size_t element_size_;
  std::uint64_t size_ = 0;
  std::vector<unsigned char> scratch_;  // append's bytes, kept between calls

  std::runtime_error error(const char* what, int err) const;
};

// A stretch of a spool's tokens: one split of a dataset.
struct SpoolRange {
  const TokenSpool* spool = nullptr;
  std::uint64_t begin = 0, end = 0;
  std::uint64_t size() const { return end - begin; }
};

}  // namespace cllm
