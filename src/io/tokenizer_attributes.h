// How datasets and checkpoints store a tokenizer. Private to src/io/.
#pragma once

#include "cllm/data/tokenizer_spec.h"
#include "cllm/io/hdf5.h"

namespace cllm {

// A tokenizer as stored in datasets and checkpoints: the attributes
// tokenizer, vocab_size and eot_token on attributes_at (the root of a
// dataset, /tokenizer of a checkpoint), and its vocabulary files, if any, as
// byte datasets under /tokenizer.
void write_tokenizer(hid_t file, hid_t attributes_at, const TokenizerSpec& tokenizer);
TokenizerSpec read_tokenizer(hid_t file, hid_t attributes_at);

}  // namespace cllm
