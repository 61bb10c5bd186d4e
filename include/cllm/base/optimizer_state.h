// The optimizer's state as a checkpoint records it, as plain data: train's
// AdamW exports it and is restored from it, io writes and reads it.
#pragma once

#include <cstdint>
#include <span>

namespace cllm {

// Views, not owners: the moments stay in the optimizer's buffers (writing)
// or in those a checkpoint was read into (restoring).
struct OptimizerState {
  std::int64_t step = 0;         // updates applied: AdamW's bias correction counts them
  std::span<const float> m, v;   // first and second moments, in the model's parameter layout
  // The hyper-parameters the moments were made with, recorded for a reader;
  // a resume steers with its own (--weight-decay may change).
  float beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
};

}  // namespace cllm
