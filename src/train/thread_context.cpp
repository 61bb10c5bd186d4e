#include "cllm/train/thread_context.h"

namespace cllm {

ThreadContext::ThreadContext(const Model& model, int micro_batch, Recompute recompute,
                             kernels::MatmulOptions matmul)
    : acts(model.config(), micro_batch, recompute, matmul), grads(model.layout().total()) {
  grads.zero();
}

}  // namespace cllm
