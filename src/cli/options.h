// Option groups shared by `cllm train` and `cllm bench`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>

#include "cllm/train/train_config.h"

namespace cllm {

// CLI::Range(lo, hi) for a real option, but NaN fails it too (CLI11's Range
// compares, and every comparison with NaN is false).
CLI::Validator real_range(double lo, double hi);

// The option that sets a setting of the library's (SettingError names
// settings as checkpoints record them): n_layer is --layers, micro_batch
// --micro-batch.
std::string option_name(std::string_view setting);

struct ModelOptions {
  std::string preset = "small";
  int layers = 0, heads = 0, embd = 0, seq_len = 0;
  CLI::Option *layers_opt = nullptr, *heads_opt = nullptr, *embd_opt = nullptr,
              *seq_opt = nullptr;

  void add(CLI::App& app);
  // The preset's shape with explicit options applied. Throws SettingError
  // for an unknown preset; the shape is checked by TrainConfig::validate.
  ModelConfig resolve(int vocab_size) const;
};

// --micro-batch, --global-batch and --threads, bound to a BatchConfig
// (whose defaults they show).
struct BatchOptions {
  bool derive_global = false;  // bench: global batch defaults to micro x threads x ranks
  CLI::Option* global_opt = nullptr;

  void add(CLI::App& app, BatchConfig& batch, bool global_default_from_threads);
  // The default global batch of bench is micro-batch x threads x ranks.
  void apply(BatchConfig& batch, int ranks) const;
};

// config with the model options (over the byte tokenizer's vocabulary, until
// the data gives its own) and the batch options for `ranks` ranks applied:
// what train and bench do before their library calls validate it.
TrainConfig with_options(TrainConfig config, const ModelOptions& model, const BatchOptions& batch,
                         int ranks);

}  // namespace cllm
