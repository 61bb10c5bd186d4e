// Kernels of a GPT-2 block: plain loop nests for the elementwise and
// per-row work, the BLAS for every matrix product. See cllm/kernels/kernels.h.
#include "cllm/kernels/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

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

void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const float* d = dout + (static_cast<std::size_t>(b) * T + t) * C;
      float* dte = dwte + static_cast<std::size_t>(tokens[b * T + t]) * C;
      float* dpe = dwpe + static_cast<std::size_t>(t) * C;
      for (int c = 0; c < C; ++c) {
        dte[c] += d[c];
        dpe[c] += d[c];
      }
    }
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

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 0.0f,
              out, OC);
  if (!bias) return;
  for (int n = 0; n < N; ++n) {
    float* o = out + static_cast<std::size_t>(n) * OC;
    for (int j = 0; j < OC; ++j) o[j] += bias[j];
  }
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC) {
  // dinp (N,C) += dout (N,OC) @ weight (OC,C)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
              1.0f, dinp, C);
  // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
              dweight, C);
  if (!dbias) return;
  for (int n = 0; n < N; ++n) {
    const float* d = dout + static_cast<std::size_t>(n) * OC;
    for (int j = 0; j < OC; ++j) dbias[j] += d[j];
  }
}

// ---------------------------------------------------------------- attention

// Causality in blocks of query rows: rows [r0, r1) attend to keys [0, r1)
// only, so the products skip most of the zero upper triangle (62% of the
// square's work at T = 256) while each stays a reasonably large GEMM.
constexpr int kAttnRowBlock = 64;

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const float* q = qkv + static_cast<std::size_t>(b) * T * C3 + h * hs;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* a = att + (static_cast<std::size_t>(b) * NH + h) * T * T;
      float* o = out + static_cast<std::size_t>(b) * T * C + h * hs;
      for (int r0 = 0; r0 < T; r0 += kAttnRowBlock) {
        const int r1 = std::min(T, r0 + kAttnRowBlock), rows = r1 - r0;
        float* ab = a + static_cast<std::size_t>(r0) * T;
        // scores (rows, r1) = q[r0:r1] @ k[0:r1]^T * scale
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r1, hs, scale,
                    q + static_cast<std::size_t>(r0) * C3, C3, k, C3, 0.0f, ab, T);
        for (int t = r0; t < r1; ++t) {
          float* row = a + static_cast<std::size_t>(t) * T;
          float maxv = row[0];
          for (int j = 1; j <= t; ++j) maxv = std::max(maxv, row[j]);
          float sum = 0.0f;
          for (int j = 0; j <= t; ++j) {
            row[j] = std::exp(row[j] - maxv);
            sum += row[j];
          }
          const float inv = 1.0f / sum;
          for (int j = 0; j <= t; ++j) row[j] *= inv;
          for (int j = t + 1; j < r1; ++j) row[j] = 0.0f;  // the mask, inside the block
        }
        // out[r0:r1] (rows, hs) = att[r0:r1, 0:r1] @ v[0:r1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs, r1, 1.0f, ab, T, v, C3,
                    0.0f, o + static_cast<std::size_t>(r0) * C, C);
      }
    }
}

void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const std::size_t qoff = static_cast<std::size_t>(b) * T * C3 + h * hs;
      const float* q = qkv + qoff;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dqkv + qoff;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* a = att + (static_cast<std::size_t>(b) * NH + h) * T * T;
      const float* dy = dout + static_cast<std::size_t>(b) * T * C + h * hs;
      for (int r0 = 0; r0 < T; r0 += kAttnRowBlock) {
        const int r1 = std::min(T, r0 + kAttnRowBlock), rows = r1 - r0;
        const float* ab = a + static_cast<std::size_t>(r0) * T;
        const float* dyb = dy + static_cast<std::size_t>(r0) * C;
        float* da = scratch;  // (rows, r1), leading dimension T
        // datt = dout[r0:r1] @ v[0:r1]^T;  dv[0:r1] += att[r0:r1, 0:r1]^T @ dout[r0:r1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, r1, hs, 1.0f, dyb, C, v, C3,
                    0.0f, da, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hs, rows, 1.0f, ab, T, dyb, C,
                    1.0f, dv, C3);
        // Softmax backward, in place: dscore = att * (datt - sum(att * datt)) * scale.
        for (int t = r0; t < r1; ++t) {
          const float* arow = a + static_cast<std::size_t>(t) * T;
          float* drow = da + static_cast<std::size_t>(t - r0) * T;
          float dot = 0.0f;
          for (int j = 0; j <= t; ++j) dot += arow[j] * drow[j];
          for (int j = 0; j <= t; ++j) drow[j] = arow[j] * (drow[j] - dot) * scale;
          for (int j = t + 1; j < r1; ++j) drow[j] = 0.0f;
        }
        // dq[r0:r1] += dscore @ k[0:r1];  dk[0:r1] += dscore^T @ q[r0:r1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs, r1, 1.0f, da, T, k, C3,
                    1.0f, dq + static_cast<std::size_t>(r0) * C3, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hs, rows, 1.0f, da, T,
                    q + static_cast<std::size_t>(r0) * C3, C3, 1.0f, dk, C3);
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
    dinp[i] += local * dout[i];
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
    for (int j = 1; j < V; ++j) maxv = std::max(maxv, z[j]);
    const float target_logit = z[targets[n]];  // read before p overwrites z
    float sum = 0.0f;
    for (int j = 0; j < V; ++j) {
      p[j] = std::exp(z[j] - maxv);
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
