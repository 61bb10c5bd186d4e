// Kernels of a GPT-2 block: plain loop nests for the elementwise and
// per-row work, the thread's MatrixEngine for every matrix product. See cllm/kernels/kernels.h.
#include "cllm/kernels/kernels.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>

namespace cllm::kernels {

// ---------------------------------------------------------------- encoder

void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      float* o = out + (static_cast<std::size_t>(b) * T + t) * C;
      const float* te = wte + static_cast<std::size_t>(tokens[b * T + t]) * C;
      const float* pe = wpe + static_cast<std::size_t>(t) * C;
      for (int c = 0; c < C; ++c) o[c] = te[c] + pe[c];
    }
}

void encoder_backward_rows(float* dwte, float* dwpe, const float* dout,
                           const std::int32_t* tokens, int B, int T, int C, Rows tokens_owned,
                           Rows positions_owned) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const std::size_t n = static_cast<std::size_t>(b) * T + t;
      const float* d = dout + n * C;
      const int token = tokens[n];
      if (token >= tokens_owned.begin && token < tokens_owned.end) {
        float* dte = dwte + static_cast<std::size_t>(token) * C;
        for (int c = 0; c < C; ++c) dte[c] += d[c];
      }
      if (t >= positions_owned.begin && t < positions_owned.end) {
        float* dpe = dwpe + static_cast<std::size_t>(t) * C;
        for (int c = 0; c < C; ++c) dpe[c] += d[c];
      }
    }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C) {
  encoder_backward_rows(dwte, dwpe, dout, tokens, B, T, C, {0, INT_MAX}, {0, T});
}

// ---------------------------------------------------------------- layernorm

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
  constexpr float eps = 1e-5f;
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<std::size_t>(n) * C;
    float* o = out + static_cast<std::size_t>(n) * C;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < C; ++c) sum += x[c];
    float m = sum / C;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
    float s = 1.0f / std::sqrt(var / C + eps);
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const float* dy = dout + static_cast<std::size_t>(n) * C;
    const float* x = inp + static_cast<std::size_t>(n) * C;
    float* dx = dinp + static_cast<std::size_t>(n) * C;
    const float m = mean[n], s = rstd[n];
    // Two row means the input gradient needs: of dnorm and of dnorm * norm.
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
    for (int c = 0; c < C; ++c) {
      float norm = (x[c] - m) * s;
      float dnorm = weight[c] * dy[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int c = 0; c < C; ++c) {
      float norm = (x[c] - m) * s;
      float dnorm = weight[c] * dy[c];
      dbias[c] += dy[c];
      dweight[c] += norm * dy[c];
      dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
  }
}

// ---------------------------------------------------------------- matmul

void matmul_forward(MatrixEngine& engine, float* out, const float* inp, Weight weight,
                    const float* bias, int N, int C, int OC) {
  engine.multiply(N, OC, C, 1.0f, {inp, C}, {weight.values, C, true, weight.low}, 0.0f, out, OC);
  if (!bias) return;
  for (int n = 0; n < N; ++n) {
    float* o = out + static_cast<std::size_t>(n) * OC;
    for (int j = 0; j < OC; ++j) o[j] += bias[j];
  }
}

void matmul_backward(MatrixEngine& engine, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, Weight weight, int N, int C, int OC) {
  // dout feeds both products: in bf16, round it once.
  const bf16* dout_low = engine.round_once(dout, static_cast<std::size_t>(N) * OC);
  // dinp (N,C) = dout (N,OC) @ weight (OC,C)
  engine.multiply(N, C, OC, 1.0f, {dout, OC, false, dout_low},
                  {weight.values, C, false, weight.low}, 0.0f, dinp, C);
  // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
  engine.multiply(OC, C, N, 1.0f, {dout, OC, true, dout_low}, {inp, C}, 1.0f, dweight, C);
  if (!dbias) return;
  for (int n = 0; n < N; ++n) {
    const float* d = dout + static_cast<std::size_t>(n) * OC;
    for (int j = 0; j < OC; ++j) dbias[j] += d[j];
  }
}

