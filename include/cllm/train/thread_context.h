// ThreadContext: everything one OpenMP thread writes during forward and
// backward - the activations of one micro-batch and a full gradient buffer,
// nothing more. The shared model is only ever seen through const Model&, and
// the token windows are read by the main thread before the parallel region.
#pragma once

#include <cstddef>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model.h"

namespace cllm {

struct ThreadContext {
  // Construct on the thread that will own it: its first touch places the
  // pages near that thread's cores.
  ThreadContext(const Model& model, int micro_batch, Recompute recompute,
                kernels::MatmulOptions matmul);

  GptActivations acts;
  AlignedBuffer<float> grads;  // the model's layout; summed over own micro-batches

  std::size_t bytes() const { return acts.bytes() + grads.bytes(); }
};

}  // namespace cllm
