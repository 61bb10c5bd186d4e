// `cllm prepare` as a library call: text files tokenized (in order, on all
// cores) into an HDF5 token dataset (dataset_file.h) with a validation tail.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/dist/comm.h"

namespace cllm {

struct PrepareConfig {
  std::vector<std::string> inputs;  // text files, in order
  std::string out = "data/austen.h5";
  std::string tokenizer = "byte";   // or "gpt2-bpe"
  std::string vocab_dir = "data/gpt2-bpe";  // gpt2-bpe's encoder.json and vocab.bpe
  double val_fraction = 0.1;        // tail of the tokens held out for validation
  // Text read and tokenized at a time (0: 8 MiB a thread, at least 16 MiB);
  // tests make it small to cut Austen into many blocks.
  std::size_t block_bytes = 0;

  // Throws SettingError naming the setting: val_fraction outside [0, 0.5],
  // or out among the inputs (the same file under another name included:
  // the dataset would replace it).
  void validate() const;
};

// Where prepare_dataset is while it tokenizes a large input.
struct PrepareProgress {
  std::string_view input;      // as given
  std::size_t bytes_done = 0;  // of input, tokenized
  std::size_t bytes = 0;       // input's size
  double seconds = 0;          // since its tokenizing began
};

struct PrepareSummary {
  std::size_t bytes = 0;  // of all inputs
  std::size_t train_tokens = 0, val_tokens = 0;
  std::string tokenizer;  // its name
  int vocab_size = 0;
  double seconds = 0;     // wall time
};

// Validates spec, tokenizes the inputs (documents separated by the
// end-of-text token where the tokenizer has one), holds out the last
// val_fraction of the tokens and writes the dataset to spec.out atomically.
// progress, when given, is called every few seconds while an input is
// tokenized. Throws std::runtime_error naming the file at fault.
PrepareSummary prepare_dataset(const PrepareConfig& spec,
                               const std::function<void(const PrepareProgress&)>& progress = {});

// cllm prepare under mpirun: spec checked on every rank, the dataset made on
// rank 0 with a progress line on stderr every few seconds. Returns what rank
// 0 prints ("prepare: OUT: BYTES bytes -> N train + M val tokens ...", ""
// elsewhere); a failure throws CollectiveFailure on every rank.
std::string prepare_command(const PrepareConfig& spec, const Comm& comm);

}  // namespace cllm
