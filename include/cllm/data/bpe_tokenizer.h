// GPT-2's byte-level BPE tokenizer, giving the same token ids as OpenAI's
// encoder.py (and tiktoken's "gpt2" encoding) for ordinary text.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// PCRE2's compiled pattern (pcre2_code for 8-bit code units), declared here so
// that only bpe_tokenizer.cpp includes pcre2.h.
struct pcre2_real_code_8;

namespace cllm {

// GPT-2's byte-level BPE (vocab 50257), read from encoder.json + vocab.bpe.
class Gpt2BpeTokenizer {
 public:
  static constexpr int kVocabSize = 50257;
  static constexpr std::int32_t kEndOfText = 50256;  // <|endoftext|>

  // Reads folder/encoder.json and folder/vocab.bpe. Throws std::runtime_error
  // whose message starts with the offending file's path ("PATH: reason") when a
  // file is missing, unreadable or malformed.
  explicit Gpt2BpeTokenizer(const std::filesystem::path& folder);
  // The same from the two files' contents (as datasets and checkpoints store
  // them); the names are for messages.
  Gpt2BpeTokenizer(std::string_view encoder_json, std::string_view vocab_bpe,
                   const std::string& encoder_name = "encoder.json",
                   const std::string& vocab_name = "vocab.bpe");

  // The two vocabulary files of a folder, read (encoder.json first, so a
  // missing folder names it), with their paths for messages.
  struct Files {
    std::string encoder_name, vocab_name, encoder_json, vocab_bpe;
  };
  static Files read_files(const std::filesystem::path& folder);

  // Text is ordinary text: the string "<|endoftext|>" is not special.
  // Bytes that are not valid UTF-8 are kept: each run of them is a piece of
  // its own, so that decode(encode(text)) == text for any bytes.
  std::vector<std::int32_t> encode(std::string_view text) const;
  // The same, with the ids of the words met so far in `words`, kept from
  // text to text by one thread (its keys point into those texts).
  using WordIds = std::unordered_map<std::string_view, std::vector<std::int32_t>>;
  std::vector<std::int32_t> encode(std::string_view text, WordIds& words) const;

  // Throws std::out_of_range naming the id when an id is not in [0, 50257).
  std::string decode(std::span<const std::int32_t> tokens) const;

 private:
  struct Merge {
    std::int32_t rank;  // priority: lower merges first
    std::int32_t id;    // the token the pair becomes
  };
  struct FreeRegex {
    void operator()(pcre2_real_code_8* code) const;
  };
  using TokenIds = std::unordered_map<std::string, std::int32_t>;  // token bytes -> id

  explicit Gpt2BpeTokenizer(const Files& files);
  TokenIds read_encoder(std::string_view json, const std::string& name);
  void read_merges(std::string_view text, const std::string& name, const TokenIds& ids);
  void encode_piece(std::string_view piece, WordIds& words, std::vector<std::int32_t>& out) const;
  void merge_pairs(std::vector<std::int32_t>& word) const;

  std::vector<std::string> token_bytes_;             // id -> the bytes it stands for
  std::array<std::int32_t, 256> byte_ids_{};         // byte -> its one-byte token
  std::unordered_map<std::uint64_t, Merge> merges_;  // (left id, right id) -> merge
  std::unique_ptr<pcre2_real_code_8, FreeRegex> split_pattern_;
};

}  // namespace cllm
