// The GPT-2 forward and backward passes, written as llm.c writes them: a
// sequence of kernel calls over named activation views.
#include "cllm/model/gpt.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "cllm/kernels/kernels.h"

namespace cllm {

namespace k = kernels;

double GptActivations::floats(const ModelConfig& c, int micro_batch, Recompute recompute) {
  const double B = micro_batch, T = c.seq_len, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
  const auto aligned = [](double n) {
    constexpr double a = TensorLayout::kAlignFloats;
    return std::ceil(n / a) * a;
  };
  const double BT = aligned(B * T), BTC = aligned(B * T * C);
  // The constructor's tensors below, in its order.
  const double kept = recompute == Recompute::block ? std::min(c.n_layer, 1) : c.n_layer;
  const double block = 4 * BTC + 4 * BT + aligned(3 * B * T * C) + aligned(B * NH * T) +
                       aligned(4 * B * T * C);
  return BTC + kept * block + c.n_layer * BTC + BTC + 3 * BT +
         aligned(std::min<double>(kLogitRows, B * T) * V) + 3 * BTC + aligned(3 * B * T * C) +
         2 * aligned(4 * B * T * C) +
         aligned(static_cast<double>(k::attention_scratch_floats()));
}

GptActivations::GptActivations(const ModelConfig& c, int micro_batch, Recompute recompute,
                               k::MatmulConfig matmul_options)
    : matmul(matmul_options), micro_batch_(micro_batch), recompute_(recompute) {
  const std::int64_t B = micro_batch, T = c.seq_len, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
  auto& l = layout_;
  l.add("encoded", {B, T, C});
  // Recompute::block keeps one set of the block activations, which every
  // block writes in turn, and each block's output (the next one's input).
  const int kept = recompute == Recompute::block ? std::min(c.n_layer, 1) : c.n_layer;
  for (int i = 0; i < kept; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    l.add(p + "ln_1", {B, T, C});
    l.add(p + "ln_1_mean", {B, T});
    l.add(p + "ln_1_rstd", {B, T});
    l.add(p + "qkv", {B, T, 3 * C});
    l.add(p + "atty", {B, T, C});
    l.add(p + "att_lse", {B, NH, T});
    l.add(p + "res_2", {B, T, C});
    l.add(p + "ln_2", {B, T, C});
    l.add(p + "ln_2_mean", {B, T});
    l.add(p + "ln_2_rstd", {B, T});
    l.add(p + "fch", {B, T, 4 * C});
  }
  for (int i = 0; i < c.n_layer; ++i) l.add("h." + std::to_string(i) + ".res_3", {B, T, C});
  l.add("ln_f", {B, T, C});
  l.add("ln_f_mean", {B, T});
  l.add("ln_f_rstd", {B, T});
  l.add("logits", {std::min<std::int64_t>(kLogitRows, B * T), V});
  l.add("losses", {B, T});
  l.add("scratch.proj", {B, T, C});
  l.add("scratch.dres", {B, T, C});
  l.add("scratch.dbtc", {B, T, C});
  l.add("scratch.dqkv", {B, T, 3 * C});
  l.add("scratch.gelu", {B, T, 4 * C});
  l.add("scratch.dh1", {B, T, 4 * C});
  l.add("scratch.attention", {static_cast<std::int64_t>(k::attention_scratch_floats())});

  buffer_ = AlignedBuffer<float>(l.total());
  float* base = buffer_.data();
  std::size_t i = 0;
  auto next = [&] { return base + l[i++].offset; };
  encoded = next();
  h.resize(c.n_layer);
  for (int b = 0; b < kept; ++b) {
    BlockActivations& a = h[b];
    a.ln_1 = next(), a.ln_1_mean = next(), a.ln_1_rstd = next();
    a.qkv = next(), a.atty = next(), a.att_lse = next(), a.res_2 = next();
    a.ln_2 = next(), a.ln_2_mean = next(), a.ln_2_rstd = next();
    a.fch = next();
  }
  for (int b = kept; b < c.n_layer; ++b) h[b] = h[0];  // Recompute::block: the one set
  for (auto& a : h) a.res_3 = next();
  ln_f = next(), ln_f_mean = next(), ln_f_rstd = next();
  logits = next(), losses = next();
  proj = next(), dres = next(), dbtc = next(), dqkv = next();
  gelu = next(), dh1 = next(), attn_scratch = next();
  // The owning thread touches every page first (it constructs us).
  buffer_.zero();
}

namespace {

// Splits a pass's time into KernelSeconds: the engine times every product;
// timed(counter, kernel) wraps a kernel so that its calls add their seconds,
// less their products', to counter; when the pass ends, the rest of its
// time goes to `other`.
class KernelClock {
 public:
  explicit KernelClock(KernelSeconds& seconds, const k::MatrixEngine& engine)
      : seconds_(seconds),
        engine_(engine),
        start_(omp_get_wtime()),
        products_before_(engine.seconds()),
        attention_before_(seconds.attention) {}
  ~KernelClock() {
    const double products = engine_.seconds() - products_before_;
    const double attention = seconds_.attention - attention_before_;
    seconds_.matmul += products;
    seconds_.other += omp_get_wtime() - start_ - products - attention;
  }
  KernelClock(const KernelClock&) = delete;
  KernelClock& operator=(const KernelClock&) = delete;

