#include "cllm/data/tokenizer.h"

#include <stdexcept>

#include "cllm/base/setting_error.h"
#include "cllm/data/bpe_tokenizer.h"
#include "cllm/data/text_dataset.h"

namespace cllm {

namespace {

class ByteLevel final : public Tokenizer {
 public:
  explicit ByteLevel(TokenizerSpec spec) : spec_(std::move(spec)) {}
  std::vector<std::int32_t> encode(std::string_view text) const override {
    return ByteTokenizer{}.encode(std::string(text));
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    for (auto id : ids)
      if (id < 0 || id >= ByteTokenizer::kVocabSize)
        throw std::out_of_range("token id " + std::to_string(id) + " is not a byte");
    return ByteTokenizer{}.decode(std::vector<std::int32_t>(ids.begin(), ids.end()));
  }
  const TokenizerSpec& spec() const override { return spec_; }

 private:
  TokenizerSpec spec_;
};

class Gpt2Bpe final : public Tokenizer {
 public:
  explicit Gpt2Bpe(TokenizerSpec spec)
      : spec_(std::move(spec)), bpe_(spec_.encoder_json, spec_.vocab_bpe) {}
  std::vector<std::int32_t> encode(std::string_view text) const override {
    return bpe_.encode(text);
  }
  struct Words final : Memory {
    Gpt2BpeTokenizer::WordIds ids;
  };
  std::unique_ptr<Memory> new_memory() const override { return std::make_unique<Words>(); }
  std::vector<std::int32_t> encode(std::string_view text, Memory* memory) const override {
    if (!memory) return encode(text);
    return bpe_.encode(text, static_cast<Words&>(*memory).ids);
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    return bpe_.decode(ids);
  }
  const TokenizerSpec& spec() const override { return spec_; }

 private:
  TokenizerSpec spec_;
  Gpt2BpeTokenizer bpe_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerSpec& spec) {
  if (spec.name == "byte") return std::make_unique<ByteLevel>(spec);
  if (spec.name == "gpt2-bpe") return std::make_unique<Gpt2Bpe>(spec);
  throw std::runtime_error("unknown tokenizer '" + spec.name + "'");
}

TokenizerSpec tokenizer_spec(const std::string& name, const std::filesystem::path& vocab_dir) {
  TokenizerSpec s;
  if (name == "byte") return s;
  if (name != "gpt2-bpe")
    throw SettingError("{tokenizer}: '" + SettingError::literal(name) +
                       "' is not byte or gpt2-bpe");
  s.name = name;
  s.vocab_size = Gpt2BpeTokenizer::kVocabSize;
  s.eot_token = Gpt2BpeTokenizer::kEndOfText;
  Gpt2BpeTokenizer::Files files = Gpt2BpeTokenizer::read_files(vocab_dir);
  s.encoder_json = std::move(files.encoder_json);
  s.vocab_bpe = std::move(files.vocab_bpe);
  return s;
}

}  // namespace cllm
