// Trainer: one rank's data-parallel training. Each OpenMP thread owns a
// ThreadContext and runs forward and backward on its micro-batches over the
// shared model, which it sees only as const. Between barriers the main
// sequence sums the thread gradients in a fixed order (parallel over
// parameter slices), clips, and applies one AdamW step to the one model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cllm/aligned_buffer.h"
#include "cllm/config.h"
#include "cllm/model.h"
#include "cllm/optimizer.h"
#include "cllm/text_dataset.h"
#include "cllm/thread_context.h"

namespace cllm {

struct StepResult {
  int step = 0;             // 0-based
  double loss = 0;          // mean over the step's tokens
  float lr = 0;
  double grad_norm = 0;     // before clipping
  bool applied = false;     // false: non-finite loss or norm, update skipped
  // Seconds spent in each phase of the step.
  double t_forward_backward = 0, t_reduce = 0, t_optimizer = 0, t_total = 0;
};

class Trainer {
 public:
  // The model is initialised from config.seed; the dataset must outlive us.
  Trainer(const TrainConfig& config, const TokenDataset& data);

  // Runs optimizer step `step` (0-based); the data it sees depends only on
  // (seed, step, micro-batch index).
  StepResult train_step(int step);
  // Mean loss over the fixed validation windows.
  double evaluate();

  const Model& model() const { return model_; }
  Model& mutable_model() { return model_; }
  const AdamW& optimizer() const { return optimizer_; }
  const TrainConfig& config() const { return cfg_; }
  // Bytes of one thread's context (activations, gradients, token windows).
  std::size_t thread_context_bytes() const { return contexts_.front()->bytes(); }
  // The rank gradient of the last step (scaled to a mean, before clipping).
  std::span<const float> gradients() const { return grads_.span(); }

 private:
  TrainConfig cfg_;
  const TokenDataset& data_;
  Model model_;
  AdamW optimizer_;
  std::vector<std::unique_ptr<ThreadContext>> contexts_;  // one per thread
  AlignedBuffer<float> grads_;                            // this rank's summed gradient
  std::vector<double> micro_losses_;                      // per micro-batch, for a fixed sum order
};

// The micro-batches [begin, end) that thread t of n owns, out of count:
// contiguous blocks, the first (count % n) threads one larger.
struct Range {
  int begin, end;
};
Range static_block(int count, int n, int t);

}  // namespace cllm
