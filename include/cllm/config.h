// Model and training configuration, their presets and their validation.
#pragma once

#include <cstdint>
#include <string>

namespace cllm {

// GPT-2 architecture. The vocabulary size comes from the data.
struct ModelConfig {
  int vocab_size = 256;  // V
  int seq_len = 128;     // T, also the number of learned positions
  int n_layer = 4;       // L
  int n_head = 4;        // NH
  int n_embd = 256;      // C

  int head_size() const { return n_embd / n_head; }
  // Throws std::invalid_argument naming the offending option.
  void validate() const;
  // Model FLOPs per trained token (forward + backward): 6 x matmul
  // parameters plus the attention term, as PLATFORM.md counts them.
  double flops_per_token() const;
};

// Named shapes: small = 4 layers, 4 heads, 256 wide, seq 128;
// medium = 6, 6, 384, seq 256. Throws std::invalid_argument for other names.
ModelConfig preset_config(const std::string& name);

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

struct TrainConfig {
  ModelConfig model;
  OptimizerConfig optim;
  int micro_batch = 8;     // sequences per micro-batch (one thread at a time)
  int global_batch = 32;   // sequences per optimizer step
  int steps = 1000;
  std::uint64_t seed = 1337;
  int threads = 1;
  int log_every = 10;
  int eval_every = 100;    // 0: only at the end
  int eval_batches = 8;    // micro-batches of validation windows per evaluation
  int max_bad_steps = 5;   // consecutive non-finite steps before giving up
  int sample_tokens = 200; // text sampled at the end (0: none)
  double bucket_mb = 4.0;  // gradient allreduce bucket size, MiB
  int check_every = 100;   // steps between cross-rank parameter checksums (0: end only)

  int micro_batches_per_step() const { return global_batch / micro_batch; }
  std::int64_t tokens_per_step() const {
    return static_cast<std::int64_t>(global_batch) * model.seq_len;
  }
  // Throws std::invalid_argument naming the offending option; the global
  // batch must split into whole micro-batches on each of `ranks` ranks.
  void validate(int ranks = 1) const;
};

// Learning rate at a 0-based step: linear warm-up, then cosine decay to
// lr * min_lr_ratio at the last step.
float learning_rate(const OptimizerConfig& o, int step, int total_steps);

}  // namespace cllm
