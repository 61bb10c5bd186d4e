// The Trainer: equivalence across thread counts, the gradient of the mean
// loss, bitwise reproducibility, non-finite steps, learning on real text, the
// learning-rate schedule, the split of micro-batches over threads and the
// sampler's windows.
//
// Suites and their labels (tests/CMakeLists.txt):
//   TrainingThreads.*  "threads" (also run under ThreadSanitizer: keep them tiny)
//   TrainingSlow.*     "slow"    (learning on data/austen.txt)
//   TrainingCli.*      "cli"     (through the cllm executable)
//   TrainingSchedule.* unlabelled (single-threaded units)
//   TrainingSampler.*  unlabelled (the window starts, no model)
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <regex>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cllm/data/sampler.h"
#include "cllm/data/text_dataset.h"
#include "cllm/kernels/rng.h"
#include "cllm/train/stop_signal.h"
#include "cllm/train/train_config.h"
#include "cllm/train/trainer.h"
#include "support/bitwise.h"
#include "support/process.h"
#include "support/reference_step.h"
#include "support/run_args.h"
#include "support/synthetic_corpus.h"
#include "support/tiny_model.h"

namespace cllm {
namespace {

// These tests train on one process, without MPI.
const Comm kOneProcess;

// A structured synthetic corpus over 32 tokens: mostly a fixed successor
// function with some noise, so there is something to learn.
const TokenDataset& synthetic_data() {
  static const TokenDataset data = test::synthetic_corpus(99, 20000, 4000);
  return data;
}

using test::same_bits;
using test::tiny_train_config;

std::vector<double> loss_curve(const TrainConfig& cfg, const TokenDataset& data) {
  Trainer trainer(cfg, data, kOneProcess);
  std::vector<double> losses;
  for (int s = 0; s < cfg.steps; ++s) {
    const StepResult r = trainer.train_step(s);
    EXPECT_TRUE(r.applied) << "step " << s;
    EXPECT_EQ(r.step, s);
    losses.push_back(r.loss);
  }
  return losses;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return worst;
}

bool all_finite(std::span<const float> v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// ---------------------------------------------------------------- threads

TEST(TrainingThreads, LossCurveIndependentOfThreadCount) {
  const auto& data = synthetic_data();
  const auto one = loss_curve(tiny_train_config(1), data);
  ASSERT_EQ(one.size(), 20u);
  EXPECT_LT(one.back(), one.front() - 0.3) << "the tiny model does not learn";
  for (int threads : {2, 4}) {
    const auto many = loss_curve(tiny_train_config(threads), data);
    const double d = max_rel_diff(many, one);
    std::printf("%d threads vs 1: max relative loss difference %.3g\n", threads, d);
    EXPECT_LE(d, 1e-5) << threads << " threads";
    EXPECT_EQ(many.front(), one.front()) << "step 0 runs the same model on the same data";
  }
}

TEST(TrainingThreads, ThreadsOwningUnequalShares) {
  // 4 micro-batches over 3 threads: thread 0 owns two, the others one each.
  const auto& data = synthetic_data();
  TrainConfig c1 = tiny_train_config(1), c3 = tiny_train_config(3);
  c1.steps = c3.steps = 10;
  ASSERT_EQ(c3.batch.micro_batches_per_step(), 4);
  const auto one = loss_curve(c1, data), three = loss_curve(c3, data);
  const double d = max_rel_diff(three, one);
  std::printf("3 threads, 4 micro-batches vs 1 thread: max relative loss difference %.3g\n", d);
  EXPECT_LE(d, 1e-5);
  // More threads than micro-batches: the spare thread idles, the curve holds.
  TrainConfig c6 = tiny_train_config(6);
  c6.steps = 3;
  c1.steps = 3;
  EXPECT_LE(max_rel_diff(loss_curve(c6, data), loss_curve(c1, data)), 1e-5);
}

TEST(TrainingThreads, GradientIsTheMeanLossGradientOverAllMicroBatches) {
  // 6 micro-batches of 2 sequences over 2 threads: each thread sums three
  // with dloss 1, the trainer adds the threads' sums and scales by 1/N once,
  // N = 12 x 16 tokens. The reference runs each micro-batch alone with
  // dloss 1/N. A trainer that forgets the scaling, scales by one
  // micro-batch's tokens, or drops a thread's share is off by a factor.
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(2);
  cfg.model.seq_len = 16;
  cfg.batch.global_batch = 12;
  ASSERT_EQ(cfg.batch.micro_batches_per_step(), 6);
  // A fresh trainer's first step need not be step 0 (a resumed run's is
  // not): step 7's windows, on the initial model.
  const int step = 7;
  Trainer trainer(cfg, data, kOneProcess);
  const StepResult r = trainer.train_step(step);
  EXPECT_TRUE(r.applied);
  const test::ReferenceStep ref = test::reference_step(cfg, data, step);
  std::printf("step %d: loss %.6f (reference %.6f), grad norm %.6g (reference %.6g)\n", step,
              r.loss, ref.loss, r.grad_norm, ref.grad_norm);
  test::expect_step_matches_reference(r, trainer.gradients(), ref);
}

TEST(TrainingThreads, GradientMatchesTheReferenceOverAPartialRoundAndSeveralHeadChunks) {
  // 5 micro-batches of 3 x 48 positions over 3 threads: a full round, then
  // one where thread 2 idles; 144 positions make three head chunks (the last
  // short), and 32 vocabulary rows and 48 positions split 11/11/10 and
  // 16/16/16 between the threads that own them in the rank's wte and wpe.
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(3);
  cfg.model.seq_len = 48;
  cfg.batch.micro_batch = 3;
  cfg.batch.global_batch = 15;
  ASSERT_EQ(cfg.batch.micro_batches_per_step(), 5);
  Trainer trainer(cfg, data, kOneProcess);
  const StepResult r = trainer.train_step(2);
  EXPECT_TRUE(r.applied);
  test::expect_step_matches_reference(r, trainer.gradients(), test::reference_step(cfg, data, 2));
}

TEST(TrainingThreads, AThreadHoldsOneBlocksGradientNotTheModels) {
  // The context is the activations of one micro-batch plus one block's and
  // the final layernorm's gradients: with 4 layers, under a third of what a
  // full gradient buffer would add.
  TrainConfig cfg = tiny_train_config(2);
  cfg.model.n_layer = 4;
  const Trainer trainer(cfg, synthetic_data(), kOneProcess);
  const GptActivations acts(cfg.model, cfg.batch.micro_batch);
  const TensorLayout& layout = trainer.model().layout();
  const std::vector<std::size_t> units = gpt_unit_starts(cfg.model.n_layer);
  const std::size_t grads =
      sizeof(float) * (unit_span(layout, units, gpt_attention_unit(0), gpt_mlp_unit(0)) +
                       unit_span(layout, units, gpt_ln_f_unit(4)));
  EXPECT_EQ(trainer.thread_context_bytes(), acts.bytes() + grads);
  EXPECT_LT(3 * grads, sizeof(float) * layout.total());
}

TEST(TrainingThreads, BitwiseReproducibleForTheSameThreadCount) {
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(2);
  cfg.steps = 12;
  Trainer a(cfg, data, kOneProcess), b(cfg, data, kOneProcess);
  for (int s = 0; s < cfg.steps; ++s) {
    const StepResult ra = a.train_step(s), rb = b.train_step(s);
    ASSERT_EQ(ra.loss, rb.loss) << "step " << s;
    ASSERT_EQ(ra.grad_norm, rb.grad_norm) << "step " << s;
    ASSERT_EQ(ra.lr, rb.lr) << "step " << s;
  }
  EXPECT_TRUE(same_bits(a.model().params(), b.model().params()));
  EXPECT_TRUE(same_bits(a.gradients(), b.gradients()));
  EXPECT_TRUE(same_bits(a.optimizer().m(), b.optimizer().m()));
  EXPECT_TRUE(same_bits(a.optimizer().v(), b.optimizer().v()));
  EXPECT_EQ(a.optimizer().steps_taken(), cfg.steps);
  EXPECT_EQ(b.optimizer().steps_taken(), cfg.steps);
  EXPECT_EQ(a.evaluate(), b.evaluate());
  // A different seed is a different run.
  TrainConfig other = cfg;
  other.seed = cfg.seed + 1;
  Trainer c(other, data, kOneProcess);
  c.train_step(0);
  EXPECT_FALSE(same_bits(a.model().params(), c.model().params()));
}

// Each step reads the next step's windows ahead, on another thread. They
// serve that step only: one skipped to (as a resumed run starts) reads its
// own, and an evaluation between steps leaves them be. b, in a's state but
// with nothing read ahead, is the reference.
TEST(TrainingThreads, WindowsReadAheadServeOnlyTheStepTheyWereReadFor) {
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(2);
  cfg.steps = 10;
  Trainer a(cfg, data, kOneProcess), b(cfg, data, kOneProcess);
  for (int s = 0; s < 3; ++s) a.train_step(s);  // step 2 reads step 3's windows ahead
  std::ranges::copy(a.model().params(), b.mutable_model().params().begin());
  b.mutable_optimizer().restore(a.optimizer().m(), a.optimizer().v(), a.optimizer().steps_taken());
  for (int s : {7, 8, 9}) {  // 7 must not take step 3's windows; 9, the last, reads none ahead
    const StepResult ra = a.train_step(s), rb = b.train_step(s);
    ASSERT_EQ(ra.loss, rb.loss) << "step " << s;
    ASSERT_EQ(ra.grad_norm, rb.grad_norm) << "step " << s;
    if (s == 7) a.evaluate();  // overwrites step 7's windows, not step 8's
  }
  EXPECT_TRUE(same_bits(a.model().params(), b.model().params()));
}

// Counts the windows read: what the trainer reads ahead.
struct CountingSource final : TokenSource {
  explicit CountingSource(const TokenSource& counted) : data(counted) {}
  std::uint64_t split_size(Split split) const override { return data.split_size(split); }
  void read_tokens(Split split, std::uint64_t start, std::size_t count,
                   std::int32_t* out) const override {
    ++reads;  // one thread at a time, as for HDF5
    data.read_tokens(split, start, count, out);
  }
  int vocab() const override { return data.vocab(); }
  const std::string& name() const override { return data.name(); }

  const TokenSource& data;
  mutable int reads = 0;
};

TEST(TrainingThreads, NothingIsReadAheadPastTheLastStep) {
  TrainConfig cfg = tiny_train_config(2);
  cfg.steps = 3;
  const int windows = cfg.batch.global_batch;  // a step's, one each
  const CountingSource data(synthetic_data());
  Trainer trainer(cfg, data, kOneProcess);
  trainer.train_step(0);
  EXPECT_EQ(data.reads, 2 * windows) << "step 0's, and step 1's ahead";
  trainer.train_step(1);
  trainer.train_step(2);
  EXPECT_EQ(data.reads, 3 * windows) << "no step 3 to read ahead for";
}

// A read ahead that fails (a token id outside the vocabulary in one of step
// 3's windows) fails the step that uses those windows, with the error a
// plain read gives; the step that read them ahead does not notice.
TEST(TrainingThreads, AFailedReadAheadFailsTheStepThatUsesTheWindows) {
  TrainConfig cfg = tiny_train_config(2);
  const int T = cfg.model.seq_len;
  TokenDataset bad = synthetic_data();
  bad.source = "bad tokens";
  const std::uint64_t n = bad.train.size();
  const std::uint64_t at = training_window_start(n, T, cfg.seed, 3, 1, 1);
  for (int s = 0; s < 3; ++s)
    for (int m = 0; m < cfg.batch.micro_batches_per_step(); ++m)
      for (int row = 0; row < cfg.batch.micro_batch; ++row) {
        const std::uint64_t start = training_window_start(n, T, cfg.seed, s, m, row);
        ASSERT_FALSE(start <= at && at <= start + T) << "step " << s << " reads it too";
      }
  bad.train[at] = 40;
  const auto error_of = [](Trainer& trainer, int step) -> std::string {
    try {
      trainer.train_step(step);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "no error";
  };
  Trainer fresh(cfg, bad, kOneProcess);
  const std::string expected = error_of(fresh, 3);  // read in the step itself
  EXPECT_EQ(expected, "bad tokens: token id 40 at position " + std::to_string(at) +
                          " of the train split is outside the vocabulary of 32 tokens");
  Trainer trainer(cfg, bad, kOneProcess);
  for (int s = 0; s < 3; ++s) EXPECT_TRUE(trainer.train_step(s).applied) << "step " << s;
  EXPECT_EQ(error_of(trainer, 3), expected);
  EXPECT_EQ(error_of(trainer, 3), expected) << "again, read in the step";
}

// bf16 products: each thread count sums the gradients in its own order, as
// in fp32, but the next step rounds the weights to bf16, so a last-bit
// difference can move a weight by a bf16 step (2^-8 relative). The losses
// agree within 2e-4 of each other (2.2e-5 seen over 20 steps; fp32's
// thread counts agree within 1e-5), and the same thread count repeats
// bitwise.
TEST(TrainingThreads, Bf16LossCurveAgreesAcrossThreadCountsAndRepeatsBitwise) {
  const auto& data = synthetic_data();
  auto bf16 = [](int threads) {
    TrainConfig c = tiny_train_config(threads);
    c.batch.matmul.precision = kernels::Precision::bf16;
    return c;
  };
  const auto one = loss_curve(bf16(1), data);
  const auto fp32 = loss_curve(tiny_train_config(1), data);
  EXPECT_LT(one.back(), one.front() - 0.3) << "the tiny model does not learn in bf16";
  const double vs_fp32 = max_rel_diff(one, fp32);
  std::printf("bf16 vs fp32, 1 thread: max relative loss difference %.3g\n", vs_fp32);
  EXPECT_GT(vs_fp32, 1e-6) << "bf16 gave fp32's losses: were the products rounded?";
  for (int threads : {2, 4}) {
    const auto many = loss_curve(bf16(threads), data);
    const double d = max_rel_diff(many, one);
    std::printf("bf16, %d threads vs 1: max relative loss difference %.3g\n", threads, d);
    EXPECT_LE(d, 2e-4) << threads << " threads";
    EXPECT_EQ(many.front(), one.front()) << "step 0 runs the same model on the same data";
  }
  TrainConfig cfg = bf16(2);
  cfg.steps = 8;
  Trainer a(cfg, data, kOneProcess), b(cfg, data, kOneProcess);
  for (int s = 0; s < cfg.steps; ++s) ASSERT_EQ(a.train_step(s).loss, b.train_step(s).loss) << s;
  EXPECT_TRUE(same_bits(a.model().params(), b.model().params()));
  EXPECT_TRUE(same_bits(a.optimizer().v(), b.optimizer().v()));
  EXPECT_EQ(a.evaluate(), b.evaluate());
}

// Every product runs on its caller's thread: after steps on 3 threads in
// fp32 and bf16, the process has the 3 threads of its OpenMP team and no
// more (oneDNN, OpenBLAS and the OpenMP runtime started none of their own).
// ctest runs each test in a process of its own; ThreadSanitizer's runtime
// adds a thread, so this one is not in the tsan run.
TEST(TrainingEngine, NoThreadsBeyondTheTeam) {
  const auto& data = synthetic_data();
  for (const auto precision : {kernels::Precision::fp32, kernels::Precision::bf16}) {
    TrainConfig cfg = tiny_train_config(3);
    cfg.batch.matmul.precision = precision;
    Trainer trainer(cfg, data, kOneProcess);
    trainer.train_step(0);
    trainer.train_step(1);
    trainer.evaluate();
  }
  const auto tasks = std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                   std::filesystem::directory_iterator{});
  EXPECT_EQ(tasks, 3);
}

// oneDNN 2.6's JIT GEMM kernels (gemm:jit, which runs attention's tile
// products) point rsp into the heap while they run; a signal handler that
// runs on such a thread writes its frame there and corrupts the heap
// (oneDNN issue 4845, fixed in 3.x). Slurm and mpirun send SIGUSR1 and
// SIGTERM at any moment. Here the process signals itself thousands of times
// while two threads train, and the run must finish with the bits of an
// undisturbed one.
TEST(TrainingEngine, StopSignalsDuringProductsCorruptNothing) {
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(2);
  cfg.model.n_embd = 128;  // 64 channels a head: attention's tiles run on gemm:jit
  cfg.model.seq_len = 128;
  cfg.steps = 6;
  auto train = [&] {
    Trainer trainer(cfg, data, kOneProcess);
    for (int s = 0; s < cfg.steps; ++s) trainer.train_step(s);
    return checksum(trainer.model().params());
  };
  const auto undisturbed = train();
  install_stop_signal_handlers();
  std::atomic<bool> done = false;
  int sent = 0;
  std::thread signaller([&] {
    while (!done) {
      kill(getpid(), SIGUSR1);
      ++sent;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  const auto disturbed = train();
  done = true;
  signaller.join();
  std::printf("%d signals during training\n", sent);
  EXPECT_EQ(stop_signal_received(), SIGUSR1);
  EXPECT_GT(sent, 100);
  EXPECT_EQ(disturbed, undisturbed);
}

TEST(TrainingThreads, NonFiniteStepsAreSkippedAndLeaveTheModelUntouched) {
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(2);
  cfg.model.n_layer = 1;
  cfg.optim.lr = 1e30f;
  cfg.optim.warmup_steps = 0;
  Trainer trainer(cfg, data, kOneProcess);
  const auto params = [&] { return trainer.model().params(); };
  int skipped = 0, first_skipped = -1;
  for (int s = 0; s < cfg.steps && skipped < 3; ++s) {
    const std::vector<float> before(params().begin(), params().end());
    const std::vector<float> m_before(trainer.optimizer().m().begin(),
                                      trainer.optimizer().m().end());
    const std::int64_t taken = trainer.optimizer().steps_taken();
    const StepResult r = trainer.train_step(s);
    ASSERT_TRUE(all_finite(params())) << "non-finite parameters after step " << s;
    ASSERT_TRUE(all_finite(trainer.optimizer().m())) << "step " << s;
    ASSERT_TRUE(all_finite(trainer.optimizer().v())) << "step " << s;
    if (!r.applied) {
      ++skipped;
      if (first_skipped < 0) first_skipped = s;
      EXPECT_TRUE(same_bits(params(), before)) << "skipped step " << s << " changed the model";
      EXPECT_TRUE(same_bits(trainer.optimizer().m(), m_before)) << "step " << s;
      EXPECT_EQ(trainer.optimizer().steps_taken(), taken) << "step " << s;
    } else {
      EXPECT_EQ(trainer.optimizer().steps_taken(), taken + 1);
      EXPECT_TRUE(std::isfinite(r.loss) && std::isfinite(r.grad_norm)) << "step " << s;
    }
  }
  std::printf("lr 1e30: first skipped step %d\n", first_skipped);
  EXPECT_GE(first_skipped, 0) << "lr 1e30 never produced a non-finite step";
  EXPECT_EQ(skipped, 3);
}

TEST(TrainingThreads, NonFiniteUpdateOfAFiniteGradientIsSkipped) {
  // lr 1e38 is finite, but lr / (1 - beta1) is not: the very first update
  // overflows although its loss and gradient are finite. AdamW must refuse it.
  const auto& data = synthetic_data();
  TrainConfig cfg = tiny_train_config(2);
  cfg.model.n_layer = 1;
  cfg.optim.lr = 1e38f;
  cfg.optim.warmup_steps = 0;
  cfg.steps = 2;
  Trainer trainer(cfg, data, kOneProcess);
  const std::vector<float> before(trainer.model().params().begin(),
                                  trainer.model().params().end());
  const StepResult r = trainer.train_step(0);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_TRUE(std::isfinite(r.grad_norm));
  EXPECT_FALSE(r.applied);
  EXPECT_TRUE(same_bits(trainer.model().params(), before));
  EXPECT_EQ(trainer.optimizer().steps_taken(), 0);
  for (float x : trainer.optimizer().m()) ASSERT_EQ(x, 0.0f);
  for (float x : trainer.optimizer().v()) ASSERT_EQ(x, 0.0f);
}

// ---------------------------------------------------------------- learning

// Trains a 2-layer model on Austen for 300 steps with the given products;
// returns the validation loss before and after.
std::pair<double, double> train_on_austen(const TokenDataset& data, kernels::Precision precision) {
  TrainConfig cfg;
  cfg.model.vocab_size = 256;
  cfg.model.seq_len = 64;
  cfg.model.n_layer = 2;
  cfg.model.n_head = 2;
  cfg.model.n_embd = 64;
  cfg.batch.micro_batch = 4;
  cfg.batch.global_batch = 8;
  cfg.batch.matmul.precision = precision;
  cfg.steps = 300;
  cfg.batch.threads = 2;
  // At 3e-3 this model's runs are unstable in either precision: some seeds
  // stall near 2.85 (fp32) or 3.0 (bf16). At 2e-3, four seeds gave bf16
  // within 0.4% of fp32; at 1e-3, within 0.02%.
  cfg.optim.lr = 2e-3f;
  cfg.optim.warmup_steps = 10;
  cfg.eval_batches = 8;
  Trainer trainer(cfg, data, kOneProcess);
  const double initial = trainer.evaluate();
  for (int s = 0; s < cfg.steps; ++s) {
    const bool applied = trainer.train_step(s).applied;
    EXPECT_TRUE(applied) << s;
    if (!applied) break;
  }
  return {initial, trainer.evaluate()};
}

// The model learns the text, in fp32 and in bf16, and bf16's validation
// loss after 300 steps is within 2% of fp32's.
TEST(TrainingSlow, LearnsAustenBelowUnigramEntropyInFp32AndBf16) {
  const auto start = std::chrono::steady_clock::now();
  const TokenDataset data =
      load_text_dataset(std::string(CLLM_SOURCE_DIR) + "/data/austen.txt", 0.1, 64);
  ASSERT_EQ(data.vocab_size, 256);
  std::vector<double> count(256, 0.0);
  for (auto t : data.train) count[t] += 1;
  double unigram = 0;
  for (double c : count)
    if (c > 0) {
      const double p = c / static_cast<double>(data.train.size());
      unigram -= p * std::log(p);
    }

  const auto [initial, fp32] = train_on_austen(data, kernels::Precision::fp32);
  const auto [initial_bf16, bf16] = train_on_austen(data, kernels::Precision::bf16);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("unigram entropy %.4f nats; validation loss %.4f at init, after 300 steps %.4f "
              "(fp32) and %.4f (bf16, %+.2f%%); both runs %.1f s\n",
              unigram, initial, fp32, bf16, 100 * (bf16 - fp32) / fp32, secs);
  EXPECT_NEAR(initial, std::log(256.0), 0.1) << "an untrained model should be near uniform";
  EXPECT_NEAR(initial_bf16, initial, 0.01) << "the same initial model, evaluated in bf16";
  EXPECT_LT(fp32, unigram - 0.3);
  EXPECT_LT(bf16, unigram - 0.3);
  EXPECT_LE(std::abs(bf16 - fp32), 0.02 * fp32);
}

// ---------------------------------------------------------------- schedule

TEST(TrainingSchedule, LearningRateWarmupAndCosine) {
  OptimizerConfig o;
  o.lr = 6e-4f;
  o.min_lr_ratio = 0.1f;
  o.warmup_steps = 10;
  const int total = 100;
  // Linear warm-up: step s gives lr * (s + 1) / warmup.
  EXPECT_FLOAT_EQ(learning_rate(o, 0, total), o.lr / 10);
  for (int s = 0; s < o.warmup_steps; ++s)
    EXPECT_FLOAT_EQ(learning_rate(o, s, total), o.lr * (s + 1) / 10.0f) << s;
  // Peak at the end of warm-up, and the cosine starts from the peak.
  EXPECT_FLOAT_EQ(learning_rate(o, o.warmup_steps - 1, total), o.lr);
  EXPECT_FLOAT_EQ(learning_rate(o, o.warmup_steps, total), o.lr);
  for (int s = 0; s < total; ++s) EXPECT_LE(learning_rate(o, s, total), o.lr) << s;
  // Cosine to lr * min_lr_ratio at the last step.
  EXPECT_NEAR(learning_rate(o, total - 1, total), o.lr * o.min_lr_ratio, 1e-6 * o.lr);
  const float min_lr = o.lr * o.min_lr_ratio;
  for (int s = o.warmup_steps; s < total; ++s) {
    const double progress = static_cast<double>(s - o.warmup_steps) / (total - o.warmup_steps - 1);
    const double want = min_lr + (o.lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
    EXPECT_NEAR(learning_rate(o, s, total), want, 1e-6 * o.lr) << s;
  }
  // Monotone decreasing after warm-up.
  for (int s = o.warmup_steps; s + 1 < total; ++s)
    EXPECT_LT(learning_rate(o, s + 1, total), learning_rate(o, s, total)) << s;
  // Without warm-up the first step already has the peak.
  o.warmup_steps = 0;
  EXPECT_FLOAT_EQ(learning_rate(o, 0, total), o.lr);
  EXPECT_NEAR(learning_rate(o, total - 1, total), min_lr, 1e-6 * o.lr);
}

TEST(TrainingSchedule, StaticBlockCoversEveryMicroBatchOnce) {
  for (int count = 0; count <= 9; ++count)
    for (int n = 1; n <= 9; ++n) {
      std::vector<int> owner(count, -1);
      int next = 0;
      for (int t = 0; t < n; ++t) {
        const Range r = static_block(count, n, t);
        ASSERT_EQ(r.begin, next) << "count " << count << ", " << n << " threads, thread " << t
                                 << ": not contiguous";
        ASSERT_LE(r.begin, r.end);
        // Balanced: the first count % n threads get one more.
        ASSERT_EQ(r.end - r.begin, count / n + (t < count % n ? 1 : 0))
            << "count " << count << ", " << n << " threads, thread " << t;
        for (int m = r.begin; m < r.end; ++m) {
          ASSERT_LT(m, count);
          ASSERT_EQ(owner[m], -1) << "micro-batch " << m << " owned twice";
          owner[m] = t;
        }
        next = r.end;
      }
      ASSERT_EQ(next, count);
      for (int m = 0; m < count; ++m) ASSERT_GE(owner[m], 0) << "micro-batch " << m;
    }
}

// ---------------------------------------------------------------- sampler

// Every window start the first 500 steps of a run draw (25 micro-batches of
// 8 rows each: 100,000 starts) in a split of 10,000 tokens.
constexpr std::uint64_t kSplit = 10000;
constexpr int kT = 16;
std::vector<std::uint64_t> many_training_starts() {
  std::vector<std::uint64_t> starts;
  for (int step = 0; step < 500; ++step)
    for (int m = 0; m < 25; ++m)
      for (int row = 0; row < 8; ++row)
        starts.push_back(training_window_start(kSplit, kT, 1337, step, m, row));
  return starts;
}

TEST(TrainingSampler, TrainingWindowsFitInTheSplit) {
  // A window is T + 1 tokens (inputs and the targets shifted by one), so
  // the last start is n - T - 1.
  for (std::uint64_t s : many_training_starts()) ASSERT_LE(s + kT, kSplit - 1) << s;
  // The smallest splits: one possible window, then two, both drawn.
  for (int step = 0; step < 100; ++step)
    ASSERT_EQ(training_window_start(kT + 1, kT, 5, step, 0, 0), 0u) << step;
  std::set<std::uint64_t> seen;
  for (int step = 0; step < 100; ++step)
    seen.insert(training_window_start(kT + 2, kT, 5, step, 0, 0));
  EXPECT_EQ(seen, (std::set<std::uint64_t>{0, 1}));
}

TEST(TrainingSampler, TrainingWindowStartsAreUniform) {
  // 20 equal buckets of the n - T possible starts, 5,000 draws expected in
  // each: a uniform sampler's counts are within 4% of that (3 standard
  // deviations), and chi-square (19 degrees of freedom, mean 19) stays far
  // below 60. The hash is fixed, so the result is too; the generous bounds
  // (15%, 60) would hold for any other good hash.
  const auto starts = many_training_starts();
  const std::uint64_t n_starts = kSplit - kT;
  const int n_buckets = 20;
  std::vector<double> count(n_buckets, 0.0);
  for (std::uint64_t s : starts)
    count[std::min<std::uint64_t>(s * n_buckets / n_starts, n_buckets - 1)] += 1;
  const double expected = static_cast<double>(starts.size()) / n_buckets;
  double chi2 = 0;
  for (int b = 0; b < n_buckets; ++b) {
    EXPECT_NEAR(count[b], expected, 0.15 * expected) << "bucket " << b << " of " << n_buckets;
    chi2 += (count[b] - expected) * (count[b] - expected) / expected;
  }
  std::printf("window starts: chi-square %.1f over %d buckets\n", chi2, n_buckets);
  EXPECT_LT(chi2, 60.0);
}

TEST(TrainingSampler, TrainingWindowsCoverTheSplit) {
  // Every token, the first and the last included, is in some window: an
  // interior token lies in T + 1 = 17 of the 9,984 possible windows, so a
  // uniform sampler misses it in 100,000 draws with probability e^-170, and
  // misses the first or last token (one window each) with probability e^-10.
  // A sampler that never reaches one end, or draws from a part of the
  // split, leaves tokens out.
  std::vector<bool> covered(kSplit, false);
  for (std::uint64_t s : many_training_starts())
    std::fill_n(covered.begin() + static_cast<std::ptrdiff_t>(s), kT + 1, true);
  const auto missed = std::count(covered.begin(), covered.end(), false);
  EXPECT_EQ(missed, 0) << "tokens in no window; first "
                       << (std::find(covered.begin(), covered.end(), false) - covered.begin());
  EXPECT_TRUE(covered.front());
  EXPECT_TRUE(covered.back());
}

TEST(TrainingSampler, ValidationWindowsAreEvenlySpacedOverTheSplit) {
  struct Case {
    std::uint64_t n;
    std::int64_t windows;
  };
  // Sparse, dense (overlapping) and a single window; the first case is what
  // the trainer does with 8 micro-batches of 4 on a small split.
  for (Case c :
       {Case{10000, 32}, Case{10000, 1000}, Case{100, 7}, Case{kT + 1, 3}, Case{5000, 1}}) {
    SCOPED_TRACE("split of " + std::to_string(c.n) + " tokens, " + std::to_string(c.windows) +
                 " windows");
    const std::uint64_t n_starts = c.n - kT;
    std::vector<std::uint64_t> s;
    for (std::int64_t w = 0; w < c.windows; ++w)
      s.push_back(validation_window_start(c.n, kT, w, c.windows));
    EXPECT_EQ(s.front(), 0u);
    for (std::uint64_t x : s) ASSERT_LE(x + kT, c.n - 1) << "window past the end of the split";
    // Spacing n_starts / windows, rounded down or up: no clumps, no gaps.
    const std::uint64_t lo = n_starts / c.windows, hi = (n_starts + c.windows - 1) / c.windows;
    for (std::size_t w = 1; w < s.size(); ++w) {
      ASSERT_GE(s[w] - s[w - 1], lo) << "windows " << w - 1 << " and " << w;
      ASSERT_LE(s[w] - s[w - 1], hi) << "windows " << w - 1 << " and " << w;
    }
    // They reach across the split: the last ends within one spacing of its end.
    EXPECT_GE(s.back() + kT + hi, c.n - 1) << "last window starts at " << s.back();
  }
}

// ---------------------------------------------------------------- cllm train

TEST(TrainingCli, DivergingRunStopsWithExitCode3) {
  test::TempDir tmp;
  const std::string out = (tmp / "run").string();
  const std::vector<std::string> args =
      test::with(test::one_layer_run(std::string(CLLM_SOURCE_DIR) + "/data/austen.txt", out),
                 {"--lr", "1e30", "--warmup", "0", "--steps", "50", "--max-bad-steps", "3",
                  "--threads", "2", "--log-every", "1"});
  const test::ProcessResult r = test::run_cllm(args, tmp.path());
  EXPECT_EQ(r.exit_code, 3) << test::join(args) << "\nstderr:\n" << r.err;
  const auto lines = test::split_lines(r.err);
  ASSERT_GE(lines.size(), 4u) << r.err;
  const std::regex warning(R"(^cllm: warning: step (\d+): non-finite .*update skipped.*)");
  std::vector<int> warned;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    std::smatch m;
    EXPECT_TRUE(std::regex_match(lines[i], m, warning)) << "unexpected line: " << lines[i];
    if (!m.empty()) warned.push_back(std::stoi(m[1]));
  }
  ASSERT_EQ(warned.size(), 3u) << r.err;
  EXPECT_EQ(warned[1], warned[0] + 1);
  EXPECT_EQ(warned[2], warned[0] + 2);
  EXPECT_TRUE(test::contains(lines.back(), "error")) << lines.back();
  EXPECT_TRUE(test::contains(lines.back(), "stopping at step " + std::to_string(warned[2])))
      << lines.back();

  const std::string metrics = test::read_file(out + "/metrics.jsonl");
  const auto records = test::split_lines(metrics);
  // --log-every 1: one record per step before the one that stops the run, good or bad.
  EXPECT_EQ(records.size(), static_cast<std::size_t>(warned[2] - 1)) << metrics;
  EXPECT_FALSE(test::contains(metrics, "nan")) << metrics;
  EXPECT_FALSE(test::contains(metrics, "inf")) << metrics;
  EXPECT_TRUE(test::contains(metrics, "null")) << "bad steps should log null: " << metrics;
}

}  // namespace
}  // namespace cllm
