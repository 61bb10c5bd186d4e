#include "cllm/model/model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cllm/kernels/rng.h"

namespace cllm {

TensorLayout gpt_parameter_layout(const ModelConfig& c) {
  const std::int64_t V = c.vocab_size, T = c.seq_len, C = c.n_embd;
  TensorLayout l;
  l.add("transformer.wte.weight", {V, C});
  l.add("transformer.wpe.weight", {T, C});
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "transformer.h." + std::to_string(i) + ".";
    l.add(p + "ln_1.weight", {C});
    l.add(p + "ln_1.bias", {C});
    l.add(p + "attn.c_attn.weight", {3 * C, C});
    l.add(p + "attn.c_attn.bias", {3 * C});
    l.add(p + "attn.c_proj.weight", {C, C});
    l.add(p + "attn.c_proj.bias", {C});
    l.add(p + "ln_2.weight", {C});
    l.add(p + "ln_2.bias", {C});
    l.add(p + "mlp.c_fc.weight", {4 * C, C});
    l.add(p + "mlp.c_fc.bias", {4 * C});
    l.add(p + "mlp.c_proj.weight", {C, 4 * C});
    l.add(p + "mlp.c_proj.bias", {C});
  }
  l.add("transformer.ln_f.weight", {C});
  l.add("transformer.ln_f.bias", {C});
  return l;
}

namespace {
// A tensor of n elements in a layout, its padding included (TensorLayout::add).
double aligned(double n) {
  constexpr double a = TensorLayout::kAlignFloats;
  return std::ceil(n / a) * a;
}
}  // namespace

double gpt_parameter_floats(const ModelConfig& c) {
  const double V = c.vocab_size, T = c.seq_len, C = c.n_embd;
  const double block = 4 * aligned(C) + aligned(3 * C * C) + aligned(3 * C) + aligned(C * C) +
                       aligned(C) + aligned(4 * C * C) + aligned(4 * C) + aligned(4 * C * C) +
                       aligned(C);
  return aligned(V * C) + aligned(T * C) + c.n_layer * block + 2 * aligned(C);
}

namespace {
// gpt_parameter_layout's order: wte, wpe, then 12 tensors a block (the
// attention half's 6, then the MLP half's 6), then ln_f.
constexpr std::size_t kEmbeddingTensors = 2, kTensorsPerBlock = 12, kAttentionTensors = 6;
}  // namespace

std::vector<std::size_t> gpt_unit_starts(int n_layer) {
  std::vector<std::size_t> starts{0};
  for (int l = 0; l < n_layer; ++l) {
    const std::size_t block = kEmbeddingTensors + kTensorsPerBlock * l;
    starts.push_back(block);
    starts.push_back(block + kAttentionTensors);
  }
  starts.push_back(kEmbeddingTensors + kTensorsPerBlock * n_layer);
  return starts;
}

template <typename F>
BlockTensors<F> gpt_block_tensors(const TensorLayout& layout, int l, F* base) {
  std::size_t i = kEmbeddingTensors + kTensorsPerBlock * l;
  const std::size_t first = layout[i].offset;
  auto next = [&] { return base + (layout[i++].offset - first); };
  BlockTensors<F> b{};
  b.ln_1_w = next(), b.ln_1_b = next();
  b.attn_w = next(), b.attn_b = next();
  b.attn_proj_w = next(), b.attn_proj_b = next();
  b.ln_2_w = next(), b.ln_2_b = next();
  b.fc_w = next(), b.fc_b = next();
  b.mlp_proj_w = next(), b.mlp_proj_b = next();
  return b;
}

template <typename F>
GptTensors<F> gpt_tensors(const TensorLayout& layout, int n_layer, F* base) {
  const auto tensor = [&](std::size_t i) { return base + layout[i].offset; };
  GptTensors<F> t{};
  t.wte = tensor(0);
  t.wpe = tensor(1);
  for (int l = 0; l < n_layer; ++l)
    t.h.push_back(gpt_block_tensors(layout, l, tensor(kEmbeddingTensors + kTensorsPerBlock * l)));
  const std::size_t ln_f = kEmbeddingTensors + kTensorsPerBlock * n_layer;
  t.ln_f_w = tensor(ln_f);
  t.ln_f_b = tensor(ln_f + 1);
  return t;
}

