// The GPT-2 forward and backward passes, written as llm.c writes them: a
// sequence of kernel calls over named activation views.
#include "cllm/model/gpt.h"

#include <omp.h>

#include <algorithm>
#include <string>
#include <utility>

#include "cllm/kernels/kernels.h"

namespace cllm {

namespace k = kernels;

GptActivations::GptActivations(const ModelConfig& c, int batch) : B_(batch) {
  const std::int64_t B = batch, T = c.seq_len, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
  auto& l = layout_;
  l.add("encoded", {B, T, C});
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    l.add(p + "ln_1", {B, T, C});
    l.add(p + "ln_1_mean", {B, T});
    l.add(p + "ln_1_rstd", {B, T});
    l.add(p + "qkv", {B, T, 3 * C});
    l.add(p + "atty", {B, T, C});
    l.add(p + "att", {B, NH, T, T});
    l.add(p + "res_2", {B, T, C});
    l.add(p + "ln_2", {B, T, C});
    l.add(p + "ln_2_mean", {B, T});
    l.add(p + "ln_2_rstd", {B, T});
    l.add(p + "fch", {B, T, 4 * C});
    l.add(p + "fch_gelu", {B, T, 4 * C});
    l.add(p + "res_3", {B, T, C});
  }
  l.add("ln_f", {B, T, C});
  l.add("ln_f_mean", {B, T});
  l.add("ln_f_rstd", {B, T});
  l.add("logits", {B, T, V});
  l.add("losses", {B, T});
  l.add("scratch.proj", {B, T, C});
  l.add("scratch.dres", {B, T, C});
  l.add("scratch.dbtc", {B, T, C});
  l.add("scratch.dqkv", {B, T, 3 * C});
  l.add("scratch.dh1", {B, T, 4 * C});
  l.add("scratch.dh2", {B, T, 4 * C});
  l.add("scratch.datt", {T, T});

  buffer_ = AlignedBuffer<float>(l.total());
  float* base = buffer_.data();
  std::size_t i = 0;
  auto next = [&] { return base + l[i++].offset; };
  encoded = next();
  h.resize(c.n_layer);
  for (auto& a : h) {
    a.ln_1 = next(), a.ln_1_mean = next(), a.ln_1_rstd = next();
    a.qkv = next(), a.atty = next(), a.att = next(), a.res_2 = next();
    a.ln_2 = next(), a.ln_2_mean = next(), a.ln_2_rstd = next();
    a.fch = next(), a.fch_gelu = next(), a.res_3 = next();
  }
  ln_f = next(), ln_f_mean = next(), ln_f_rstd = next();
  logits = next(), losses = next();
  proj = next(), dres = next(), dbtc = next(), dqkv = next();
  dh1 = next(), dh2 = next(), datt = next();
  // The owning thread touches every page first (it constructs us).
  buffer_.zero();
}

namespace {

// Splits a pass's time into KernelSeconds: timed(counter, kernel) wraps a
// kernel so that its calls add their seconds to counter; when the pass ends,
// the rest of its time goes to `other`.
class KernelClock {
 public:
  explicit KernelClock(KernelSeconds& seconds)
      : seconds_(seconds), start_(omp_get_wtime()), timed_before_(timed_total()) {}
  ~KernelClock() {
    const double timed_now = timed_total() - timed_before_;
    seconds_.other += omp_get_wtime() - start_ - timed_now;
  }
  KernelClock(const KernelClock&) = delete;
  KernelClock& operator=(const KernelClock&) = delete;

  static auto timed(double& counter, auto kernel) {
    return [&counter, kernel](auto&&... args) {
      const double t0 = omp_get_wtime();
      kernel(std::forward<decltype(args)>(args)...);
      counter += omp_get_wtime() - t0;
    };
  }

 private:
  double timed_total() const { return seconds_.matmul + seconds_.attention; }

  KernelSeconds& seconds_;
  double start_, timed_before_;
};

}  // namespace

