// libFuzzer driver: the GPT-2 BPE tokenizer. Throwing std::exception is a
// correct answer; a crash, a leak, undefined behaviour, an id outside
// [0, 50257) or decode(encode(text)) != text (bpe_tokenizer.h's promise) is a
// finding.
//
// The first byte of an input picks what is fuzzed:
//   'T'   the rest is text for encode and decode, with GPT-2's real
//         vocabulary (data/gpt2-bpe, loaded once): the pre-tokenizer, the
//         UTF-8 handling around PCRE2 and the merges, on any bytes.
//   other the loader: the rest is encoder.json, a NUL byte, then vocab.bpe,
//         the two files' contents as datasets and checkpoints store them.
// The loader wants all 50257 tokens and 50000 merges, 1.5 MB that a fuzzer
// cannot make up and that take a second to load under the sanitizers, so it
// is fuzzed up to its size checks; a loaded vocabulary is the real one.
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/data/bpe_tokenizer.h"
#include "fuzz_common.h"

namespace {

std::unique_ptr<cllm::Gpt2BpeTokenizer> gpt2;

// encode, then decode, checking what bpe_tokenizer.h promises.
void round_trip(const cllm::Gpt2BpeTokenizer& tok, std::string_view text) {
  const std::vector<std::int32_t> ids = tok.encode(text);
  for (const std::int32_t id : ids)
    if (id < 0 || id >= cllm::Gpt2BpeTokenizer::kVocabSize)
      cllm::fuzz::fail("encode gave the id " + std::to_string(id));
  if (tok.decode(ids) != text) cllm::fuzz::fail("decode(encode(text)) != text");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  try {
    gpt2 = std::make_unique<cllm::Gpt2BpeTokenizer>(std::string(CLLM_SOURCE_DIR) +
                                                    "/data/gpt2-bpe");
  } catch (const std::exception& e) {
    cllm::fuzz::fail(e.what());
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 'T') {
    round_trip(*gpt2, input);
    return 0;
  }
  const std::size_t nul = input.find('\0');
  if (nul == std::string_view::npos) return 0;
  try {
    const cllm::Gpt2BpeTokenizer tok(input.substr(0, nul), input.substr(nul + 1));
    round_trip(tok, "Hello, world! It's 2024:\tcaf\xc3\xa9 \xff\xfe ok.");
  } catch (const std::exception&) {
  }
  return 0;
}
