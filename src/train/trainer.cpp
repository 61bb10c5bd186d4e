#include "cllm/train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "cllm/data/sampler.h"
#include "cllm/kernels/kernels.h"
#include "cllm/model/gpt.h"
#include "cllm/train/stop_signal.h"

namespace cllm {

Range static_block(int count, int n, int t) {
  const int base = count / n, extra = count % n;
  const int begin = t * base + std::min(t, extra);
  return {begin, begin + base + (t < extra ? 1 : 0)};
}

namespace {

// --bucket-mb in bytes. The reducer is built before validate() refuses a size
// that is not positive: such a size is 0 here, and one past any model's
// memory is capped rather than overflowing the conversion.
std::size_t bucket_bytes(double mib) {
  if (!(mib > 0)) return 0;
  if (mib >= 0x1p40) return std::size_t{1} << 60;
  return static_cast<std::size_t>(mib * 1048576.0);
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, const TokenSource& data, const Comm& comm) try
    : cfg_(config),
      data_(data),
      comm_(comm),
      micro_per_rank_(config.batch.micro_batches_per_step() / comm.size()),
      first_micro_(comm.rank() * micro_per_rank_),
      model_(config.model),
      optimizer_(config.optim, model_.layout()),
      reducer_(comm, model_.layout(), bucket_bytes(config.batch.bucket_mb)),
      contexts_(config.batch.threads),
      grads_(model_.layout().total()),
      thread_finished_(config.batch.threads),
      micro_losses_(config.batch.micro_batches_per_step()),
      // The largest share of the fixed validation micro-batches a rank gets.
      eval_per_rank_((config.eval_batches + comm.size() - 1) / comm.size()),
      batch_tokens_(static_cast<std::size_t>(config.batch.micro_batch) * config.model.seq_len),
      batch_inputs_(std::max(micro_per_rank_, eval_per_rank_) * batch_tokens_),
      batch_targets_(batch_inputs_.size()) {
  cfg_.validate(comm.size());
  if (data.vocab() > cfg_.model.vocab_size)
    throw std::invalid_argument(data.name() + ": vocabulary of " +
                                std::to_string(data.vocab()) +
                                " tokens is larger than the model's " +
                                std::to_string(cfg_.model.vocab_size));
  kernels::use_single_threaded_blas();
  model_.init_gpt2(cfg_.seed);
  grads_.zero();
  const Model& model = model_;
  // An exception must not leave an OpenMP region (the process would abort):
  // each thread notes its failure, and the first is rethrown after it.
  std::vector<std::string> failures(cfg_.batch.threads);
#pragma omp parallel num_threads(cfg_.batch.threads)
  {
    // Each thread allocates and first-touches its own context.
    const int t = omp_get_thread_num();
    try {
      contexts_[t] = std::make_unique<ThreadContext>(model, cfg_.batch.micro_batch,
                                                     cfg_.batch.recompute, cfg_.batch.matmul);
    } catch (const std::bad_alloc&) {
      failures[t] = "cannot allocate its training context";
    } catch (const std::exception& e) {
      failures[t] = e.what();
    }
  }
  for (int t = 0; t < cfg_.batch.threads; ++t)
    if (!failures[t].empty())
      throw std::runtime_error("out of memory: thread " + std::to_string(t) + ": " + failures[t] +
                               " (activations of --micro-batch " +
                               std::to_string(cfg_.batch.micro_batch) + " and a gradient buffer; " +
                               std::to_string(cfg_.batch.threads) + " threads need one each)");
  for (const auto& ctx : contexts_)
    if (!ctx)  // OMP_THREAD_LIMIT or OMP_DYNAMIC gave a smaller team
      throw std::runtime_error("OpenMP started fewer threads than --threads " +
                               std::to_string(cfg_.batch.threads));
  for (const auto& ctx : contexts_) thread_grads_.push_back(ctx->grads.span());
} catch (const AllocationError& e) {
  // The model's parameters, moments, gradient sum or token buffers.
  throw std::runtime_error(
      "out of memory: " + std::string(e.what()) + " for the model (" +
      std::to_string(gpt_parameter_layout(config.model).numel()) + " parameters, vocabulary " +
      std::to_string(config.model.vocab_size) + "): parameters, AdamW moments and gradients " +
      "take 16 bytes per parameter");
} catch (const std::bad_alloc&) {
  throw std::runtime_error("out of memory setting up training (model of " +
                           std::to_string(gpt_parameter_layout(config.model).numel()) +
                           " parameters)");
}

StepResult Trainer::train_step(int step) {
  StepResult r;
  r.step = step;
  r.lr = learning_rate(cfg_.optim, step, cfg_.steps);
  const int n_threads = cfg_.batch.threads;
  const int label = step + 1;  // the log's step number
  comm_.label_step(label);
  Timeline* const timeline = timeline_ && timeline_->on() ? timeline_ : nullptr;
  const double t_start = omp_get_wtime();
  read_training_windows(step);
  const double t0 = omp_get_wtime();
  if (timeline) timeline->span(0, "read windows", t_start, t0, label);

  // ---- forward + backward: threads share the model read-only, no lock.
  update_bf16_weights();
  std::fill(micro_losses_.begin(), micro_losses_.end(), 0.0);
  const Model& model = model_;
  const double t_parallel = omp_get_wtime();
#pragma omp parallel num_threads(n_threads)
  {
    const StopSignalsHeld while_multiplying;  // see stop_signal.h
    const int me = omp_get_thread_num();
    ThreadContext& ctx = *contexts_[me];
    ctx.grads.zero();
    ctx.acts.seconds = {};
    const Range mine = static_block(micro_per_rank_, n_threads, me);
    for (int i = mine.begin; i < mine.end; ++i) {
      const std::int32_t* inputs = batch_inputs(i);
      const std::int32_t* targets = batch_targets(i);
      const double m0 = timeline ? omp_get_wtime() : 0.0;
      micro_losses_[first_micro_ + i] =
          gpt_forward_backward(model, ctx.acts, ctx.grads.span(), inputs, targets, 1.0f);
      if (timeline) {
        const double m1 = omp_get_wtime();
        const PassMarks& at = ctx.acts.marks;
        const int micro = first_micro_ + i;
        timeline->span(me, "micro-batch", m0, m1, label, "micro_batch", micro);
        timeline->span(me, "forward", m0, at.forward_end, label, "micro_batch", micro);
        timeline->span(me, "output head", at.forward_end, at.head_end, label, "micro_batch", micro);
        timeline->span(me, "backward", at.head_end, m1, label, "micro_batch", micro);
      }
    }
    thread_finished_[me] = omp_get_wtime();
  }
  const double t1 = omp_get_wtime();
  if (timeline) {
    if (cfg_.batch.matmul.precision == kernels::Precision::bf16)
      timeline->span(0, "bf16 weights", t0, t_parallel, label);
    for (int t = 0; t < n_threads; ++t)
      timeline->span(t, "wait for threads", thread_finished_[t], t1, label);
  }

  // ---- in-rank reduce, overlapped with the cross-rank allreduce.
  r.t_allreduce = reducer_.reduce(thread_grads_, grads_.span(), n_threads, timeline, label);
  comm_.sum(micro_losses_, Collective::loss_sum);  // each slot has one contributor: exact
  const double t2 = omp_get_wtime();
  const std::vector<Chunk>& chunks = optimizer_.chunks();

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
  if (timeline) {
    timeline->span(0, "optimizer", t2, t3, label);
    timeline->span(0, "step", t_start, t3, label);
  }
  r.t_data = t0 - t_start;
  for (int t = 0; t < n_threads; ++t) {
    r.t_matmul += contexts_[t]->acts.seconds.matmul / n_threads;
    r.t_attention += contexts_[t]->acts.seconds.attention / n_threads;
    r.t_waiting += (t1 - thread_finished_[t]) / n_threads;
  }
  r.t_forward_backward = t1 - t0;
  r.t_reduce = t2 - t1 - r.t_allreduce;
  r.t_optimizer = t3 - t2;
  r.t_total = t3 - t_start;
  return r;
}

void Trainer::update_bf16_weights() {
  // The optimizer's update (or a checkpoint's load) dropped the copy.
  if (cfg_.batch.matmul.precision == kernels::Precision::bf16 && !model_.has_bf16_copy())
    model_.update_bf16_copy(cfg_.batch.threads);
}

void Trainer::read_training_windows(int step) {
  const int B = cfg_.batch.micro_batch, T = cfg_.model.seq_len;
  const std::uint64_t n = data_.split_size(Split::train);
  std::vector<std::uint64_t> starts(B);
  for (int i = 0; i < micro_per_rank_; ++i) {
    for (int b = 0; b < B; ++b)
      starts[b] = training_window_start(n, T, cfg_.seed, step, first_micro_ + i, b);
    read_windows(data_, Split::train, starts, T, batch_inputs(i), batch_targets(i));
  }
}

void Trainer::read_validation_windows(int first_batch, int count, int n_batches) {
  const int B = cfg_.batch.micro_batch, T = cfg_.model.seq_len;
  const std::uint64_t n = data_.split_size(Split::val);
  std::vector<std::uint64_t> starts(B);
  for (int i = 0; i < count; ++i) {
    for (int b = 0; b < B; ++b)
      starts[b] = validation_window_start(n, T, static_cast<std::int64_t>(first_batch + i) * B + b,
                                          static_cast<std::int64_t>(n_batches) * B);
    read_windows(data_, Split::val, starts, T, batch_inputs(i), batch_targets(i));
  }
}

double Trainer::evaluate() {
  const int n_threads = cfg_.batch.threads;
  const int B = cfg_.batch.micro_batch, T = cfg_.model.seq_len;
  // Exactly --eval-batches micro-batches of fixed windows, split over the
  // ranks (some may get none): the same windows, and the same sum in the
  // same order, on any number of ranks.
  const int n_batches = cfg_.eval_batches;
  const Range ours = static_block(n_batches, comm_.size(), comm_.rank());
  std::vector<double> losses(n_batches, 0.0);
  update_bf16_weights();
  const Model& model = model_;
  read_validation_windows(ours.begin, ours.end - ours.begin, n_batches);
#pragma omp parallel num_threads(n_threads)
  {
    const StopSignalsHeld while_multiplying;
    ThreadContext& ctx = *contexts_[omp_get_thread_num()];
    const Range mine = static_block(ours.end - ours.begin, n_threads, omp_get_thread_num());
    for (int i = mine.begin; i < mine.end; ++i)
      losses[ours.begin + i] = gpt_forward(model, ctx.acts, batch_inputs(i), batch_targets(i));
  }
  comm_.sum(losses, Collective::evaluation);  // each slot has one contributor: exact
  double sum = 0.0;
  for (double l : losses) sum += l;
  return sum / (static_cast<double>(n_batches) * B * T);
}

void Trainer::check_replicas(int step) const {
  const std::vector<std::uint64_t> sums = comm_.all_gather(checksum(model_.params()), Collective::replica_check);
  for (int r = 1; r < comm_.size(); ++r)
    if (sums[r] != sums[0]) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "step %d: parameters differ across ranks (rank 0 checksum %016llx, rank %d "
                    "%016llx)",
                    step, static_cast<unsigned long long>(sums[0]), r,
                    static_cast<unsigned long long>(sums[r]));
      throw std::runtime_error(buf);
    }
}

}  // namespace cllm
