#include "cllm/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "cllm/gpt.h"
#include "cllm/kernels.h"
#include "cllm/sampler.h"

namespace cllm {

Range static_block(int count, int n, int t) {
  const int base = count / n, extra = count % n;
  const int begin = t * base + std::min(t, extra);
  return {begin, begin + base + (t < extra ? 1 : 0)};
}

Trainer::Trainer(const TrainConfig& config, const TokenDataset& data)
    : cfg_(config),
      data_(data),
      model_(config.model),
      optimizer_(config.optim, model_.layout()),
      contexts_(config.threads),
      grads_(model_.layout().total()),
      micro_losses_(config.micro_batches_per_step()) {
  cfg_.validate();
  if (data.vocab_size > cfg_.model.vocab_size)
    throw std::invalid_argument(data.source + ": vocabulary of " +
                                std::to_string(data.vocab_size) +
                                " tokens is larger than the model's " +
                                std::to_string(cfg_.model.vocab_size));
  kernels::use_single_threaded_blas();
  model_.init_gpt2(cfg_.seed);
  grads_.zero();
  const Model& model = model_;
#pragma omp parallel num_threads(cfg_.threads)
  {
    // Each thread allocates and first-touches its own context.
    const int t = omp_get_thread_num();
    contexts_[t] = std::make_unique<ThreadContext>(model, cfg_.micro_batch);
  }
  for (const auto& ctx : contexts_)
    if (!ctx)  // OMP_THREAD_LIMIT or OMP_DYNAMIC gave a smaller team
      throw std::runtime_error("OpenMP started fewer threads than --threads " +
                               std::to_string(cfg_.threads));
}

StepResult Trainer::train_step(int step) {
  StepResult r;
  r.step = step;
  r.lr = learning_rate(cfg_.optim, step, cfg_.steps);
  const int n_threads = cfg_.threads;
  const int n_micro = cfg_.micro_batches_per_step();
  const int B = cfg_.micro_batch, T = cfg_.model.seq_len;
  const double t0 = omp_get_wtime();

  // ---- forward + backward: threads share the model read-only, no lock.
  const Model& model = model_;
#pragma omp parallel num_threads(n_threads)
  {
    ThreadContext& ctx = *contexts_[omp_get_thread_num()];
    ctx.grads.zero();
    const Range mine = static_block(n_micro, n_threads, omp_get_thread_num());
    for (int m = mine.begin; m < mine.end; ++m) {
      sample_training_windows(data_.train, cfg_.seed, step, m, B, T, ctx.inputs.data(),
                              ctx.targets.data());
      micro_losses_[m] = gpt_forward(model, ctx.acts, ctx.inputs.data(), ctx.targets.data());
      gpt_backward(model, ctx.acts, ctx.grads.span(), ctx.inputs.data(), ctx.targets.data(),
                   1.0f);
    }
  }
  const double t1 = omp_get_wtime();

  // ---- rank reduce: sum thread gradients in thread order, parallel over slices.
  const std::vector<Chunk>& chunks = optimizer_.chunks();
  const auto n_chunks = static_cast<std::int64_t>(chunks.size());
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    const std::size_t off = chunks[c].offset, size = chunks[c].size;
    float* dst = grads_.data() + off;
    std::copy_n(contexts_[0]->grads.data() + off, size, dst);
    for (int t = 1; t < n_threads; ++t) {
      const float* src = contexts_[t]->grads.data() + off;
      for (std::size_t i = 0; i < size; ++i) dst[i] += src[i];
    }
  }
  const double t2 = omp_get_wtime();

  // ---- mean over the step's tokens, global-norm clipping, AdamW.
  double loss_sum = 0.0;
  for (double l : micro_losses_) loss_sum += l;  // micro-batch order: thread-count independent
  const double tokens = static_cast<double>(cfg_.tokens_per_step());
  r.loss = loss_sum / tokens;
  r.grad_norm = scale_and_norm(grads_.span(), chunks, static_cast<float>(1.0 / tokens), n_threads);
  if (std::isfinite(r.loss) && std::isfinite(r.grad_norm)) {
    const float clip = clip_coefficient(r.grad_norm, cfg_.optim.grad_clip);
    r.applied = optimizer_.step(model_.params(), grads_.span(), clip, r.lr, n_threads);
  }
  const double t3 = omp_get_wtime();
  r.t_forward_backward = t1 - t0;
  r.t_reduce = t2 - t1;
  r.t_optimizer = t3 - t2;
  r.t_total = t3 - t0;
  return r;
}

double Trainer::evaluate() {
  const int n_threads = cfg_.threads;
  const int B = cfg_.micro_batch, T = cfg_.model.seq_len;
  const int n_batches = cfg_.eval_batches;
  std::vector<double> losses(n_batches);
  const Model& model = model_;
#pragma omp parallel num_threads(n_threads)
  {
    ThreadContext& ctx = *contexts_[omp_get_thread_num()];
    const Range mine = static_block(n_batches, n_threads, omp_get_thread_num());
    for (int m = mine.begin; m < mine.end; ++m) {
      validation_windows(data_.val, static_cast<std::int64_t>(m) * B,
                         static_cast<std::int64_t>(n_batches) * B, B, T, ctx.inputs.data(),
                         ctx.targets.data());
      losses[m] = gpt_forward(model, ctx.acts, ctx.inputs.data(), ctx.targets.data());
    }
  }
  double sum = 0.0;
  for (double l : losses) sum += l;
  return sum / (static_cast<double>(n_batches) * B * T);
}

}  // namespace cllm
