// What one training step should compute, worked out without the Trainer: the
// mean loss over the step's tokens and its gradient, from a fresh model and
// gpt_forward_backward run one micro-batch at a time with
// dloss = 1 / (global_batch x seq_len), summed in double. The Trainer gets
// there another way (threads and ranks, dloss 1, float sums, one scaling at
// the end), so agreement checks its split of the work and its loss scaling.
// Shared by the in-process test (test_training.cpp) and the multi-rank one
// (test_mpi_ranks.cpp).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "cllm/data/sampler.h"
#include "cllm/data/token_source.h"
#include "cllm/kernels/aligned_buffer.h"
#include "cllm/kernels/blas.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model.h"
#include "cllm/train/train_config.h"
#include "cllm/train/trainer.h"

namespace cllm::test {

struct ReferenceStep {
  double loss = 0;            // mean over the step's tokens
  std::vector<double> grads;  // d loss / d parameters, in the model's layout
  double grad_norm = 0;       // L2 norm of grads
};

// Step `step` of a run with config cfg on data, taken from the initial model
// (init_gpt2(cfg.seed)): the state of a Trainer that has run no step yet.
inline ReferenceStep reference_step(const TrainConfig& cfg, const TokenSource& data, int step) {
  kernels::use_single_threaded_blas();
  Model model(cfg.model);
  model.init_gpt2(cfg.seed);
  const int B = cfg.batch.micro_batch, T = cfg.model.seq_len;
  const double n_tokens = static_cast<double>(cfg.batch.global_batch) * T;
  const float dloss = static_cast<float>(1.0 / n_tokens);  // gradient of the mean loss
  const std::uint64_t n = data.split_size(Split::train);

  GptActivations acts(cfg.model, B);
  AlignedBuffer<float> g(model.layout().total());
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(B) * T), targets(inputs.size());
  std::vector<std::int32_t> window(static_cast<std::size_t>(T) + 1);
  ReferenceStep ref;
  ref.grads.assign(g.size(), 0.0);
  double loss_sum = 0;
  // Every micro-batch of the global batch, in order, on one thread.
  for (int m = 0; m < cfg.batch.micro_batches_per_step(); ++m) {
    for (int b = 0; b < B; ++b) {
      // Row b of micro-batch m: T + 1 tokens from the sampler's start.
      const std::uint64_t start = training_window_start(n, T, cfg.seed, step, m, b);
      data.read_tokens(Split::train, start, window.size(), window.data());
      std::copy_n(window.begin(), T, inputs.begin() + b * T);
      std::copy_n(window.begin() + 1, T, targets.begin() + b * T);
    }
    g.zero();
    loss_sum += gpt_forward_backward(model, acts, g.span(), inputs.data(), targets.data(), dloss);
    for (std::size_t i = 0; i < g.size(); ++i) ref.grads[i] += g[i];
  }
  ref.loss = loss_sum / n_tokens;
  double sq = 0;
  for (double x : ref.grads) sq += x * x;
  ref.grad_norm = std::sqrt(sq);
  return ref;
}

// Checks a Trainer's step result and gradients() (after scaling, before
// clipping) against the reference. The tolerances allow for float sums in
// another order; a missing or wrong 1/N scaling is off by a factor of N or
// more.
inline void expect_step_matches_reference(const StepResult& r, std::span<const float> grads,
                                          const ReferenceStep& ref) {
  ASSERT_EQ(grads.size(), ref.grads.size());
  ASSERT_GT(ref.grad_norm, 0.0) << "the reference gradient is zero: nothing is checked";
  EXPECT_NEAR(r.loss, ref.loss, 1e-6 * ref.loss);
  EXPECT_NEAR(r.grad_norm, ref.grad_norm, 1e-5 * ref.grad_norm)
      << "StepResult.grad_norm is not the norm of the mean-loss gradient (ratio "
      << r.grad_norm / ref.grad_norm << ")";

  // Elementwise: within 1e-5 relative, plus a floor of 1e-6 of the largest
  // entry for entries that are sums of cancelling terms.
  double max_ref = 0, sq = 0;
  for (double x : ref.grads) max_ref = std::max(max_ref, std::abs(x));
  std::size_t bad = 0, worst_i = 0;
  double worst = 0;  // largest |difference| / allowed
  for (std::size_t i = 0; i < grads.size(); ++i) {
    const double d = std::abs(grads[i] - ref.grads[i]);
    const double allowed = 1e-5 * std::abs(ref.grads[i]) + 1e-6 * max_ref;
    sq += static_cast<double>(grads[i]) * grads[i];
    if (d > allowed) ++bad;
    if (d / allowed > worst) worst = d / allowed, worst_i = i;
  }
  EXPECT_EQ(bad, 0u) << bad << " of " << grads.size()
                     << " gradient entries differ from the reference; worst at " << worst_i
                     << ": trainer " << grads[worst_i] << ", reference " << ref.grads[worst_i];
  std::printf("gradient vs reference: worst |difference| / tolerance %.3g (element %zu)\n", worst,
              worst_i);
  // The norm reported is the norm of the gradient exposed.
  EXPECT_NEAR(std::sqrt(sq), r.grad_norm, 1e-6 * r.grad_norm);
}

}  // namespace cllm::test
