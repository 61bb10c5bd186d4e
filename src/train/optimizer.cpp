#include "cllm/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace cllm {

double scale_and_norm(std::span<float> grads, const std::vector<Chunk>& chunks, float scale,
                      int threads) {
  std::vector<double> partial(chunks.size());
  const auto n = static_cast<std::int64_t>(chunks.size());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t c = 0; c < n; ++c) {
    float* g = grads.data() + chunks[c].offset;
    double sum = 0.0;
    for (std::size_t i = 0; i < chunks[c].size; ++i) {
      g[i] *= scale;
      sum += static_cast<double>(g[i]) * g[i];
    }
    partial[c] = sum;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

float clip_coefficient(double norm, float max_norm) {
  if (max_norm <= 0) return 1.0f;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

AdamW::AdamW(const OptimizerConfig& config, const TensorLayout& layout)
    : cfg_(config), chunks_(make_chunks(layout)), m_(layout.total()), v_(layout.total()) {
  m_.zero();
  v_.zero();
}

namespace {

struct AdamWUpdate {
  float p, m, v;
};

// torch.optim.AdamW's arithmetic for one element.
inline AdamWUpdate adamw_element(float p, float g, float m, float v, float lr, float decay,
                                 float beta1, float beta2, float bc1, float sqrt_bc2, float eps) {
  p *= 1.0f - lr * decay;
  m = beta1 * m + (1.0f - beta1) * g;
  v = beta2 * v + (1.0f - beta2) * g * g;
  const float denom = std::sqrt(v) / sqrt_bc2 + eps;
  p -= (lr / bc1) * m / denom;
  return {p, m, v};
}

}  // namespace

bool AdamW::step(std::span<float> params, std::span<const float> grads, float grad_scale,
                 float lr, int threads) {
  const std::int64_t t = t_ + 1;
  const float bc1 = 1.0f - static_cast<float>(std::pow(cfg_.beta1, static_cast<double>(t)));
  const float sqrt_bc2 =
      static_cast<float>(std::sqrt(1.0 - std::pow(cfg_.beta2, static_cast<double>(t))));
  const float b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps, wd = cfg_.weight_decay;
  const auto n = static_cast<std::int64_t>(chunks_.size());
  float* P = params.data();
  const float* G = grads.data();
  float* M = m_.data();
  float* V = v_.data();

  // First pass: would the update stay finite? Only then write anything.
  // x - x is 0 for finite x and NaN otherwise, so one NaN-propagating sum
  // tells, and unlike std::isfinite it vectorises.
  float poison = 0.0f;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : poison)
  for (std::int64_t c = 0; c < n; ++c) {
    const Chunk& ch = chunks_[c];
    const float decay = ch.decay ? wd : 0.0f;
    float chunk_poison = 0.0f;
#pragma omp simd reduction(+ : chunk_poison)
    for (std::size_t i = ch.offset; i < ch.offset + ch.size; ++i) {
      const AdamWUpdate u =
          adamw_element(P[i], G[i] * grad_scale, M[i], V[i], lr, decay, b1, b2, bc1, sqrt_bc2, eps);
      chunk_poison += (u.p - u.p) + (u.m - u.m) + (u.v - u.v);
    }
    poison += chunk_poison;
  }
  const bool finite = poison == 0.0f;
  if (!finite) return false;

#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t c = 0; c < n; ++c) {
    const Chunk& ch = chunks_[c];
    const float decay = ch.decay ? wd : 0.0f;
#pragma omp simd
    for (std::size_t i = ch.offset; i < ch.offset + ch.size; ++i) {
      const AdamWUpdate u =
          adamw_element(P[i], G[i] * grad_scale, M[i], V[i], lr, decay, b1, b2, bc1, sqrt_bc2, eps);
      P[i] = u.p, M[i] = u.m, V[i] = u.v;
    }
  }
  t_ = t;
  return true;
}

OptimizerState AdamW::state() const {
  return {t_, m_.span(), v_.span(), cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay};
}

void AdamW::restore(std::span<const float> m, std::span<const float> v, std::int64_t steps_taken) {
  if (m.size() != m_.size() || v.size() != v_.size())
    throw std::invalid_argument("AdamW::restore: moment buffers of the wrong size");
  std::copy(m.begin(), m.end(), m_.data());
  std::copy(v.begin(), v.end(), v_.data());
  t_ = steps_taken;
}

}  // namespace cllm
