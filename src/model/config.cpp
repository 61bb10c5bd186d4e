#include "cllm/config.h"

#include "cllm/setting_error.h"

#include <cmath>
#include <cstdio>
#include <numbers>
#include <stdexcept>

namespace cllm {

namespace {
// what names each setting as {name} (setting_error.h).
void require(bool ok, const std::string& what) {
  if (!ok) throw SettingError(what);
}
}  // namespace

void ModelConfig::validate() const {
  require(vocab_size > 0, "{vocab_size} must be positive");
  require(seq_len > 0, "{seq_len} must be positive");
  require(n_layer > 0, "{n_layer} must be positive");
  require(n_head > 0, "{n_head} must be positive");
  require(n_embd > 0, "{n_embd} must be positive");
  require(n_embd % n_head == 0, "{n_head} (" + std::to_string(n_head) +
                                    ") must divide {n_embd} (" + std::to_string(n_embd) + ")");
  // Sizes are computed in 64-bit integers: bound them far below overflow
  // (and far above any model a CPU trains).
  const double L = n_layer, C = n_embd, V = vocab_size, T = seq_len;
  const double params = V * C + T * C + L * 12.0 * C * C;
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", params);
  require(params <= 1e12, "a model of " + std::to_string(n_layer) + " layers, " +
                              std::to_string(n_embd) + " wide, vocabulary " +
                              std::to_string(vocab_size) + " and seq " + std::to_string(seq_len) +
                              " would have " + text + " parameters, more than 1e12");
}

double ModelConfig::flops_per_token() const {
  const double L = n_layer, C = n_embd, V = vocab_size, T = seq_len;
  return 6.0 * (12.0 * L * C * C + V * C) + 12.0 * L * C * T;
}

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;
  if (name == "small") {
    c.n_layer = 4, c.n_head = 4, c.n_embd = 256, c.seq_len = 128;
  } else if (name == "medium") {
    c.n_layer = 6, c.n_head = 6, c.n_embd = 384, c.seq_len = 256;
  } else {
    throw SettingError("{preset} must be small or medium, not '" + SettingError::literal(name) +
                       "'");
  }
  return c;
}

void TrainConfig::validate(int ranks) const {
  model.validate();
  require(micro_batch > 0, "{micro_batch} must be positive");
  require(global_batch > 0, "{global_batch} must be positive");
  require(global_batch % (micro_batch * ranks) == 0,
          "{global_batch} (" + std::to_string(global_batch) + ") must be a multiple of " +
              (ranks > 1 ? "ranks x {micro_batch} (" + std::to_string(ranks) + " x "
                         : std::string("{micro_batch} (")) +
              std::to_string(micro_batch) + ")");
  require(steps > 0, "{steps} must be positive");
  require(threads > 0, "{threads} must be positive");
  require(log_every > 0, "{log_every} must be positive");
  require(eval_every >= 0, "{eval_every} must not be negative");
  require(eval_batches > 0, "{eval_batches} must be positive");
  require(max_bad_steps > 0, "{max_bad_steps} must be positive");
  require(sample_tokens >= 0, "{sample_tokens} must not be negative");
  require(bucket_mb > 0, "{bucket_mb} must be positive");
  require(check_every >= 0, "{check_every} must not be negative");
  require(std::isfinite(optim.lr) && optim.lr > 0, "{lr} must be positive");
  require(optim.warmup_steps >= 0, "{warmup} must not be negative");
  require(optim.min_lr_ratio >= 0 && optim.min_lr_ratio <= 1, "{min_lr_ratio} must be in [0, 1]");
  require(optim.weight_decay >= 0, "{weight_decay} must not be negative");
  require(optim.grad_clip >= 0, "{grad_clip} must not be negative");
}

float learning_rate(const OptimizerConfig& o, int step, int total_steps) {
  if (step < o.warmup_steps) return o.lr * static_cast<float>(step + 1) / o.warmup_steps;
  const float min_lr = o.lr * o.min_lr_ratio;
  const int decay_steps = total_steps - o.warmup_steps;
  if (decay_steps <= 1) return o.lr;
  const double progress = static_cast<double>(step - o.warmup_steps) / (decay_steps - 1);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * std::min(progress, 1.0)));
  return static_cast<float>(min_lr + (o.lr - min_lr) * cosine);
}

}  // namespace cllm
