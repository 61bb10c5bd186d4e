#include "cllm/train/trainer.h"

#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "cllm/data/sampler.h"
#include "cllm/dist/busy.h"
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
      first_micro_index_(comm.rank() * micro_per_rank_),
      model_(config.model),
      optimizer_(config.optim, model_.layout()),
      reducer_(comm, model_.layout(), bucket_bytes(config.batch.bucket_mb),
               gpt_unit_starts(config.model.n_layer),
               config.batch.overlap == Overlap::off ? 0.0
               : config.batch.progress_us.value_or(comm.on_one_node() ? 0.0 : kDefaultProgressUs)),
      unit_chunks_(reducer_.units()),
      contexts_(config.batch.threads),
      grads_(model_.layout().total()),
      reduce_seconds_(config.batch.threads),
      wait_seconds_(config.batch.threads),
      micro_losses_(config.batch.micro_batches_per_step()),
      // The largest share of the fixed validation micro-batches a rank gets.
      eval_per_rank_((config.eval_batches + comm.size() - 1) / comm.size()),
      batch_tokens_(static_cast<std::size_t>(config.batch.micro_batch) * config.model.seq_len),
      batch_(std::max(micro_per_rank_, eval_per_rank_) * batch_tokens_),
      next_(batch_.inputs.size()) {
  cfg_.validate(comm.size());
  if (data.vocab() > cfg_.model.vocab_size)
    throw std::invalid_argument(data.name() + ": vocabulary of " +
                                std::to_string(data.vocab()) +
                                " tokens is larger than the model's " +
                                std::to_string(cfg_.model.vocab_size));
  kernels::use_single_threaded_blas();
  // Freed blocks stay with the process. Open MPI's MPI_Iallreduce allocates
  // and frees a bucket-sized buffer per bucket and step; glibc gave each back
  // to the kernel (munmap, or a trim of the heap's top), and every page of it
  // faulted again: 10 ms of a 160 ms step (small, 2 x 1, on a VM). 32 MiB is
  // glibc's largest threshold, beyond --bucket-mb's default.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  model_.init_gpt2(cfg_.seed);
  grads_.zero();
  for (const GradientBucket& bucket : reducer_.buckets())
    unit_chunks_[bucket.unit].insert(unit_chunks_[bucket.unit].end(), bucket.chunks.begin(),
                                     bucket.chunks.end());
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
      throw OutOfMemory("out of memory: thread " + std::to_string(t) + ": " + failures[t] +
                               " (activations of --micro-batch " +
                               std::to_string(cfg_.batch.micro_batch) + " and one block's gradient; " +
                               std::to_string(cfg_.batch.threads) + " threads need one each)");
  for (const auto& ctx : contexts_)
    if (!ctx)  // OMP_THREAD_LIMIT or OMP_DYNAMIC gave a smaller team
      throw std::runtime_error("OpenMP started fewer threads than --threads " +
                               std::to_string(cfg_.batch.threads));
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
  PhaseClock clock(timeline, 0, label);
  read_training_windows(step);
  // Joined on every way out of this function: the data is ours alone until then.
  std::jthread prefetch = prefetch_windows(step + 1);
  r.seconds.data = clock.lap("read windows");

  // ---- forward + backward: threads share the model read-only, no lock;
  // each half-block's gradient is summed in-rank, and posted, as it is done.
  update_bf16_weights();
  std::fill(micro_losses_.begin(), micro_losses_.end(), 0.0);
  reducer_.start(grads_.span());
  const bool bf16 = cfg_.batch.matmul.precision == kernels::Precision::bf16;
  const double setup_s = clock.lap(bf16 ? "bf16 weights" : nullptr);
#pragma omp parallel num_threads(n_threads)
  run_rounds(omp_get_thread_num(), label, timeline);
  const double parallel_s = clock.lap();

  // ---- what the allreduce has left to do (all of it with --overlap off).
  r.seconds.allreduce = reducer_.finish(timeline, label);
  comm_.sum(micro_losses_, Collective::loss_sum);  // each slot has one contributor: exact
  const double finish_s = clock.lap();

  // ---- mean over the step's tokens, global-norm clipping, AdamW.
  double loss_sum = 0.0;
  for (double l : micro_losses_) loss_sum += l;  // micro-batch order: thread-count independent
  const double tokens = static_cast<double>(cfg_.tokens_per_step());
  r.loss = loss_sum / tokens;
  r.grad_norm = scale_and_norm(grads_.span(), optimizer_.chunks(), static_cast<float>(1.0 / tokens),
                               n_threads);
  if (std::isfinite(r.loss) && std::isfinite(r.grad_norm)) {
    const float clip = clip_coefficient(r.grad_norm, cfg_.optim.grad_clip);
    r.applied = optimizer_.step(model_.params(), grads_.span(), clip, r.lr, n_threads);
  }
  const double optimizer_s = clock.lap("optimizer");
  if (prefetch.joinable()) prefetch.join();
  r.seconds.data += clock.lap("next windows");  // the read ahead outlasting the step
  StepSeconds& t = r.seconds;
  t.total = clock.whole("step");
  add_thread_seconds(t);
  t.forward_backward = setup_s + parallel_s - t.reduce;
  t.optimizer = finish_s + optimizer_s - t.allreduce;  // the loss sum's moment included
  return r;
}

