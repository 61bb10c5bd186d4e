// What the Trainer needs to run optimizer steps: the model's shape, AdamW
// and its learning-rate schedule, and how a step's batch is split over
// ranks and threads. The run around the steps (cadences, checkpoints) is
// RunConfig's (run_config.h). Each setting's range, option and record are
// its row in train_settings.cpp; validate() throws SettingError naming the
// setting (setting_error.h), before any file is read.
#pragma once

#include <cstdint>
#include <optional>

#include "cllm/kernels/matmul.h"
#include "cllm/model/model_config.h"

namespace cllm {

struct OptimizerConfig {
  float lr = 1e-3f;            // peak learning rate
  float min_lr_ratio = 0.1f;   // cosine decay ends at lr * min_lr_ratio
  int warmup_steps = 100;      // linear warm-up from lr / warmup
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;   // matrices and embeddings only
  float grad_clip = 1.0f;      // global L2 norm; 0 disables clipping
};

// Learning rate at a 0-based step: linear warm-up, then cosine decay to
// lr * min_lr_ratio at the last step.
float learning_rate(const OptimizerConfig& o, int step, int total_steps);

// Measured on an emulated 1 Gbit/s link (docs/performance.md): with every
// core computing, a test every 1000 us hid more of the allreduce than every
// 100 us and left the step 16-18% shorter; between layers only hid 51%.
inline constexpr double kDefaultProgressUs = 1000;

// When the gradient allreduce runs: on, each layer's as soon as backward is
// done with it (behind the layers below); off, all of it after backward.
// Either gives the same bits; off is for measuring what on hides.
enum class Overlap { on, off };

// A step's sequences: micro-batches spread over ranks, then threads; the
// rank gradient summed across ranks in buckets.
struct BatchConfig {
  int micro_batch = 8;     // sequences per micro-batch (one thread at a time)
  int global_batch = 32;   // sequences per optimizer step, over all ranks
  int threads = 1;         // OpenMP threads per rank
  double bucket_mb = 4.0;  // gradient allreduce bucket size, MiB
  Overlap overlap = Overlap::on;
  // With overlap, microseconds between a progress thread's tests of the
  // allreduces in flight (0: no thread; the main thread tests between layers).
  // Unset: kDefaultProgressUs when the ranks span nodes, 0 on one node.
  std::optional<double> progress_us;
  Recompute recompute = Recompute::none;  // memory for compute; the results are the same
  kernels::MatmulConfig matmul;  // the engine (recorded as "matmul") and "precision"

  int micro_batches_per_step() const { return global_batch / micro_batch; }
  // What no one setting's range says: the global batch must split into
  // whole micro-batches on each of `ranks` ranks, progress_us, bf16's engine.
  void validate(int ranks) const;
};

struct TrainConfig {
  ModelConfig model;
  OptimizerConfig optim;
  BatchConfig batch;
  int steps = 1000;        // the schedule's length
  std::uint64_t seed = 1337;
  int eval_batches = 8;    // micro-batches of validation windows per evaluation

  std::int64_t tokens_per_step() const {
    return static_cast<std::int64_t>(batch.global_batch) * model.seq_len;
  }
  void validate(int ranks = 1) const;
};

}  // namespace cllm
