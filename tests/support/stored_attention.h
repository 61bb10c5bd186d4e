// Causal self-attention as cllm computed it before its kernels were tiled:
// the softmax probabilities of every (query, key) pair stored, B x NH x T x T,
// then used by the products and by the backward pass. Plain float loops: a
// second reference for the tiled kernels, beside naive attention in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace cllm::test {

// out (B,T,C) from qkv (B,T,3C); dqkv += the gradient of sum(out * dout).
inline void stored_attention(std::vector<float>& out, std::vector<float>& dqkv,
                             const std::vector<float>& qkv, const std::vector<float>& dout, int B,
                             int T, int C, int NH) {
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  std::vector<float> att(static_cast<std::size_t>(T) * T), datt(att.size());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const std::size_t qo = static_cast<std::size_t>(b) * T * C3 + h * hs;
      const std::size_t oo = static_cast<std::size_t>(b) * T * C + h * hs;
      const auto q = [&](int t) { return &qkv[qo + static_cast<std::size_t>(t) * C3]; };
      const auto k = [&](int t) { return q(t) + C; };
      const auto v = [&](int t) { return q(t) + 2 * C; };
      const auto d = [&](int t, int part) { return &dqkv[qo + static_cast<std::size_t>(t) * C3 + part * C]; };
      for (int t = 0; t < T; ++t) {
        float* a = &att[static_cast<std::size_t>(t) * T];
        float maxv = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          float s = 0;
          for (int c = 0; c < hs; ++c) s += q(t)[c] * k(j)[c];
          a[j] = s * scale;
          maxv = std::max(maxv, a[j]);
        }
        float sum = 0;
        for (int j = 0; j <= t; ++j) sum += a[j] = std::exp(a[j] - maxv);
        for (int j = 0; j <= t; ++j) a[j] /= sum;
        float* o = &out[oo + static_cast<std::size_t>(t) * C];
        for (int c = 0; c < hs; ++c) {
          float acc = 0;
          for (int j = 0; j <= t; ++j) acc += a[j] * v(j)[c];
          o[c] = acc;
        }
      }
      for (int t = 0; t < T; ++t) {
        const float* a = &att[static_cast<std::size_t>(t) * T];
        float* da = &datt[static_cast<std::size_t>(t) * T];
        const float* dy = &dout[oo + static_cast<std::size_t>(t) * C];
        float dot = 0;
        for (int j = 0; j <= t; ++j) {
          float s = 0;
          for (int c = 0; c < hs; ++c) {
            s += dy[c] * v(j)[c];
            d(j, 2)[c] += a[j] * dy[c];
          }
          da[j] = s;
          dot += a[j] * s;
        }
        for (int j = 0; j <= t; ++j) {
          const float ds = a[j] * (da[j] - dot) * scale;
          for (int c = 0; c < hs; ++c) {
            d(t, 0)[c] += ds * k(j)[c];
            d(j, 1)[c] += ds * q(t)[c];
          }
        }
      }
    }
}

}  // namespace cllm::test
