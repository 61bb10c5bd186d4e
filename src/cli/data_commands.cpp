// `cllm prepare` (text -> HDF5 token dataset, prepare.h) and `cllm generate`
// (text from a checkpoint, generate_text.h): their options, and the call to
// the library on rank 0.
#include <cstdio>

#include "agreement.h"
#include "options.h"
#include "subcommands.h"

namespace cllm {

void add_prepare_options(CLI::App& app, PrepareSpec& spec) {
  app.add_option("inputs", spec.inputs, "Text files (UTF-8), in order")->required();
  app.add_option("--out", spec.out, "HDF5 dataset to write (replaced atomically)")
      ->capture_default_str();
  app.add_option("--tokenizer", spec.tokenizer, "byte (vocab 256) or gpt2-bpe (vocab 50257)")
      ->capture_default_str();
  app.add_option("--vocab-dir", spec.vocab_dir,
                 "Folder with GPT-2's encoder.json and vocab.bpe (gpt2-bpe)")
      ->capture_default_str();
  app.add_option("--val-fraction", spec.val_fraction,
                 "Tail of the tokens held out for validation")
      ->capture_default_str()
      ->check(real_range(0.0, 0.5));
}

int run_prepare(PrepareSpec& spec, const Comm& comm) {
  PrepareSummary done;
  if (auto code = agree_on_setup(comm, [&] {
        spec.validate();  // on every rank: each one's own --out and inputs
        if (!comm.is_root()) return;
        done = prepare_dataset(spec, [](const PrepareProgress& p) {
          std::fprintf(stderr, "prepare: %.*s: %.0f of %.0f MB tokenized (%.0f s)\n",
                       static_cast<int>(p.input.size()), p.input.data(), p.bytes_done / 1e6,
                       p.bytes / 1e6, p.seconds);
        });
      }))
    return *code;
  if (comm.is_root())
    std::printf("prepare: %s: %zu bytes -> %zu train + %zu val tokens (%s, vocab %d) in %.2f s\n",
                spec.out.c_str(), done.bytes, done.train_tokens, done.val_tokens,
                done.tokenizer.c_str(), done.vocab_size, done.seconds);
  return kExitOk;
}

void add_generate_options(CLI::App& app, GenerateSpec& spec) {
  app.add_option("--checkpoint", spec.checkpoint, "Checkpoint file (checkpoint-<step>.h5)")
      ->required();
  app.add_option("--prompt", spec.prompt, "Text to continue")->capture_default_str();
  app.add_option("--tokens", spec.sampling.tokens, "New tokens to generate")
      ->capture_default_str();
  app.add_option("--temperature", spec.sampling.temperature, "Sampling temperature (> 0)")
      ->capture_default_str();
  app.add_option("--top-k", spec.sampling.top_k, "Sample among the k likeliest tokens (0: all)")
      ->capture_default_str();
  app.add_option("--seed", spec.sampling.seed, "Sampling seed")->capture_default_str();
}

int run_generate(GenerateSpec& spec, const Comm& comm) {
  std::string text;
  if (auto code = agree_on_setup(comm, [&] {
        spec.validate();
        if (comm.is_root()) text = generate_text(spec);
      }))
    return *code;
  if (comm.is_root()) {
    // Written by size, not with %s: byte-level text may hold NUL bytes.
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::printf("\n");
  }
  return kExitOk;
}

}  // namespace cllm