  auto timed(double& counter, auto kernel) const {
    return [this, &counter, kernel](auto&&... args) {
      const double t0 = omp_get_wtime(), products0 = engine_.seconds();
      kernel(std::forward<decltype(args)>(args)...);
      counter += omp_get_wtime() - t0 - (engine_.seconds() - products0);
    };
  }

 private:
  KernelSeconds& seconds_;
  const k::MatrixEngine& engine_;
  double start_, products_before_, attention_before_;
};

}  // namespace

namespace {

// Block l's forward pass, from its input x (the residual stream) into a.h[l].
// p: model.tensors().
void block_forward(const Model& model, const GptTensors<const float>& p,
                   const GptTensors<const k::bf16>& low, GptActivations& a, int l, const float* x,
                   KernelClock& clock) {
  const ModelConfig& c = model.config();
  const int B = a.micro_batch(), T = c.seq_len, C = c.n_embd, NH = c.n_head;
  const int N = B * T;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  const BlockTensors<const float>& w = p.h[l];
  const BlockTensors<const k::bf16>& lw = low.h[l];
  BlockActivations& s = a.h[l];
  const auto attention = clock.timed(a.seconds.attention, k::attention_forward);
  k::MatrixEngine& mm = a.matmul;
  k::layernorm_forward(s.ln_1, s.ln_1_mean, s.ln_1_rstd, x, w.ln_1_w, w.ln_1_b, N, C);
  k::matmul_forward(mm, s.qkv, s.ln_1, k::Weight(w.attn_w, lw.attn_w), w.attn_b, N, C, 3 * C);
  attention(mm, s.atty, s.att_lse, a.attn_scratch, s.qkv, B, T, C, NH);
  k::matmul_forward(mm, a.proj, s.atty, k::Weight(w.attn_proj_w, lw.attn_proj_w), w.attn_proj_b, N, C, C);
  k::residual_forward(s.res_2, x, a.proj, NC);
  k::layernorm_forward(s.ln_2, s.ln_2_mean, s.ln_2_rstd, s.res_2, w.ln_2_w, w.ln_2_b, N, C);
  k::matmul_forward(mm, s.fch, s.ln_2, k::Weight(w.fc_w, lw.fc_w), w.fc_b, N, C, 4 * C);
  k::gelu_forward(a.gelu, s.fch, NC * 4);
  k::matmul_forward(mm, a.proj, a.gelu, k::Weight(w.mlp_proj_w, lw.mlp_proj_w), w.mlp_proj_b, N, 4 * C, C);
  k::residual_forward(s.res_3, s.res_2, a.proj, NC);
}

// The residual stream entering block l.
const float* block_input(const GptActivations& a, int l) {
  return l ? a.h[l - 1].res_3 : a.encoded;
}

// The embeddings, the blocks and the final layernorm: a.ln_f holds every
// position's features for the output head.
void trunk_forward(const Model& model, GptActivations& a, const std::int32_t* inputs,
                   KernelClock& clock) {
  const ModelConfig& c = model.config();
  const int B = a.micro_batch(), T = c.seq_len, C = c.n_embd;
  const GptTensors<const float> p = model.tensors();
  const GptTensors<const k::bf16> low = model.bf16_tensors();
  k::encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
  for (int l = 0; l < c.n_layer; ++l)
    block_forward(model, p, low, a, l, block_input(a, l), clock);
  k::layernorm_forward(a.ln_f, a.ln_f_mean, a.ln_f_rstd, block_input(a, c.n_layer), p.ln_f_w,
                       p.ln_f_b, B * T, C);
}

// Calls head(first, rows) for each chunk of at most kLogitRows of the n positions.
template <class Head>
void by_chunks(int n, Head head) {
  for (int first = 0; first < n; first += kLogitRows) head(first, std::min(kLogitRows, n - first));
}

}  // namespace

double gpt_forward(const Model& model, GptActivations& a, const std::int32_t* inputs,
                   const std::int32_t* targets) {
  KernelClock clock(a.seconds, a.matmul);
  trunk_forward(model, a, inputs, clock);
  if (!targets) return 0.0;
  const ModelConfig& c = model.config();
  const int C = c.n_embd, V = c.vocab_size;
  const k::Weight wte(model.tensors().wte, model.bf16_tensors().wte);
  double loss = 0.0;
  by_chunks(a.micro_batch() * c.seq_len, [&](int first, int rows) {
    k::matmul_forward(a.matmul, a.logits, a.ln_f + static_cast<std::size_t>(first) * C, wte, nullptr, rows, C,
           V);
    loss += k::crossentropy_forward(a.logits, a.losses + first, a.logits, targets + first, rows, V);
  });
  return loss;
}

void gpt_logits(const Model& model, GptActivations& a, int first, int rows, float* out) {
  const ModelConfig& c = model.config();
  k::matmul_forward(a.matmul, out, a.ln_f + static_cast<std::size_t>(first) * c.n_embd,
                    k::Weight(model.tensors().wte, model.bf16_tensors().wte), nullptr, rows,
                    c.n_embd, c.vocab_size);
}

void gpt_trunk_forward(const Model& model, GptActivations& a, const std::int32_t* inputs) {
  KernelClock clock(a.seconds, a.matmul);
  trunk_forward(model, a, inputs, clock);
}

int gpt_head_chunks(const Model& model, const GptActivations& a) {
  return (a.micro_batch() * model.config().seq_len + kLogitRows - 1) / kLogitRows;
}

namespace {

// The rows [first, first + rows) of head chunk `chunk`.
struct ChunkRows {
  int first, rows;
};
ChunkRows head_chunk_rows(const Model& model, const GptActivations& a, int chunk) {
  const int first = chunk * kLogitRows;
  return {first, std::min(kLogitRows, a.micro_batch() * model.config().seq_len - first)};
}

}  // namespace

double gpt_head_chunk(const Model& model, GptActivations& a, int chunk,
                      const std::int32_t* targets, float dloss) {
  KernelClock clock(a.seconds, a.matmul);
  const int C = model.config().n_embd, V = model.config().vocab_size;
  const auto [first, rows] = head_chunk_rows(model, a, chunk);
  const k::Weight wte(model.tensors().wte, model.bf16_tensors().wte);
  const float* ln_f = a.ln_f + static_cast<std::size_t>(first) * C;
  k::matmul_forward(a.matmul, a.logits, ln_f, wte, nullptr, rows, C, V);
  const double loss =
      k::crossentropy_forward(a.logits, a.losses + first, a.logits, targets + first, rows, V);
  k::crossentropy_backward(a.logits, a.logits, targets + first, dloss, rows, V);
  // d(ln_f) (rows,C) = dlogits (rows,V) @ wte (V,C); wte's gradient is
  // gpt_head_weight_gradient's, so that threads can share it out by rows.
  a.matmul.multiply(rows, C, V, 1.0f, {a.logits, V}, {wte.values, C, false, wte.low}, 0.0f,
                    a.dbtc + static_cast<std::size_t>(first) * C, C);
  return loss;
}

void gpt_head_weight_gradient(const Model& model, GptActivations& mine,
                              const GptActivations& chunk_owner, int chunk, kernels::Rows vocab,
                              float* dwte) {
  const int C = model.config().n_embd, V = model.config().vocab_size;
  const auto [first, rows] = head_chunk_rows(model, chunk_owner, chunk);
  if (vocab.end <= vocab.begin) return;
  KernelClock clock(mine.seconds, mine.matmul);
  // dwte[vocab] (n,C) += dlogits[:, vocab]^T (n,rows) @ ln_f (rows,C)
  mine.matmul.multiply(vocab.end - vocab.begin, C, rows, 1.0f,
                  {chunk_owner.logits + vocab.begin, V, true},
                  {chunk_owner.ln_f + static_cast<std::size_t>(first) * C, C}, 1.0f,
                  dwte + static_cast<std::size_t>(vocab.begin) * C, C);
}

void gpt_head_finish(const Model& model, GptActivations& a, float* dln_f_w, float* dln_f_b) {
  KernelClock clock(a.seconds, a.matmul);
  const ModelConfig& c = model.config();
  const int N = a.micro_batch() * c.seq_len;
  std::fill_n(a.dres, static_cast<std::size_t>(N) * c.n_embd, 0.0f);
  k::layernorm_backward(a.dres, dln_f_w, dln_f_b, a.dbtc, block_input(a, c.n_layer),
                        model.tensors().ln_f_w, a.ln_f_mean, a.ln_f_rstd, N, c.n_embd);
}

void gpt_block_backward_mlp(const Model& model, GptActivations& a, int l,
                            const BlockTensors<float>& dw) {
  const ModelConfig& c = model.config();
  const int N = a.micro_batch() * c.seq_len, C = c.n_embd;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  KernelClock clock(a.seconds, a.matmul);
  const GptTensors<const float> p = model.tensors();
  const GptTensors<const k::bf16> low = model.bf16_tensors();
  k::MatrixEngine& mm = a.matmul;
  const BlockTensors<const float>& w = p.h[l];
  const BlockTensors<const k::bf16>& lw = low.h[l];
  BlockActivations& s = a.h[l];
  // Recompute::block: the one set of block activations holds the last
  // block's; run this block's forward again. Same kernels, same inputs:
  // the same bits as if they had been kept.
  if (a.recompute() == Recompute::block && l != c.n_layer - 1)
    block_forward(model, p, low, a, l, block_input(a, l), clock);

  // a.dres holds d(loss)/d(block output); each residual add passes it
  // through unchanged and each branch adds to it.
  // MLP branch: res_3 = res_2 + c_proj(gelu(c_fc(ln_2(res_2)))); the GELU
  // output is recomputed rather than kept, 4C floats a position per layer.
  k::gelu_forward(a.gelu, s.fch, NC * 4);
  k::matmul_backward(mm, a.dh1, dw.mlp_proj_w, dw.mlp_proj_b, a.dres, a.gelu,
                     k::Weight(w.mlp_proj_w, lw.mlp_proj_w), N, 4 * C, C);
  k::gelu_backward(a.gelu, s.fch, a.dh1, NC * 4);
  k::matmul_backward(mm, a.dbtc, dw.fc_w, dw.fc_b, a.gelu, s.ln_2, k::Weight(w.fc_w, lw.fc_w), N,
                     C, 4 * C);
  k::layernorm_backward(a.dres, dw.ln_2_w, dw.ln_2_b, a.dbtc, s.res_2, w.ln_2_w, s.ln_2_mean,
                        s.ln_2_rstd, N, C);
}

void gpt_block_backward_attention(const Model& model, GptActivations& a, int l,
                                  const BlockTensors<float>& dw) {
  const ModelConfig& c = model.config();
  const int B = a.micro_batch(), T = c.seq_len, C = c.n_embd, NH = c.n_head;
  const int N = B * T;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  KernelClock clock(a.seconds, a.matmul);
  const GptTensors<const float> p = model.tensors();
  const GptTensors<const k::bf16> low = model.bf16_tensors();
  const BlockTensors<const float>& w = p.h[l];
  const BlockTensors<const k::bf16>& lw = low.h[l];
  const auto attention = clock.timed(a.seconds.attention, k::attention_backward);
  k::MatrixEngine& mm = a.matmul;
  BlockActivations& s = a.h[l];
  // Attention branch: res_2 = x + c_proj(attn(c_attn(ln_1(x))))
  k::matmul_backward(mm, a.dbtc, dw.attn_proj_w, dw.attn_proj_b, a.dres, s.atty,
                     k::Weight(w.attn_proj_w, lw.attn_proj_w), N, C, C);
  std::fill_n(a.dqkv, NC * 3, 0.0f);
  attention(mm, a.dqkv, a.attn_scratch, a.dbtc, s.qkv, s.atty, s.att_lse, B, T, C, NH);
  k::matmul_backward(mm, a.dbtc, dw.attn_w, dw.attn_b, a.dqkv, s.ln_1,
                     k::Weight(w.attn_w, lw.attn_w), N, C, 3 * C);
  k::layernorm_backward(a.dres, dw.ln_1_w, dw.ln_1_b, a.dbtc, block_input(a, l), w.ln_1_w,
                        s.ln_1_mean, s.ln_1_rstd, N, C);
}

void gpt_block_backward(const Model& model, GptActivations& a, int l,
                        const BlockTensors<float>& dw) {
  gpt_block_backward_mlp(model, a, l, dw);
  gpt_block_backward_attention(model, a, l, dw);
}

double gpt_forward_backward(const Model& model, GptActivations& a, std::span<float> grads,
                            const std::int32_t* inputs, const std::int32_t* targets, float dloss) {
  const ModelConfig& c = model.config();
  const GptTensors<float> g = gpt_tensors(model.layout(), c.n_layer, grads.data());
  gpt_trunk_forward(model, a, inputs);
  double loss = 0.0;
  for (int chunk = 0; chunk < gpt_head_chunks(model, a); ++chunk) {
    loss += gpt_head_chunk(model, a, chunk, targets, dloss);
    gpt_head_weight_gradient(model, a, a, chunk, {0, c.vocab_size}, g.wte);
  }
  gpt_head_finish(model, a, g.ln_f_w, g.ln_f_b);
  for (int l = c.n_layer - 1; l >= 0; --l) gpt_block_backward(model, a, l, g.h[l]);
  k::encoder_backward(g.wte, g.wpe, a.dres, inputs, a.micro_batch(), c.seq_len, c.n_embd);
  return loss;
}

}  // namespace cllm
