#include "cllm/train/train_config.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "cllm/base/setting_error.h"
#include "cllm/train/train_settings.h"

namespace cllm {

void BatchConfig::validate(int ranks) const {
  require_setting(global_batch % (micro_batch * ranks) == 0,
                  "{global_batch} (" + std::to_string(global_batch) + ") must be a multiple of " +
                      (ranks > 1 ? "ranks x {micro_batch} (" + std::to_string(ranks) + " x "
                                 : std::string("{micro_batch} (")) +
                      std::to_string(micro_batch) + ")");
  require_setting(!progress_us || (*progress_us >= 0 && *progress_us <= 1e6),
                  "{progress_us} must be from 0 to 1000000 microseconds");
  require_setting(
      kernels::is_implemented(matmul),
      "{precision} bf16 needs {matmul} onednn: OpenBLAS has no bf16 matrix product");
}

void TrainConfig::validate(int ranks) const {
  TrainRunConfig settings;
  settings.config = *this;
  check_ranges(settings, true);  // first: the batch's checks divide by them
  model.validate();
  batch.validate(ranks);
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