void Trainer::add_thread_seconds(StepSeconds& s) const {
  const int n_threads = cfg_.batch.threads;
  for (int t = 0; t < n_threads; ++t) {
    s.matmul += contexts_[t]->acts.seconds.matmul / n_threads;
    s.attention += contexts_[t]->acts.seconds.attention / n_threads;
    s.waiting += wait_seconds_[t] / n_threads;
    s.reduce += reduce_seconds_[t] / n_threads;
  }
}

namespace {

// An OpenMP barrier whose wait is added to `waited`.
void timed_barrier(double& waited) {
  const double w0 = omp_get_wtime();
#pragma omp barrier
  waited += omp_get_wtime() - w0;
}

}  // namespace

template <class Copy>
void Trainer::add_unit(int unit, int contributors, bool first, Copy copy) {
  const std::vector<Chunk>& chunks = unit_chunks_[unit];
  const std::size_t unit_offset = chunks.front().offset;
  float* const sum = grads_.data();
  const auto n_chunks = static_cast<std::int64_t>(chunks.size());
#pragma omp for schedule(static) nowait
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    const std::size_t off = chunks[c].offset, size = chunks[c].size;
    float* dst = sum + off;
    for (int t = 0; t < contributors; ++t) {
      const float* src = copy(t) + (off - unit_offset);
      if (first && t == 0)
        std::copy_n(src, size, dst);
      else
        for (std::size_t i = 0; i < size; ++i) dst[i] += src[i];
    }
  }
}

void Trainer::run_rounds(int me, int label, Timeline* timeline) {
  const StopSignalsHeld while_multiplying;  // see stop_signal.h
  const ModelConfig& mc = cfg_.model;
  const int n_threads = cfg_.batch.threads, L = mc.n_layer;
  const int B = cfg_.batch.micro_batch, T = mc.seq_len, C = mc.n_embd;
  const bool overlap = cfg_.batch.overlap == Overlap::on;
  const Model& model = model_;
  ThreadContext& ctx = *contexts_[me];
  ctx.acts.seconds = {};
  double& waited = wait_seconds_[me];
  double& reducing = reduce_seconds_[me];
  waited = reducing = 0.0;
  const auto post = [&](int unit) {
#pragma omp master
    reducer_.post(unit);
  };
  const auto progress = [&] {
#pragma omp master
    if (overlap) reducer_.progress();
  };
  // wte and wpe have no per-thread copy: each thread owns rows of them in
  // the rank's sum and adds every thread's part of those rows, in order.
  const GptTensors<float> g = gpt_tensors(model.layout(), L, grads_.data());
  const Range vocab_rows = static_block(mc.vocab_size, n_threads, me);
  const kernels::Rows vocab{vocab_rows.begin, vocab_rows.end};
  const Range position_rows = static_block(T, n_threads, me);
  const kernels::Rows positions{position_rows.begin, position_rows.end};
  std::fill(g.wte + static_cast<std::size_t>(vocab.begin) * C,
            g.wte + static_cast<std::size_t>(vocab.end) * C, 0.0f);
  std::fill(g.wpe + static_cast<std::size_t>(positions.begin) * C,
            g.wpe + static_cast<std::size_t>(positions.end) * C, 0.0f);
  const int n_chunks = gpt_head_chunks(model, ctx.acts);
  const int rounds = (micro_per_rank_ + n_threads - 1) / n_threads;
  for (int round = 0; round < rounds; ++round) {
    // Round `round` runs micro-batches first .. first + contributors - 1 of
    // this rank, one a thread; in the last, some threads may have none.
    const int first = round * n_threads;
    const int contributors = std::min(n_threads, micro_per_rank_ - first);
    const bool mine = me < contributors, last = round + 1 == rounds;
    const int i = first + me, micro_index = first_micro_index_ + i;
    PhaseClock clock(mine ? timeline : nullptr, me, label);
    if (mine) gpt_trunk_forward(model, ctx.acts, batch_inputs(i));
    clock.lap("forward", "micro_index", micro_index);
    // The output head, chunk by chunk: each thread its own logits and loss,
    // then every thread wte's gradient of its rows from every thread's chunk.
    double loss = 0.0;
    for (int chunk = 0; chunk < n_chunks; ++chunk) {
      if (mine) loss += gpt_head_chunk(model, ctx.acts, chunk, batch_targets(i), 1.0f);
      timed_barrier(waited);
      for (int t = 0; t < contributors; ++t)
        gpt_head_weight_gradient(model, ctx.acts, contexts_[t]->acts, chunk, vocab, g.wte);
      timed_barrier(waited);  // before any thread's next chunk overwrites its logits
    }
    if (mine) {
      micro_losses_[micro_index] = loss;
      ctx.ln_f_grads.zero();
      float* const d_ln_f = ctx.ln_f_grads.data();  // the unit's span: weight, then bias
      gpt_head_finish(model, ctx.acts, d_ln_f, d_ln_f + (g.ln_f_b - g.ln_f_w));
    }
    clock.lap("output head", "micro_index", micro_index);
    // Each block in two halves, MLP then attention: when every thread has
    // a half's gradient, the team sums it in-rank, and in the last round
    // its allreduce is posted before the next half computes.
    const auto sum_half = [&](int l, int unit, const float* (ThreadContext::*grads)() const) {
      timed_barrier(waited);  // every thread has the half's gradient
      PhaseClock reduce_clock(timeline, me, label);
      add_unit(unit, contributors, round == 0,
               [&](int t) { return (contexts_[t].get()->*grads)(); });
      if (unit == gpt_mlp_unit(L - 1))
        add_unit(gpt_ln_f_unit(L), contributors, round == 0,
                 [&](int t) { return contexts_[t]->ln_f_grads.data(); });
      reducing += reduce_clock.lap("reduce layer", "layer", l);
      timed_barrier(waited);  // the half is summed in-rank; its buffers are free
      if (last && overlap) {
        if (unit == gpt_mlp_unit(L - 1)) post(gpt_ln_f_unit(L));
        post(unit);
      }
      progress();
    };
    for (int l = L - 1; l >= 0; --l) {
      if (mine) {
        ctx.block_grads.zero();
        gpt_block_backward_mlp(model, ctx.acts, l, ctx.block(model, l));
      }
      sum_half(l, gpt_mlp_unit(l), &ThreadContext::mlp_grads);
      if (mine) gpt_block_backward_attention(model, ctx.acts, l, ctx.block(model, l));
      sum_half(l, gpt_attention_unit(l), &ThreadContext::attention_grads);
    }
    // The embeddings' gradient: every thread's d(encoded), final since the
    // barrier after block 0, into the rows this thread owns.
    for (int t = 0; t < contributors; ++t)
      kernels::encoder_backward_rows(g.wte, g.wpe, contexts_[t]->acts.dres,
                                     batch_inputs(first + t), B, T, C, vocab, positions);
    clock.lap("backward", "micro_index", micro_index);
    clock.whole("micro-batch", "micro_index", micro_index);
  }
  timed_barrier(waited);  // every row of wte and wpe is summed
  if (overlap) post(gpt_embedding_unit());
}