// ---------------------------------------------------------------- attention

namespace {

// exp(x) for the softmax's x <= 0, in float ops only so that a loop of it
// vectorizes (std::exp is a scalar libm call: with it, the exponentials,
// not the products, took most of attention's time). Cephes' expf: x = n ln2
// + r with |r| <= ln2 / 2, exp(r) by a degree-7 polynomial, 2^n through the
// exponent bits; relative error about 1e-7. Below -87 it returns exp(-87),
// 1.6e-38, not 0 (no denormals).
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // A NaN x must give NaN (the step is then skipped as non-finite), but a NaN
  // converted to int is undefined: it takes 2^-126 instead, and p stays NaN.
  const float exponent = n >= -126.0f ? n : -126.0f;
  return p * std::bit_cast<float>((static_cast<std::int32_t>(exponent) + 127) << 23);
}

// p (rows, cols; leading dimension kAttnKeyBlock) = q[r0:r0+rows] @
// k[c0:c0+cols]^T * scale: one tile of scores. q and k are one head's
// columns of qkv, rows C3 apart.
void tile_scores(MatrixEngine& engine, float* p, const float* q, const float* k, int r0, int c0,
                 int rows, int cols, int hs, int C3, float scale) {
  engine.multiply(rows, cols, hs, scale, {q + static_cast<std::size_t>(r0) * C3, C3},
                  {k + static_cast<std::size_t>(c0) * C3, C3, true}, 0.0f, p, kAttnKeyBlock);
}

}  // namespace

std::size_t attention_scratch_floats() {
  return 2 * static_cast<std::size_t>(kAttnQueryBlock) * kAttnKeyBlock + 2 * kAttnQueryBlock;
}

// Both passes walk the same tiles: query rows [r0, r1) in blocks of
// kAttnQueryBlock, and for each block the keys [0, r1) that causality lets
// it see, kAttnKeyBlock at a time. A key block starts at or before r0 (its
// size is a multiple of the query block's), so every row of a tile sees at
// least the tile's first key: `seen` below is never 0.
static_assert(kAttnKeyBlock % kAttnQueryBlock == 0);

void attention_forward(MatrixEngine& engine, float* out, float* lse, float* scratch,
                       const float* qkv, int B, int T, int C, int NH) {
  constexpr int QB = kAttnQueryBlock, KB = kAttnKeyBlock;
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  float* p = scratch;                // (QB, KB) scores, then unnormalised probabilities
  float* row_max = p + QB * KB;      // (QB) the largest score seen so far
  float* row_sum = row_max + QB;     // (QB) sum of exp(score - row_max) so far
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const float* q = qkv + static_cast<std::size_t>(b) * T * C3 + h * hs;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* o = out + static_cast<std::size_t>(b) * T * C + h * hs;
      float* row_lse = lse + (static_cast<std::size_t>(b) * NH + h) * T;
      for (int r0 = 0; r0 < T; r0 += QB) {
        const int rows = std::min(QB, T - r0), r1 = r0 + rows;
        for (int i = 0; i < rows; ++i) {
          row_max[i] = -INFINITY;
          row_sum[i] = 0.0f;
          std::fill_n(o + static_cast<std::size_t>(r0 + i) * C, hs, 0.0f);
        }
        for (int c0 = 0; c0 < r1; c0 += KB) {
          const int cols = std::min(KB, r1 - c0);
          tile_scores(engine, p, q, k, r0, c0, rows, cols, hs, C3, scale);
          // Online softmax: a larger maximum rescales what the row has summed so far.
          for (int i = 0; i < rows; ++i) {
            float* pi = p + static_cast<std::size_t>(i) * KB;
            const int seen = std::min(cols, r0 + i - c0 + 1);  // keys c0..t of row t = r0 + i
            float m = row_max[i];
            for (int j = 0; j < seen; ++j) m = std::max(m, pi[j]);
            const float rescale = c0 ? exp_nonpositive(row_max[i] - m) : 0.0f;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < seen; ++j) {
              pi[j] = exp_nonpositive(pi[j] - m);
              sum += pi[j];
            }
            std::fill(pi + seen, pi + cols, 0.0f);  // the causal mask
            row_sum[i] = row_sum[i] * rescale + sum;
            row_max[i] = m;
            if (c0 && rescale != 1.0f) {  // (on the first tile the output is still 0)
              float* oi = o + static_cast<std::size_t>(r0 + i) * C;
              for (int d = 0; d < hs; ++d) oi[d] *= rescale;
            }
          }
          // o[r0:r1] (rows, hs) += p @ v[c0:c0+cols]
          engine.multiply(rows, hs, cols, 1.0f, {p, KB}, {v + static_cast<std::size_t>(c0) * C3, C3},
                          1.0f, o + static_cast<std::size_t>(r0) * C, C);
        }
        for (int i = 0; i < rows; ++i) {
          float* oi = o + static_cast<std::size_t>(r0 + i) * C;
          const float inv = 1.0f / row_sum[i];
          for (int d = 0; d < hs; ++d) oi[d] *= inv;
          row_lse[r0 + i] = row_max[i] + std::log(row_sum[i]);
        }
      }
    }
}

