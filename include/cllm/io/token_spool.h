// Tokens on their way into a dataset: a temporary file beside it that
// prepare appends to as it tokenizes, and the dataset is written from at the
// end, so that memory stays bounded whatever the corpus. Each token is
// stored in the dataset's element type (little-endian uint8, 16 or 32, by the
// vocabulary). Under mpirun every rank has its own spools, and reads the
// others' by name (the dataset's folder is shared, as for training).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace cllm {

// Bytes a token takes in a dataset of vocab_size tokens: 1, 2 or 4.
std::size_t token_element_size(int vocab_size);

// Tokens stored as bytes, read by position: a spool, or an input file.
class TokenBytes {
 public:
  virtual ~TokenBytes() = default;
  virtual std::size_t element_size() const = 0;
  // The stored bytes of tokens [start, start + count).
  virtual void read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const = 0;
};

class TokenSpool final : public TokenBytes {
 public:
  // Creates the spool `what` ("train") of the dataset at path, beside it
  // and hidden (replacing a file there); removed with this object. Errors
  // are std::runtime_error naming the dataset.
  TokenSpool(const std::filesystem::path& dataset, const std::string& what, std::size_t element_size);
  // Opens, to read, the spool `what` that another process created and
  // still owns (it is not removed with this object).
  static TokenSpool open(const std::filesystem::path& dataset, const std::string& what,
                         std::size_t element_size);
  ~TokenSpool();
  TokenSpool(TokenSpool&& o) noexcept;
  TokenSpool& operator=(TokenSpool&&) = delete;
  TokenSpool(const TokenSpool&) = delete;
  TokenSpool& operator=(const TokenSpool&) = delete;

  // Throws std::runtime_error naming the file (a full disk among the causes).
  void append(std::span<const std::int32_t> tokens);
  // Tokens given as their stored bytes (element_size() each): byte-level
  // text is its own token ids.
  void append_bytes(std::span<const unsigned char> bytes);
  std::uint64_t size() const { return size_; }  // tokens
  std::size_t element_size() const override { return element_size_; }
  void read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const override;

 private:
  TokenSpool(const std::filesystem::path& dataset, const std::string& what, std::size_t element_size,
             bool create);
  std::filesystem::path dataset_, path_;
  int fd_ = -1;
  bool owned_ = true;  // created here: removed here
  std::size_t element_size_;
  std::uint64_t size_ = 0;
  std::vector<unsigned char> scratch_;  // append's bytes, kept between calls

  std::runtime_error error(const char* what, int err) const;
};

// A plain text file as byte-level tokens, read where it lies: byte-level
// text needs no spool. Errors are std::runtime_error naming the file.
class FileTokens final : public TokenBytes {
 public:
  explicit FileTokens(const std::string& path);
  ~FileTokens() override;
  FileTokens(FileTokens&& o) noexcept;
  FileTokens& operator=(FileTokens&&) = delete;
  FileTokens(const FileTokens&) = delete;
  FileTokens& operator=(const FileTokens&) = delete;

  std::size_t element_size() const override { return 1; }
  void read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const override;

 private:
  std::string path_;
  int fd_ = -1;
};

// A stretch of a spool's tokens (or a file's).
struct SpoolRange {
  const TokenBytes* spool = nullptr;
  std::uint64_t begin = 0, end = 0;
  std::uint64_t size() const { return end - begin; }
};

// The tokens of one split of a dataset, in order: stretches of spools (one
// per rank that tokenized a part of it).
class TokenStream {
 public:
  TokenStream() = default;
  explicit TokenStream(std::vector<SpoolRange> pieces);
  std::uint64_t size() const { return size_; }
  std::size_t element_size() const { return pieces_.empty() ? 1 : pieces_.front().spool->element_size(); }
  // The stored bytes of tokens [start, start + count), across pieces.
  void read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const;
  // Tokens [begin, end) of this stream.
  TokenStream slice(std::uint64_t begin, std::uint64_t end) const;

 private:
  std::vector<SpoolRange> pieces_;
  std::uint64_t size_ = 0;
};

}  // namespace cllm
