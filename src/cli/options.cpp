// Option definitions shared by the subcommands, and their translation into
// TrainConfig. An explicit model option overrides the --preset's value.
#include "options.h"

#include <omp.h>

#include <algorithm>
#include <utility>

#include "cllm/data/text_dataset.h"

namespace cllm {

CLI::Validator real_range(double lo, double hi) {
  const std::string range = "[" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "'" + text + "' is not a number";
        if (!(v >= lo && v <= hi)) return "must be in " + range + ", not " + text;
        return "";
      },
      "REAL in " + range);
}

std::string option_name(std::string_view setting) {
  static constexpr std::pair<std::string_view, std::string_view> kNamedOtherwise[] = {
      {"n_layer", "--layers"},
      {"n_head", "--heads"},
      {"n_embd", "--embd"},
      {"vocab_size", "vocabulary size"},  // the data's, not an option
  };
  for (const auto& [name, option] : kNamedOtherwise)
    if (name == setting) return std::string(option);
  std::string option = "--" + std::string(setting);
  std::replace(option.begin(), option.end(), '_', '-');
  return option;
}

void ModelOptions::add(CLI::App& app) {
  app.add_option("--preset", preset, "Model shape: small (4 layers, 4 heads, 256 wide, seq 128) "
                                     "or medium (6, 6, 384, seq 256)")
      ->capture_default_str();
  layers_opt = app.add_option("--layers", layers, "Transformer blocks (overrides the preset)");
  heads_opt = app.add_option("--heads", heads, "Attention heads; must divide --embd");
  embd_opt = app.add_option("--embd", embd, "Model width C");
  seq_opt = app.add_option("--seq-len", seq_len, "Tokens per training window (context length)");
}

ModelConfig ModelOptions::resolve(int vocab_size) const {
  ModelConfig c = preset_config(preset);
  if (layers_opt->count()) c.n_layer = layers;
  if (heads_opt->count()) c.n_head = heads;
  if (embd_opt->count()) c.n_embd = embd;
  if (seq_opt->count()) c.seq_len = seq_len;
  c.vocab_size = vocab_size;
  return c;
}

void BatchOptions::add(CLI::App& app, BatchConfig& batch, bool global_default_from_threads) {
  derive_global = global_default_from_threads;
  batch.threads = omp_get_max_threads();
  app.add_option("--micro-batch", batch.micro_batch,
                 "Sequences per micro-batch (one thread's unit)")
      ->capture_default_str();
  global_opt = app.add_option(
      "--global-batch", batch.global_batch,
      global_default_from_threads
          ? "Sequences per optimizer step [default: micro-batch x threads x ranks]"
          : "Sequences per optimizer step, over all ranks; a multiple of ranks x --micro-batch");
  if (!global_default_from_threads) global_opt->capture_default_str();
  app.add_option("--threads", batch.threads, "OpenMP threads [default: OMP_NUM_THREADS]");
}

void BatchOptions::apply(BatchConfig& batch, int ranks) const {
  if (derive_global && !global_opt->count())
    batch.global_batch = batch.micro_batch * batch.threads * ranks;
}

TrainConfig with_options(TrainConfig config, const ModelOptions& model, const BatchOptions& batch,
                         int ranks) {
  batch.apply(config.batch, ranks);
  config.model = model.resolve(ByteTokenizer::kVocabSize);
  return config;
}

}  // namespace cllm
