#include "cllm/app/benchmark.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cllm/base/setting_error.h"
#include "cllm/data/text_dataset.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/trace_file.h"
#include "cllm/io/dataset_file.h"
#include "cllm/kernels/blas.h"
#include "cllm/kernels/rng.h"
#include "cllm/train/cpu_usage.h"
#include "cllm/train/memory_plan.h"
#include "cllm/train/report_format.h"

namespace cllm {

void BenchmarkConfig::validate() const {
  require_setting(steps > 0, "{steps} must be positive");
  require_setting(warmup_steps >= 0, "{warmup_steps} must not be negative");
  require_setting(data.empty() || !vocab, "{vocab} is the dataset's when {data} is given: give one of them");
  require_setting(std::isfinite(trace_max_mb) && trace_max_mb > 0, "{trace_max_mb} must be positive");
}

BenchmarkResult benchmark_training(TrainConfig config, const BenchmarkConfig& bench,
                                   const Comm& comm) {
  TokenDataset random;
  TrainingData file;
  std::unique_ptr<Trainer> trainer;
  Timeline timeline;
  collectively(comm, [&] {
    config.steps = bench.warmup_steps + bench.steps;
    config.optim.warmup_steps = 0;
    bench.validate();
    if (comm.is_root() && !bench.trace.empty())
      check_trace_path(bench.trace, "", {{"data", bench.data}});
    if (!bench.data.empty()) {
      file = open_training_data(DataConfig{bench.data}, config.model.seq_len);
      config.model.vocab_size = file.source->vocab();
    }
    config.validate();
    check_memory(training_memory(config, comm.size()), memory_limit());
    if (!file.source) {
      random.vocab_size = config.model.vocab_size;
      random.source = "random tokens";
      Rng rng(config.seed);
      random.train.resize(1 << 20);
      for (auto& t : random.train) t = static_cast<std::int32_t>(rng.next_u64() % random.vocab_size);
      random.val.assign(random.train.begin(), random.train.begin() + 4 * config.model.seq_len);
    }
    trainer = std::make_unique<Trainer>(config, file.source ? *file.source : random, comm);
    if (!bench.trace.empty())
      timeline = Timeline(bench.trace, bench.trace_max_mb, config.batch.threads, comm, option_name);
  });
  if (comm.is_root()) warn_about_matmul(config.batch.matmul);
  timeline.start(comm);
  trainer->trace_into(&timeline);
  BenchmarkResult result =
      run_benchmark(*trainer, comm, bench.warmup_steps, bench.steps, &timeline);
  timeline.flush(comm, bench.warmup_steps + bench.steps);
  return result;
}

BenchmarkResult run_benchmark(Trainer& trainer, const Comm& comm, int warmup_steps,
                              int timed_steps, Timeline* timeline) {
  const TrainConfig& cfg = trainer.config();
  StepSeconds sum;
  double cpu_at_start = 0;
  MachineCpuTicks machine_at_start;
  for (int s = 0; s < warmup_steps + timed_steps; ++s) {
    if (s == warmup_steps) {
      cpu_at_start = process_cpu_seconds();
      machine_at_start = machine_cpu_ticks();
    }
    const StepResult r = trainer.train_step(s);
    const std::vector<CollectiveWait> waits = comm.take_waits();
    if (timeline) {
      timeline->waits(waits);
      timeline->step_done(comm, s + 1);
    }
    if (s < warmup_steps) continue;
    sum += r.seconds;
  }
  BenchmarkResult b;
  b.model = cfg.model;
  b.params = trainer.model().layout().numel();
  b.ranks = comm.size();
  b.threads = cfg.batch.threads;
  b.micro_batch = cfg.batch.micro_batch;
  b.global_batch = cfg.batch.global_batch;
  b.recompute = cfg.batch.recompute;
  b.steps = timed_steps;
  const double step_s = sum.total / timed_steps;
  b.ms_per_step = 1000 * step_s;
  b.overlap = cfg.batch.overlap;
  const std::vector<double> exposed =
      comm.all_gather(1000 * sum.allreduce / timed_steps, Collective::log);
  b.comm_exposed_ms = std::accumulate(exposed.begin(), exposed.end(), 0.0) / exposed.size();
  b.comm_exposed_min_ms = *std::min_element(exposed.begin(), exposed.end());
  b.comm_exposed_max_ms = *std::max_element(exposed.begin(), exposed.end());
  b.tokens_per_s = static_cast<double>(cfg.tokens_per_step()) / step_s;
  b.flops_per_token = cfg.model.flops_per_token();
  b.gflops = b.flops_per_token * b.tokens_per_s / 1e9;
  b.cpu_busy = (process_cpu_seconds() - cpu_at_start) / (sum.total * cfg.batch.threads);
  // On a shared virtual machine, stolen time is why a run may be slower than
  // its cores allow, and why it varies from run to run.
  const MachineCpuTicks machine_at_end = machine_cpu_ticks();
  const double ticks = machine_at_end.total - machine_at_start.total;
  b.cpu_steal = ticks > 0 ? (machine_at_end.steal - machine_at_start.steal) / ticks : 0;
  b.thread_context_bytes = trainer.thread_context_bytes();
  b.peak_rss_bytes = peak_rss_bytes();
  b.matmul = kernels::matmul_engine_name(cfg.batch.matmul.engine);
  b.precision = cfg.batch.matmul.precision;
  b.timed_seconds = sum;
  return b;
}

namespace {

// "data 1.0%, forward+backward 90.0% (matrix products 60.0%, ...), thread
// reduce 2.0%, ...": every phase's share, the parts of forward+backward in
// its parentheses.
std::string time_split_text(const StepSeconds& s) {
  std::string text;
  bool inside = false;
  for (const StepPhase& phase : step_phases()) {
    const char* separator = text.empty() ? "" : phase.in_forward_backward && !inside ? " (" : ", ";
    if (inside && !phase.in_forward_backward) separator = "), ";
    inside = phase.in_forward_backward;
    text += printf_string("%s%s %.1f%%", separator, phase.label, 100 * phase.seconds(s) / s.total);
  }
  return text + (inside ? ")" : "");
}

}  // namespace

std::string bench_table(const BenchmarkResult& r) {
  const ModelConfig& m = r.model;
  return printf_string("model       %d layers, %d heads, %d wide, seq %d: %zu parameters\n",
                       m.n_layer, m.n_head, m.n_embd, m.seq_len, r.params) +
         printf_string("layout      %d rank(s) x %d thread(s); %d sequences/step in micro-batches "
                       "of %d; recompute %s\n",
                       r.ranks, r.threads, r.global_batch, r.micro_batch,
                       r.recompute == Recompute::block ? "block" : "none") +
         printf_string("throughput  %.0f tokens/s, %.1f ms/step, %.1f GFLOP/s; CPU %.0f%% busy; "
                       "hypervisor steal %.0f%%\n",
                       r.tokens_per_s, r.ms_per_step, r.gflops, 100 * r.cpu_busy,
                       100 * r.cpu_steal) +
         "time split  " + time_split_text(r.timed_seconds) + "\n" +
         printf_string("allreduce   overlap %s: %.1f ms/step exposed after backward",
                       r.overlap == Overlap::on ? "on" : "off", r.comm_exposed_ms) +
         (r.ranks > 1 ? printf_string(" (mean of the ranks; one rank %.1f to %.1f)",
                                      r.comm_exposed_min_ms, r.comm_exposed_max_ms)
                      : std::string()) +
         "\n" +
         printf_string("memory      %.1f MiB per thread context, peak RSS %.1f MiB\n",
                       r.thread_context_bytes / 1048576.0, r.peak_rss_bytes / 1048576.0) +
         printf_string("matmul      %s, %s\n", r.matmul.c_str(), kernels::to_string(r.precision));
}

std::string bench_json(const BenchmarkResult& r) {
  // Digits a reader can use, no more: counts as integers, speeds to 0.1
  // token/s, 1 us and 0.01 GFLOP/s, CPU shares to 0.1%, the time split to
  // 0.01%.
  const auto whole = [](double v) -> nlohmann::ordered_json {
    if (!std::isfinite(v)) return nullptr;
    return std::llround(v);
  };
  nlohmann::ordered_json split;
  for (const StepPhase& phase : step_phases())
    split[phase.key] = json_number(phase.seconds(r.timed_seconds) / r.timed_seconds.total, "%.4f");
  nlohmann::ordered_json j;
  j["preset"] = r.preset;
  j["layers"] = r.model.n_layer;
  j["heads"] = r.model.n_head;
  j["embd"] = r.model.n_embd;
  j["seq_len"] = r.model.seq_len;
  j["vocab"] = r.model.vocab_size;
  j["params"] = r.params;
  j["ranks"] = r.ranks;
  j["threads"] = r.threads;
  j["micro_batch"] = r.micro_batch;
  j["global_batch"] = r.global_batch;
  j["recompute"] = r.recompute == Recompute::block ? "block" : "none";
  j["steps"] = r.steps;
  j["tokens_per_s"] = json_number(r.tokens_per_s, "%.1f");
  j["ms_per_step"] = json_number(r.ms_per_step, "%.3f");
  j["gflops"] = json_number(r.gflops, "%.2f");
  j["overlap"] = r.overlap == Overlap::on ? "on" : "off";
  j["comm_exposed_ms"] = json_number(r.comm_exposed_ms, "%.3f");
  j["comm_exposed_min_ms"] = json_number(r.comm_exposed_min_ms, "%.3f");
  j["comm_exposed_max_ms"] = json_number(r.comm_exposed_max_ms, "%.3f");
  j["flops_per_token"] = whole(r.flops_per_token);
  j["thread_context_bytes"] = r.thread_context_bytes;
  j["peak_rss_bytes"] = whole(r.peak_rss_bytes);
  j["cpu_busy"] = json_number(r.cpu_busy, "%.3f");
  j["cpu_steal"] = json_number(r.cpu_steal, "%.3f");
  j["matmul"] = r.matmul;
  j["precision"] = kernels::to_string(r.precision);
  j["time_split"] = std::move(split);
  return j.dump() + "\n";
}

std::string bench_command(const TrainRunConfig& settings, BenchmarkConfig bench, const Comm& comm) {
  TrainConfig config = settings.config;
  collectively(comm, [&] { config.model = settings.shape.resolve(); });
  config.model.vocab_size = bench.vocab.value_or(config.model.vocab_size);
  bench.trace = settings.policy.trace;
  bench.trace_max_mb = settings.policy.trace_max_mb;
  BenchmarkResult result = benchmark_training(config, bench, comm);
  result.preset = settings.shape.preset_name();
  return !comm.is_root() ? "" : bench.json ? bench_json(result) : bench_table(result);
}

}  // namespace cllm
