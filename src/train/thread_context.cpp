#include "cllm/train/thread_context.h"

namespace cllm {

ThreadContext::ThreadContext(const Model& model, int micro_batch, Recompute recompute)
    : acts(model.config(), micro_batch, recompute), grads(model.layout().total()) {
  grads.zero();
}

}  // namespace cllm