void attention_backward(MatrixEngine& engine, float* dqkv, float* scratch, const float* dout,
                        const float* qkv, const float* out, const float* lse, int B, int T, int C,
                        int NH) {
  constexpr int QB = kAttnQueryBlock, KB = kAttnKeyBlock;
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  float* p = scratch;           // (QB, KB) probabilities, recomputed
  float* dp = p + QB * KB;      // (QB, KB) their gradient, then the scores'
  float* dot = dp + QB * KB;    // (QB) sum_j p * dp of each row = dout . out
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const std::size_t qoff = static_cast<std::size_t>(b) * T * C3 + h * hs;
      const float* q = qkv + qoff;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dqkv + qoff;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const std::size_t ooff = static_cast<std::size_t>(b) * T * C + h * hs;
      const float* o = out + ooff;
      const float* dy = dout + ooff;
      const float* row_lse = lse + (static_cast<std::size_t>(b) * NH + h) * T;
      for (int r0 = 0; r0 < T; r0 += QB) {
        const int rows = std::min(QB, T - r0), r1 = r0 + rows;
        const float* dyb = dy + static_cast<std::size_t>(r0) * C;
        for (int i = 0; i < rows; ++i) {
          const float* oi = o + static_cast<std::size_t>(r0 + i) * C;
          const float* dyi = dyb + static_cast<std::size_t>(i) * C;
          float sum = 0.0f;
          for (int d = 0; d < hs; ++d) sum += dyi[d] * oi[d];
          dot[i] = sum;
        }
        for (int c0 = 0; c0 < r1; c0 += KB) {
          const int cols = std::min(KB, r1 - c0);
          // p = exp(scores - lse), the forward's probabilities
          tile_scores(engine, p, q, k, r0, c0, rows, cols, hs, C3, scale);
          for (int i = 0; i < rows; ++i) {
            float* pi = p + static_cast<std::size_t>(i) * KB;
            const int seen = std::min(cols, r0 + i - c0 + 1);
            const float lse_i = row_lse[r0 + i];
#pragma omp simd
            for (int j = 0; j < seen; ++j) pi[j] = exp_nonpositive(pi[j] - lse_i);
            std::fill(pi + seen, pi + cols, 0.0f);
          }
          // dp = dout[r0:r1] @ v[c0:c0+cols]^T;  dv[c0:c0+cols] += p^T @ dout[r0:r1]
          engine.multiply(rows, cols, hs, 1.0f, {dyb, C}, {v + static_cast<std::size_t>(c0) * C3, C3, true},
                          0.0f, dp, KB);
          engine.multiply(cols, hs, rows, 1.0f, {p, KB, true}, {dyb, C}, 1.0f,
                          dv + static_cast<std::size_t>(c0) * C3, C3);
          // Softmax backward: dscore = p * (dp - dot) * scale (0 where masked, as p is).
          for (int i = 0; i < rows; ++i) {
            const float* pi = p + static_cast<std::size_t>(i) * KB;
            float* di = dp + static_cast<std::size_t>(i) * KB;
            for (int j = 0; j < cols; ++j) di[j] = pi[j] * (di[j] - dot[i]) * scale;
          }
          // dq[r0:r1] += dscore @ k[c0:c0+cols];  dk[c0:c0+cols] += dscore^T @ q[r0:r1]
          engine.multiply(rows, hs, cols, 1.0f, {dp, KB}, {k + static_cast<std::size_t>(c0) * C3, C3},
                          1.0f, dq + static_cast<std::size_t>(r0) * C3, C3);
          engine.multiply(cols, hs, rows, 1.0f, {dp, KB, true},
                          {q + static_cast<std::size_t>(r0) * C3, C3}, 1.0f,
                          dk + static_cast<std::size_t>(c0) * C3, C3);
        }
      }
    }
}

