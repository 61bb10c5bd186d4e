#include "cllm/thread_context.h"

namespace cllm {

ThreadContext::ThreadContext(const Model& model, int micro_batch)
    : acts(model.config(), micro_batch),
      grads(model.layout().total()),
      inputs(static_cast<std::size_t>(micro_batch) * model.config().seq_len),
      targets(static_cast<std::size_t>(micro_batch) * model.config().seq_len) {
  grads.zero();
  inputs.zero();
  targets.zero();
}

}  // namespace cllm
