// AdamW and the flat-buffer passes around it (gradient scaling, global norm).
// All of them run over the layout's chunks (tensor_layout.h): pieces of at
// most kChunkFloats elements of one tensor each, so OpenMP threads split the
// work evenly and every pass is bitwise independent of the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "cllm/base/optimizer_state.h"
#include "cllm/kernels/aligned_buffer.h"
#include "cllm/model/tensor_layout.h"
#include "cllm/train/train_config.h"

namespace cllm {

// grads *= scale, then returns the L2 norm of grads. Partial sums are kept per
// chunk and added in chunk order, so the result does not depend on threads.
double scale_and_norm(std::span<float> grads, const std::vector<Chunk>& chunks, float scale,
                      int threads);

// Global-norm clipping as torch.nn.utils.clip_grad_norm_ does it.
float clip_coefficient(double norm, float max_norm);

class AdamW {
 public:
  AdamW(const OptimizerConfig& config, const TensorLayout& layout);

  // One update with gradient grads * grad_scale and learning rate lr, as
  // torch.optim.AdamW computes it (decoupled weight decay, bias correction).
  // Applied only when every new parameter and moment is finite: otherwise
  // nothing changes and it returns false.
  bool step(std::span<float> params, std::span<const float> grads, float grad_scale, float lr,
            int threads);

  std::int64_t steps_taken() const { return t_; }
  const OptimizerConfig& config() const { return cfg_; }
  // What a checkpoint records: views of the moments, the step count and the
  // hyper-parameters. Valid while this optimizer lives and takes no step.
  OptimizerState state() const;
  // Sets both moments and the step count, as a checkpoint recorded them.
  void restore(std::span<const float> m, std::span<const float> v, std::int64_t steps_taken);
  // The same from a recorded state; its hyper-parameters are not taken: this
  // run's configuration steers the steps to come.
  void restore(const OptimizerState& saved) { restore(saved.m, saved.v, saved.step); }
  std::span<const float> m() const { return m_.span(); }
  std::span<const float> v() const { return v_.span(); }
  const std::vector<Chunk>& chunks() const { return chunks_; }
  std::size_t bytes() const { return m_.bytes() + v_.bytes(); }

 private:
  OptimizerConfig cfg_;
  std::vector<Chunk> chunks_;
  AlignedBuffer<float> m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace cllm
