// ThreadContext: everything one OpenMP thread writes during forward and
// backward - the activations of one micro-batch and the gradient of the one
// block it is back-propagating, nothing more. Each block's gradient goes into
// the rank's sum as soon as every thread has it (trainer.h); wte's and wpe's
// are added there directly, by row owners. The shared model is only ever seen
// through const Model&, and the token windows are read before the parallel
// region (by another thread, during the step before).
#pragma once

#include <cstddef>
#include <span>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model.h"

namespace cllm {

struct ThreadContext {
  // Construct on the thread that will own it: its first touch places the
  // pages near that thread's cores.
  ThreadContext(const Model& model, int micro_batch, Recompute recompute,
                kernels::MatmulConfig matmul);

  GptActivations acts;
  AlignedBuffer<float> block_grads;  // one block's span of the layout, block after block
  AlignedBuffer<float> ln_f_grads;   // the final layernorm's span of the layout
  std::size_t mlp_offset = 0;        // where the block's MLP half (its second unit) starts in it

  // Views of block_grads as block l's gradient.
  BlockTensors<float> block(const Model& model, int l) {
    return gpt_block_tensors(model.layout(), l, block_grads.data());
  }
  const float* attention_grads() const { return block_grads.data(); }
  const float* mlp_grads() const { return block_grads.data() + mlp_offset; }
  std::size_t bytes() const { return acts.bytes() + block_grads.bytes() + ln_f_grads.bytes(); }
};

// Elements of units first .. last of the layout (gpt_unit_starts), padding
// within included; last = first: one unit.
std::size_t unit_span(const TensorLayout& layout, std::span<const std::size_t> unit_starts,
                      int first, int last);
inline std::size_t unit_span(const TensorLayout& layout,
                             std::span<const std::size_t> unit_starts, int unit) {
  return unit_span(layout, unit_starts, unit, unit);
}

}  // namespace cllm
