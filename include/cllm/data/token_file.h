// Token ids that another tool has already made, read as a stream with
// bounded memory: llm.c's shards (.bin: a 256-int32 header, then uint16 or
// uint32 ids) and NumPy arrays (.npy: a 1-D array of an integer dtype).
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace cllm {

class Sha256;

// Whether path names a token file by its extension: .bin or .npy, in any case.
bool is_token_file(const std::string& path);

// Reads one token file. The header is checked when it opens: the file's
// size must be exactly what the header says, so a truncated or padded file
// is refused before any id is handed out.
class TokenFileReader {
 public:
  // vocab_size: every id must be in [0, vocab_size). Throws
  // std::runtime_error "PATH: why" for a file that is missing, not a regular
  // file, or whose header is not one this reader accepts.
  TokenFileReader(std::string path, int vocab_size);
  ~TokenFileReader();
  TokenFileReader(const TokenFileReader&) = delete;
  TokenFileReader& operator=(const TokenFileReader&) = delete;

  // Replaces ids with the next up to max_tokens ids (max_tokens > 0), or
  // leaves it empty and returns false at the end. Throws std::runtime_error
  // "PATH: token id X at position P is outside the vocabulary of V tokens"
  // (P counted from 0) at the first id outside [0, vocab_size), and for a
  // read error or a file that changed size while it was read.
  bool next(std::vector<std::int32_t>& ids, std::size_t max_tokens);

  std::uint64_t tokens() const { return tokens_; }          // in the file, from its header
  std::uint64_t bytes_read() const { return bytes_read_; }  // of the file so far, header too
  // What the file is, for messages: "llm.c tokens, uint16", "NumPy <i4".
  const std::string& format() const { return format_; }
  // SHA-256 of the whole file's bytes, as lowercase hex, once next() has
  // returned false (std::logic_error before).
  std::string sha256();

 private:
  void open_llmc(std::uint64_t size);
  void open_npy(std::uint64_t size);
  // Checks that the ids fill the file from data_offset to its end.
  void start_tokens(std::uint64_t data_offset, std::uint64_t size, const char* what, const char* says);
  void read_exactly(unsigned char* out, std::size_t n);  // hashed and counted
  void refill();      // the buffer, once spent
  void check_end();   // after the last byte: nothing follows

  std::string path_;
  std::int64_t vocab_;
  std::ifstream in_;
  std::unique_ptr<Sha256> sha_;
  std::string format_, sha_hex_;
  unsigned element_bytes_ = 0;  // 1, 2, 4 or 8, little-endian
  bool signed_ = false;
  std::uint64_t tokens_ = 0, tokens_done_ = 0, bytes_read_ = 0, file_size_ = 0;
  static constexpr std::size_t kReadBytes = std::size_t{1} << 20;  // a multiple of every element size
  std::unique_ptr<unsigned char[]> buffer_;
  std::size_t buffer_capacity_ = 0;  // min(kReadBytes, bytes of the ids)
  std::size_t buffer_size_ = 0, buffer_used_ = 0;  // bytes in it, bytes handed out
  bool at_end_ = false;  // every byte read, and none past them
};

}  // namespace cllm
