// Which tokenizer made a dataset, with its vocabulary files, so datasets and
// checkpoints carry everything `cllm generate` needs to turn ids into text.
#pragma once

#include <cstdint>
#include <string>

namespace cllm {

struct TokenizerSpec {
  std::string name = "byte";      // "byte" or "gpt2-bpe"
  int vocab_size = 256;
  std::int64_t eot_token = -1;    // end-of-text id between documents; -1: none (byte)
  std::string encoder_json;       // gpt2-bpe only: the files' contents
  std::string vocab_bpe;
};

}  // namespace cllm