void Trainer::update_bf16_weights() {
  // The optimizer's update (or a checkpoint's load) dropped the copy.
  if (cfg_.batch.matmul.precision == kernels::Precision::bf16 && !model_.has_bf16_copy())
    model_.update_bf16_copy(cfg_.batch.threads);
}

void Trainer::read_training_windows(int step) {
  if (next_.step != step) {  // none read ahead: a first or resumed step, or one skipped to
    read_step_windows(step, batch_);
    return;
  }
  std::swap(batch_, next_);
  next_.step = -1;
  // The read ahead failed: fail now, as reading the windows here would have.
  if (batch_.failure) std::rethrow_exception(std::exchange(batch_.failure, nullptr));
}

void Trainer::read_step_windows(int step, Windows& w) const {
  const int B = cfg_.batch.micro_batch, T = cfg_.model.seq_len;
  const std::uint64_t n = data_.split_size(Split::train);
  std::vector<std::uint64_t> starts(B);
  for (int i = 0; i < micro_per_rank_; ++i) {
    for (int b = 0; b < B; ++b)
      starts[b] = training_window_start(n, T, cfg_.seed, step, first_micro_index_ + i, b);
    read_windows(data_, Split::train, starts, T, w.inputs.data() + i * batch_tokens_,
                 w.targets.data() + i * batch_tokens_);
  }
}

std::jthread Trainer::prefetch_windows(int step) {
  next_.step = -1;  // what it held is used, or stale
  if (step >= cfg_.steps) return {};
  next_.step = step;
  next_.failure = nullptr;
  try {
    // Until the join, the main thread touches neither next_ nor the data.
    return std::jthread([this, step] {
      try {
        read_step_windows(step, next_);
      } catch (...) {
        next_.failure = std::current_exception();
      }
    });
  } catch (const std::system_error&) {  // no thread to be had: that step reads its own
    next_.step = -1;
    return {};
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
  {
    // A rank with fewer batches (or none) waits in the sum for the others.
    const BusyScope busy(comm_, Busy::evaluating);
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
