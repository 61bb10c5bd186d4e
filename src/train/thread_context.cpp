#include "cllm/train/thread_context.h"

namespace cllm {

std::size_t unit_span(const TensorLayout& layout, std::span<const std::size_t> unit_starts,
                      int first, int last) {
  const std::size_t begin = unit_starts[first];
  const std::size_t end = last + 1 < static_cast<int>(unit_starts.size()) ? unit_starts[last + 1]
                                                                          : layout.count();
  return layout[end - 1].offset + layout[end - 1].numel - layout[begin].offset;
}

ThreadContext::ThreadContext(const Model& model, int micro_batch, Recompute recompute,
                             kernels::MatmulConfig matmul)
    : acts(model.config(), micro_batch, recompute, matmul) {
  const std::vector<std::size_t> units = gpt_unit_starts(model.config().n_layer);
  const int L = model.config().n_layer;
  const TensorLayout& layout = model.layout();
  block_grads =
      AlignedBuffer<float>(unit_span(layout, units, gpt_attention_unit(0), gpt_mlp_unit(0)));
  mlp_offset = layout[units[gpt_mlp_unit(0)]].offset - layout[units[gpt_attention_unit(0)]].offset;
  ln_f_grads = AlignedBuffer<float>(unit_span(layout, units, gpt_ln_f_unit(L)));
  block_grads.zero();
  ln_f_grads.zero();
}

}  // namespace cllm
