// Token data for training: a corpus turned into token ids by a tokenizer and
// split into a training part and a held-out validation tail.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cllm/data/token_source.h"

namespace cllm {

// Byte-level tokenizer: each byte is its own token, vocabulary 256.
struct ByteTokenizer {
  static constexpr int kVocabSize = 256;
  std::vector<std::int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<std::int32_t>& tokens) const;
};

// Tokens held in memory: a text file, or synthetic data in tests and bench.
struct TokenDataset final : TokenSource {
  std::vector<std::int32_t> train;
  std::vector<std::int32_t> val;
  int vocab_size = 0;
  std::string source;  // where it came from, for messages
  std::string contents_identity;  // see TokenSource::identity; empty for synthetic data

  std::uint64_t split_size(Split split) const override { return of(split).size(); }
  void read_tokens(Split split, std::uint64_t start, std::size_t count,
                   std::int32_t* out) const override;
  int vocab() const override { return vocab_size; }
  const std::string& name() const override { return source; }
  std::string identity() const override { return contents_identity; }

 private:
  const std::vector<std::int32_t>& of(Split split) const {
    return split == Split::train ? train : val;
  }
};

// Reads a text file with the byte tokenizer and holds out the last
// val_fraction of it. Throws std::runtime_error naming the file when it is
// missing, unreadable, or too short for windows of seq_len + 1 tokens.
TokenDataset load_text_dataset(const std::filesystem::path& path, double val_fraction,
                               int seq_len);

}  // namespace cllm
