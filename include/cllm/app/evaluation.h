// `cllm eval`: a checkpoint's mean loss and perplexity over every window of
// a split, spread over ranks and threads.
#pragma once

#include <cstdint>
#include <string>

#include "cllm/data/token_source.h"
#include "cllm/dist/comm.h"
#include "cllm/model/model.h"

namespace cllm {

struct SplitEvaluation {
  std::uint64_t tokens = 0;   // positions scored (each predicts the token after it)
  std::uint64_t windows = 0;
  double loss = 0;            // mean cross-entropy, nats
  double seconds = 0;
};

// Scores the first max_tokens (0: all) next-token predictions of the split,
// in non-overlapping windows of seq_len, the last one shorter (the tail is
// scored: causal attention makes the positions after it irrelevant). Each
// window is one forward pass of its own, so a window's loss is the same bits
// on every layout, and the sum is taken in window order: the result does not
// depend on the number of ranks or threads. Collective over comm.
SplitEvaluation evaluate_split(const Model& model, const TokenSource& source, Split split,
                               std::uint64_t max_tokens, int threads, const Comm& comm);

struct EvalConfig {
  std::string checkpoint;
  std::string data;
  std::string split = "val";   // val or train
  std::uint64_t max_tokens = 0;  // 0: the whole split
  int threads = 1;
  bool json = false;  // cllm eval's report: one JSON object, not a line

  // Throws SettingError naming the setting.
  void validate() const;
};

// Rank 0 reads the checkpoint and hands its weights to the others; every
// rank opens the data (whose tokenizer must be the checkpoint's). Collective;
// errors reach every rank as CollectiveFailure.
SplitEvaluation evaluate_checkpoint(const EvalConfig& spec, const Comm& comm);

// cllm eval: evaluate_checkpoint, and what rank 0 prints of it ("" on the
// others): a line, or with spec.json one JSON object on a line.
std::string eval_command(const EvalConfig& spec, const Comm& comm);

}  // namespace cllm
