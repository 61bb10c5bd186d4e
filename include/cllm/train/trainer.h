// Trainer: one rank's part of data-parallel training. The global batch's
// micro-batches are split over ranks, then dealt to the rank's OpenMP threads
// in rounds (thread t runs micro-batch t of each round). Each thread owns a
// ThreadContext and runs forward and backward on the shared model, which it
// sees only as const. The threads go down the backward pass in step, half a
// block at a time (its MLP, then its attention): when all of them are done
// with a half, they sum its gradient into the rank's (in thread order,
// parallel over chunks), and in the last round its allreduce is posted at
// once (GradientReducer), so the communication of one half runs while the
// halves below compute. No thread holds
// more than one block's gradient. Then every rank clips and applies
// the same AdamW step to its replica. While a step computes, one more thread
// reads the next step's token windows (joined before the step returns).
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cllm/data/token_source.h"
#include "cllm/dist/comm.h"
#include "cllm/dist/gradient_reducer.h"
#include "cllm/dist/timeline.h"
#include "cllm/kernels/aligned_buffer.h"
#include "cllm/model/model.h"
#include "cllm/train/optimizer.h"
#include "cllm/train/step_seconds.h"
#include "cllm/train/thread_context.h"
#include "cllm/train/train_config.h"

namespace cllm {

struct StepResult {
  int step = 0;             // 0-based
  double loss = 0;          // mean over the step's tokens
  float lr = 0;
  double grad_norm = 0;     // before clipping
  bool applied = false;     // false: non-finite loss or norm, update skipped
  StepSeconds seconds;      // where the step's time went
};

class Trainer {
 public:
  // The model is initialised from config.seed; the data and comm must
  // outlive us, and the data must not change (a step reads the next one's
  // windows ahead). Throws std::invalid_argument when the global batch does not
  // split into whole micro-batches per rank, or the data's vocabulary is
  // larger than the model's.
  Trainer(const TrainConfig& config, const TokenSource& data, const Comm& comm);

  // Runs optimizer step `step` (0-based); the data it sees depends only on
  // (seed, step, micro-batch index). The comm's step label becomes step + 1.
  // While it computes, a thread reads step + 1's windows (unless step + 1 is
  // config.steps), for the next call if that is step + 1; the thread has
  // ended when this returns or throws, so the data is free for others again.
  StepResult train_step(int step);
  // Spans of each step's work go to timeline from now on (nullptr: none);
  // it must outlive the trainer, or the next call.
  void trace_into(Timeline* timeline) { timeline_ = timeline; }
  // Mean loss over the fixed validation windows (all ranks share the work).
  double evaluate();
  // Throws std::runtime_error naming the step and the ranks when the
  // replicas' parameters are not bitwise identical. Collective.
  void check_replicas(int step) const;

  const Model& model() const { return model_; }
  Model& mutable_model() { return model_; }
  const AdamW& optimizer() const { return optimizer_; }
  AdamW& mutable_optimizer() { return optimizer_; }
  const TrainConfig& config() const { return cfg_; }
  // Bytes of one thread's context (activations of one micro-batch, one block's gradient).
  std::size_t thread_context_bytes() const { return contexts_.front()->bytes(); }
  // The rank gradient of the last step (scaled to a mean, before clipping).
  std::span<const float> gradients() const { return grads_.span(); }

 private:
  // bf16 products read the model's bf16 copy of its weights, made once
  // after each update, between the parallel regions.
  void update_bf16_weights();
  // Token windows, inputs and targets (B x T each) of this rank's micro-batches.
  struct Windows {
    explicit Windows(std::size_t tokens) : inputs(tokens), targets(tokens) {}
    AlignedBuffer<std::int32_t> inputs, targets;
    int step = -1;               // next_: the step whose windows it holds; -1: none
    std::exception_ptr failure;  // next_: what reading them threw, for that step to rethrow
  };
  // Step `step`'s windows into batch_: those next_ holds if they are that
  // step's, else read now.
  void read_training_windows(int step);
  // Reads step `step`'s windows into w. The data is read by one thread at a
  // time (HDF5 is not thread-safe): the main thread, or the prefetch thread
  // while the main thread computes.
  void read_step_windows(int step, Windows& w) const;
  // Starts reading step `step`'s windows into next_ (none past the last
  // step); the caller joins the thread before anyone else reads the data.
  std::jthread prefetch_windows(int step);
  void read_validation_windows(int first_batch, int count, int n_batches);
  std::int32_t* batch_inputs(int i) { return batch_.inputs.data() + i * batch_tokens_; }
  std::int32_t* batch_targets(int i) { return batch_.targets.data() + i * batch_tokens_; }
  // Thread `me`'s part of a step's forward and backward: called by every
  // thread of the team; its seconds in in-rank sums and in waits go to
  // reduce_seconds_[me] and wait_seconds_[me].
  void run_rounds(int me, int label, Timeline* timeline);
  // The threads' seconds (matmul, attention, waits, in-rank sums), averaged into s.
  void add_thread_seconds(StepSeconds& s) const;
  // grads_'s chunks of `unit`, = (or += unless first) the threads' copies
  // 0 .. contributors - 1 in thread order; the team shares out the chunks.
  // copy(t) is thread t's buffer holding just that unit.
  template <class Copy>
  void add_unit(int unit, int contributors, bool first, Copy copy);

  TrainConfig cfg_;
  const TokenSource& data_;
  const Comm& comm_;
  int micro_per_rank_;    // micro-batches this rank runs per step
  int first_micro_index_;  // global index of the first
  Model model_;
  AdamW optimizer_;
  GradientReducer reducer_;  // grads_ across ranks, unit by unit (gpt_unit_starts), in --bucket-mb buckets
  std::vector<std::vector<Chunk>> unit_chunks_;  // each unit's chunks, in buffer order
  std::vector<std::unique_ptr<ThreadContext>> contexts_;  // one per thread
  AlignedBuffer<float> grads_;                            // this rank's summed gradient
  Timeline* timeline_ = nullptr;
  // Per thread, this step: seconds in in-rank sums and in waiting for the others.
  std::vector<double> reduce_seconds_, wait_seconds_;
  std::vector<double> micro_losses_;  // per global micro-batch, for a fixed sum order
  int eval_per_rank_;                 // the most validation micro-batches a rank runs
  std::size_t batch_tokens_;          // B x T
  // This step's windows (or evaluate()'s), and the next step's, read ahead:
  // swapped when that step starts. Each holds the larger of a step's and an
  // evaluation's micro-batches, as either may end up in batch_.
  Windows batch_, next_;
};

// The micro-batches [begin, end) that thread t of n owns, out of count:
// contiguous blocks, the first (count % n) threads one larger.
struct Range {
  int begin, end;
};
Range static_block(int count, int n, int t);

}  // namespace cllm