template BlockTensors<float> gpt_block_tensors(const TensorLayout&, int, float*);
template BlockTensors<const float> gpt_block_tensors(const TensorLayout&, int, const float*);
template BlockTensors<const kernels::bf16> gpt_block_tensors(const TensorLayout&, int,
                                                             const kernels::bf16*);

template GptTensors<float> gpt_tensors(const TensorLayout&, int, float*);
template GptTensors<const float> gpt_tensors(const TensorLayout&, int, const float*);
template GptTensors<const kernels::bf16> gpt_tensors(const TensorLayout&, int,
                                                     const kernels::bf16*);

// Validated before any size is computed from it.
static const ModelConfig& validated(const ModelConfig& c) {
  c.validate();
  return c;
}

Model::Model(const ModelConfig& config) try
    : config_(validated(config)), layout_(gpt_parameter_layout(config)), params_(layout_.total()) {
  params_.zero();
} catch (const AllocationError& e) {
  throw OutOfMemory("out of memory: " + std::string(e.what()) +
                           " for the parameters of a model of " +
                           std::to_string(gpt_parameter_layout(config).numel()) + " parameters");
}

GptTensors<const float> Model::tensors() const {
  return gpt_tensors(layout_, config_.n_layer, params_.data());
}

std::span<const float> Model::tensor(std::string_view name) const {
  const TensorSpec* s = layout_.find(name);
  if (!s) throw std::out_of_range("no parameter named " + std::string(name));
  return {params_.data() + s->offset, s->numel};
}

std::span<float> Model::tensor(std::string_view name) {
  bf16_current_ = false;
  const TensorSpec* s = layout_.find(name);
  if (!s) throw std::out_of_range("no parameter named " + std::string(name));
  return {params_.data() + s->offset, s->numel};
}

void Model::update_bf16_copy(int threads) {
  if (params_bf16_.size() != params_.size()) params_bf16_ = AlignedBuffer<kernels::bf16>(params_.size());
  const std::size_t n = params_.size();
  const std::size_t block = 1 << 16;
  const auto blocks = static_cast<std::int64_t>((n + block - 1) / block);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t i = 0; i < blocks; ++i) {
    const std::size_t first = static_cast<std::size_t>(i) * block;
    kernels::to_bf16(params_bf16_.data() + first, params_.data() + first,
                     std::min(block, n - first));
  }
  bf16_current_ = true;
}

GptTensors<const kernels::bf16> Model::bf16_tensors() const {
  if (!bf16_current_) {
    GptTensors<const kernels::bf16> none{};
    none.h.resize(config_.n_layer);
    return none;
  }
  return gpt_tensors(layout_, config_.n_layer,
                     static_cast<const kernels::bf16*>(params_bf16_.data()));
}

void Model::init_gpt2(std::uint64_t seed) {
  bf16_current_ = false;
  params_.zero();
  Rng rng(seed);
  const float residual_std = 0.02f / std::sqrt(2.0f * config_.n_layer);
  for (const TensorSpec& s : layout_.tensors()) {
    float* p = params_.data() + s.offset;
    const bool is_ln = s.name.find(".ln_") != std::string::npos;
    if (is_ln && s.name.ends_with(".weight")) {
      for (std::size_t j = 0; j < s.numel; ++j) p[j] = 1.0f;
    } else if (s.is_matrix()) {
      const bool residual = s.name.ends_with("c_proj.weight");
      const float std = residual ? residual_std : 0.02f;
      for (std::size_t j = 0; j < s.numel; ++j) p[j] = std * rng.normal();
    }  // biases stay 0
  }
}

}  // namespace cllm
