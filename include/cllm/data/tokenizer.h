// Text <-> token ids for prepare, generate and the sample at the end of
// training: the byte-level tokenizer or GPT-2's BPE, as a TokenizerSpec
// (stored in every dataset and checkpoint) describes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/data/tokenizer_spec.h"

namespace cllm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Thread-safe: prepare encodes pieces of a corpus on several threads.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  // What one thread keeps from text to text it encodes (GPT-2 BPE: each
  // word's ids); the texts must outlive it. Null: nothing worth keeping.
  struct Memory {
    virtual ~Memory() = default;
  };
  virtual std::unique_ptr<Memory> new_memory() const { return nullptr; }
  // encode(text), with memory from new_memory() (or null), one thread's.
  virtual std::vector<std::int32_t> encode(std::string_view text, Memory* /*memory*/) const { return encode(text); }
  // Throws std::out_of_range naming an id outside the vocabulary.
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;
  virtual const TokenizerSpec& spec() const = 0;
};

// The tokenizer a spec describes. Throws std::runtime_error when its
// vocabulary files are malformed.
std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerSpec& spec);

// The spec of a tokenizer by name: "byte", or "gpt2-bpe" with encoder.json
// and vocab.bpe read from vocab_dir. Throws std::invalid_argument for another
// name and std::runtime_error naming a file that cannot be read.
TokenizerSpec tokenizer_spec(const std::string& name, const std::filesystem::path& vocab_dir);

}  // namespace cllm