// ---------------------------------------------------------------- gelu

namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)

// tanh as a rational function (Eigen's generic_fast_tanh_float): within a
// few ulp of std::tanh, and unlike libm's tanhf the compiler vectorises it.
inline float fast_tanh(float x) {
  constexpr float kClamp = 7.90531110763549805f;
  // Branch-free clamp (std::clamp's references defeat vectorisation); NaN passes.
  x = x < -kClamp ? -kClamp : x;
  x = x > kClamp ? kClamp : x;
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

}  // namespace

void gelu_forward(float* out, const float* inp, std::size_t N) {
#pragma omp simd
  for (std::size_t i = 0; i < N; ++i) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + fast_tanh(kGeluScale * (x + 0.044715f * x * x * x)));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t N) {
#pragma omp simd
  for (std::size_t i = 0; i < N; ++i) {
    const float x = inp[i];
    const float th = fast_tanh(kGeluScale * (x + 0.044715f * x * x * x));
    const float dtanh_arg = kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
    const float local = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * dtanh_arg;
    dinp[i] = local * dout[i];
  }
}

// ---------------------------------------------------------------- residual

void residual_forward(float* out, const float* a, const float* b, std::size_t N) {
#pragma omp simd
  for (std::size_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

// ---------------------------------------------------------------- softmax + cross-entropy

double crossentropy_forward(float* probs, float* losses, const float* logits,
                            const std::int32_t* targets, int N, int V) {
  double total = 0.0;
  for (int n = 0; n < N; ++n) {
    const float* z = logits + static_cast<std::size_t>(n) * V;
    float* p = probs + static_cast<std::size_t>(n) * V;
    float maxv = z[0];
#pragma omp simd reduction(max : maxv)
    for (int j = 1; j < V; ++j) maxv = std::max(maxv, z[j]);
    const float target_logit = z[targets[n]];  // read before p overwrites z
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; ++j) {
      p[j] = exp_nonpositive(z[j] - maxv);
      sum += p[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < V; ++j) p[j] *= inv;
    // log-sum-exp form: exact where the target's probability underflows.
    losses[n] = std::log(sum) + maxv - target_logit;
    total += losses[n];
  }
  return total;
}

void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets,
                           float dloss, int N, int V) {
  for (int n = 0; n < N; ++n) {
    const float* p = probs + static_cast<std::size_t>(n) * V;
    float* d = dlogits + static_cast<std::size_t>(n) * V;
    for (int j = 0; j < V; ++j) d[j] = p[j] * dloss;
    d[targets[n]] -= dloss;
  }
}

}  // namespace cllm::kernels
