// ThreadContext: everything one OpenMP thread writes during forward and
// backward - activations of one micro-batch, a full gradient buffer and its
// token windows. The shared model is only ever seen through const Model&.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cllm/aligned_buffer.h"
#include "cllm/gpt.h"
#include "cllm/model.h"

namespace cllm {

struct ThreadContext {
  // Construct on the thread that will own it: its first touch places the
  // pages near that thread's cores.
  ThreadContext(const Model& model, int micro_batch);

  GptActivations acts;
  AlignedBuffer<float> grads;          // the model's layout; summed over own micro-batches
  AlignedBuffer<std::int32_t> inputs;  // (B,T)
  AlignedBuffer<std::int32_t> targets; // (B,T)

  std::size_t bytes() const { return acts.bytes() + grads.bytes() + inputs.bytes() + targets.bytes(); }
};

}  // namespace cllm
