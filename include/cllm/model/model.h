// The GPT-2 model: its parameters in one flat, aligned buffer, with named
// views shaped and named as nanoGPT's PyTorch state_dict. The same layout
// (and so the same views) serves gradients and AdamW moments.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/kernels/matmul.h"
#include "cllm/model/model_config.h"
#include "cllm/model/tensor_layout.h"

namespace cllm {

// One transformer block's tensors; F is float or const float.
template <typename F>
struct BlockTensors {
  F* ln_1_w;       // (C)       transformer.h.i.ln_1.weight
  F* ln_1_b;       // (C)
  F* attn_w;       // (3C, C)   transformer.h.i.attn.c_attn.weight
  F* attn_b;       // (3C)
  F* attn_proj_w;  // (C, C)    transformer.h.i.attn.c_proj.weight
  F* attn_proj_b;  // (C)
  F* ln_2_w;       // (C)
  F* ln_2_b;       // (C)
  F* fc_w;         // (4C, C)   transformer.h.i.mlp.c_fc.weight
  F* fc_b;         // (4C)
  F* mlp_proj_w;   // (C, 4C)   transformer.h.i.mlp.c_proj.weight
  F* mlp_proj_b;   // (C)
};

template <typename F>
struct GptTensors {
  F* wte;  // (V, C) token embedding, also the output projection (tied)
  F* wpe;  // (T, C) learned positions
  std::vector<BlockTensors<F>> h;
  F* ln_f_w;  // (C)
  F* ln_f_b;  // (C)
};

// Names, shapes and offsets of every parameter, in state_dict order.
TensorLayout gpt_parameter_layout(const ModelConfig& config);
// gpt_parameter_layout(config).total(), without building it: a plan for
// settings that may be far too large to build (memory_plan.h). A double, so
// that no setting overflows it.
double gpt_parameter_floats(const ModelConfig& config);

// Views of a buffer laid out by gpt_parameter_layout(config).
template <typename F>
GptTensors<F> gpt_tensors(const TensorLayout& layout, int n_layer, F* base);

// The layout's units of backward, whose gradients are complete together
// (dist/gradient_reducer.h), in buffer order: the embeddings (wte and wpe),
// then each block's attention half (ln_1, attn, its c_proj) and MLP half
// (ln_2, c_fc, c_proj), block 0 .. n_layer - 1, then the final layernorm.
// Backward finishes a block's MLP half first: split, block 0's allreduce
// starts while its attention still computes, so less of it is left exposed.
// Each unit's first tensor's index.
std::vector<std::size_t> gpt_unit_starts(int n_layer);
inline int gpt_embedding_unit() { return 0; }
inline int gpt_attention_unit(int l) { return 1 + 2 * l; }
inline int gpt_mlp_unit(int l) { return 2 + 2 * l; }
inline int gpt_ln_f_unit(int n_layer) { return 1 + 2 * n_layer; }

// Views of block l's tensors in a buffer that holds only block l's span of
// the layout (base: its first element): every block has the same shape.
template <typename F>
BlockTensors<F> gpt_block_tensors(const TensorLayout& layout, int l, F* base);

class Model {
 public:
  // Parameters are zero until init_gpt2 or a load writes them.
  explicit Model(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const TensorLayout& layout() const { return layout_; }
  std::span<const float> params() const { return params_.span(); }
  std::span<float> params() {
    bf16_current_ = false;
    return params_.span();
  }
  GptTensors<const float> tensors() const;
  std::span<const float> tensor(std::string_view name) const;
  std::span<float> tensor(std::string_view name);

  // The parameters rounded to bf16, which bf16 products read instead of
  // rounding the weights again in every thread (kernels/matmul.h). Made by
  // update_bf16_copy() between steps, with `threads` threads; any non-const
  // access to the parameters drops it, so a stale copy is never read:
  // bf16_tensors() is then all null, and the products round the fp32
  // weights themselves.
  void update_bf16_copy(int threads);
  bool has_bf16_copy() const { return bf16_current_; }
  GptTensors<const kernels::bf16> bf16_tensors() const;

  // GPT-2 initialisation: weights N(0, 0.02), residual output projections
  // scaled by 1/sqrt(2L), biases 0, LayerNorm gains 1.
  void init_gpt2(std::uint64_t seed);

 private:
  ModelConfig config_;
  TensorLayout layout_;
  AlignedBuffer<float> params_;
  AlignedBuffer<kernels::bf16> params_bf16_;  // allocated by the first update_bf16_copy
  bool bf16_current_ = false;
};

}  // namespace cllm