double gpt_forward(const Model& model, GptActivations& a, const std::int32_t* inputs,
                   const std::int32_t* targets) {
  const ModelConfig& c = model.config();
  const int B = a.batch(), T = c.seq_len, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
  const int N = B * T;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  const GptTensors<const float> p = model.tensors();
  KernelClock clock(a.seconds);
  const auto matmul = clock.timed(a.seconds.matmul, k::matmul_forward);
  const auto attention = clock.timed(a.seconds.attention, k::attention_forward);

  k::encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
  const float* x = a.encoded;  // the residual stream entering each block
  for (int l = 0; l < c.n_layer; ++l) {
    const BlockTensors<const float>& w = p.h[l];
    BlockActivations& s = a.h[l];
    k::layernorm_forward(s.ln_1, s.ln_1_mean, s.ln_1_rstd, x, w.ln_1_w, w.ln_1_b, N, C);
    matmul(s.qkv, s.ln_1, w.attn_w, w.attn_b, N, C, 3 * C);
    attention(s.atty, s.att, s.qkv, B, T, C, NH);
    matmul(a.proj, s.atty, w.attn_proj_w, w.attn_proj_b, N, C, C);
    k::residual_forward(s.res_2, x, a.proj, NC);
    k::layernorm_forward(s.ln_2, s.ln_2_mean, s.ln_2_rstd, s.res_2, w.ln_2_w, w.ln_2_b, N, C);
    matmul(s.fch, s.ln_2, w.fc_w, w.fc_b, N, C, 4 * C);
    k::gelu_forward(s.fch_gelu, s.fch, NC * 4);
    matmul(a.proj, s.fch_gelu, w.mlp_proj_w, w.mlp_proj_b, N, 4 * C, C);
    k::residual_forward(s.res_3, s.res_2, a.proj, NC);
    x = s.res_3;
  }
  k::layernorm_forward(a.ln_f, a.ln_f_mean, a.ln_f_rstd, x, p.ln_f_w, p.ln_f_b, N, C);
  matmul(a.logits, a.ln_f, p.wte, nullptr, N, C, V);
  if (!targets) return 0.0;
  return k::crossentropy_forward(a.logits, a.losses, a.logits, targets, N, V);
}

void gpt_backward(const Model& model, GptActivations& a, std::span<float> grads,
                  const std::int32_t* inputs, const std::int32_t* targets, float dloss) {
  const ModelConfig& c = model.config();
  const int B = a.batch(), T = c.seq_len, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
  const int N = B * T;
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  const GptTensors<const float> p = model.tensors();
  const GptTensors<float> g = gpt_tensors(model.layout(), c.n_layer, grads.data());
  KernelClock clock(a.seconds);
  const auto matmul = clock.timed(a.seconds.matmul, k::matmul_backward);
  const auto attention = clock.timed(a.seconds.attention, k::attention_backward);

  // Output head: logits = ln_f @ wte^T, so wte gets a second gradient here.
  k::crossentropy_backward(a.logits, a.logits, targets, dloss, N, V);
  std::fill_n(a.dbtc, NC, 0.0f);
  matmul(a.dbtc, g.wte, nullptr, a.logits, a.ln_f, p.wte, N, C, V);
  std::fill_n(a.dres, NC, 0.0f);
  const float* x_last = c.n_layer ? a.h.back().res_3 : a.encoded;
  k::layernorm_backward(a.dres, g.ln_f_w, g.ln_f_b, a.dbtc, x_last, p.ln_f_w, a.ln_f_mean,
                        a.ln_f_rstd, N, C);

  // a.dres holds d(loss)/d(residual stream) and flows down through the blocks;
  // each residual add passes it through unchanged and each branch adds to it.
  for (int l = c.n_layer - 1; l >= 0; --l) {
    const BlockTensors<const float>& w = p.h[l];
    const BlockTensors<float>& dw = g.h[l];
    BlockActivations& s = a.h[l];
    const float* x = l ? a.h[l - 1].res_3 : a.encoded;

    // MLP branch: res_3 = res_2 + c_proj(gelu(c_fc(ln_2(res_2))))
    std::fill_n(a.dh1, NC * 4, 0.0f);
    matmul(a.dh1, dw.mlp_proj_w, dw.mlp_proj_b, a.dres, s.fch_gelu, w.mlp_proj_w,
                       N, 4 * C, C);
    std::fill_n(a.dh2, NC * 4, 0.0f);
    k::gelu_backward(a.dh2, s.fch, a.dh1, NC * 4);
    std::fill_n(a.dbtc, NC, 0.0f);
    matmul(a.dbtc, dw.fc_w, dw.fc_b, a.dh2, s.ln_2, w.fc_w, N, C, 4 * C);
    k::layernorm_backward(a.dres, dw.ln_2_w, dw.ln_2_b, a.dbtc, s.res_2, w.ln_2_w, s.ln_2_mean,
                          s.ln_2_rstd, N, C);

    // Attention branch: res_2 = x + c_proj(attn(c_attn(ln_1(x))))
    std::fill_n(a.dbtc, NC, 0.0f);
    matmul(a.dbtc, dw.attn_proj_w, dw.attn_proj_b, a.dres, s.atty, w.attn_proj_w,
                       N, C, C);
    std::fill_n(a.dqkv, NC * 3, 0.0f);
    attention(a.dqkv, a.datt, a.dbtc, s.qkv, s.att, B, T, C, NH);
    std::fill_n(a.dbtc, NC, 0.0f);
    matmul(a.dbtc, dw.attn_w, dw.attn_b, a.dqkv, s.ln_1, w.attn_w, N, C, 3 * C);
    k::layernorm_backward(a.dres, dw.ln_1_w, dw.ln_1_b, a.dbtc, x, w.ln_1_w, s.ln_1_mean,
                          s.ln_1_rstd, N, C);
  }
  k::encoder_backward(g.wte, g.wpe, a.dres, inputs, B, T, C);
}

}  // namespace cllm
