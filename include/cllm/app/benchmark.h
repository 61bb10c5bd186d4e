// Training throughput, as cllm bench measures it: untimed warm-up steps, then
// timed steps on a Trainer, and the figures of the timed ones - speed, where
// a step's time goes, how busy the CPUs were, memory - as a table or as one
// JSON object.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "cllm/dist/comm.h"
#include "cllm/train/step_seconds.h"
#include "cllm/train/train_config.h"
#include "cllm/train/train_settings.h"
#include "cllm/train/trainer.h"

namespace cllm {

struct BenchmarkResult {
  std::string preset;  // the model's named shape, as the caller gave it (the JSON's "preset")
  ModelConfig model;
  std::size_t params = 0;
  int ranks = 0, threads = 0, micro_batch = 0, global_batch = 0;
  Recompute recompute = Recompute::none;
  int steps = 0;  // timed
  Overlap overlap = Overlap::on;
  double tokens_per_s = 0, ms_per_step = 0, gflops = 0, flops_per_token = 0;
  // Milliseconds a step waited for the gradient allreduce after its threads
  // were done: the communication backward did not hide. The mean over ranks,
  // and the least and most of one rank: a rank that ends backward first also
  // waits for the others to end theirs, so the spread is the ranks' skew.
  double comm_exposed_ms = 0, comm_exposed_min_ms = 0, comm_exposed_max_ms = 0;
  std::size_t thread_context_bytes = 0;
  double peak_rss_bytes = 0;
  // The share of this rank's cores that were busy (OpenMP threads that spin
  // while they wait count as busy, as in top), and of the whole machine's
  // CPU time stolen by a hypervisor.
  double cpu_busy = 0, cpu_steal = 0;
  std::string matmul;  // kernels::matmul_engine_name(): the engine and its kernels
  kernels::Precision precision = kernels::Precision::fp32;
  StepSeconds timed_seconds;  // summed over the timed steps: their split (step_seconds.h)
};

// How long cllm bench measures.
struct BenchmarkConfig {
  int steps = 10;        // timed
  int warmup_steps = 2;  // untimed, first
  std::string trace;     // Chrome trace file of every step's timeline (empty: off)
  double trace_max_mb = 1024;  // the trace file's bound
  std::optional<int> vocab;  // the model's vocabulary [default: the byte tokenizer's]
  // A dataset (or text) to read the windows from, as training does: the
  // data phase as a run on it has it. Empty: random tokens in memory.
  std::string data;
  bool json = false;         // cllm bench's report: one JSON object, not a table
  // Throws SettingError naming the setting (setting_error.h).
  void validate() const;
};

// cllm bench: a Trainer of config's model and batch over random tokens (the
// speed does not depend on the text) or bench.data's windows (the model's
// vocabulary then its), with a constant learning rate, run
// for bench's steps. Collective: a failure on any rank throws
// CollectiveFailure on every rank (collective.h).
BenchmarkResult benchmark_training(TrainConfig config, const BenchmarkConfig& bench,
                                   const Comm& comm);

// Runs steps 0 .. warmup_steps - 1 of trainer's run untimed, then
// timed_steps more, and returns this rank's figures for the timed ones.
// Collective: every rank of comm (the trainer's) calls it. The timeline, when
// given, gets the waits of every step.
BenchmarkResult run_benchmark(Trainer& trainer, const Comm& comm, int warmup_steps,
                              int timed_steps, Timeline* timeline = nullptr);

// The figures as cllm bench prints them: a table of seven lines, or one line
// of JSON (the keys in the order of the struct, time_split nested); both end
// with a newline.
std::string bench_table(const BenchmarkResult& r);
std::string bench_json(const BenchmarkResult& r);

// cllm bench: benchmark_training of the settings' model (shape resolved,
// bench's vocabulary) and batch, tracing to their --trace; returns what rank
// 0 prints (bench_table or bench_json, "" on the others).
std::string bench_command(const TrainRunConfig& settings, BenchmarkConfig bench, const Comm& comm);

}  // namespace cllm
