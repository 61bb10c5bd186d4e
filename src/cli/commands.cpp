// `cllm train` and `cllm bench`.
#include <omp.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "cllm/blas.h"
#include "cllm/cli.h"
#include "cllm/collective.h"
#include "cllm/comm.h"
#include "cllm/rng.h"
#include "cllm/stop_signal.h"
#include "cllm/text_dataset.h"
#include "cllm/tokenizer.h"
#include "cllm/trainer.h"
#include "cllm/training_run.h"
#include "agreement.h"
#include "config_file.h"
#include "options.h"
#include "subcommands.h"
#include "train_options.h"

namespace cllm {

namespace {

namespace fs = std::filesystem;

struct TrainCommand {
  ModelOptions model;
  BatchOptions batch;
  TrainConfig cfg;
  DataSpec data;
  RunPolicy policy;
};

struct BenchCommand {
  ModelOptions model;
  BatchOptions batch;
  TrainConfig cfg;  // only its --bucket-mb and --check-every
  int steps = 10;
  int warmup = 2;
  bool json = false;
  std::uint64_t seed = 1337;
};

void add_dist_options(CLI::App& app, TrainConfig& t) {
  app.add_option("--bucket-mb", t.bucket_mb,
                 "Gradient allreduce bucket (MiB); one bucket's allreduce overlaps the "
                 "in-rank reduction of the next")
      ->capture_default_str();
  app.add_option("--check-every", t.check_every,
                 "Steps between cross-rank parameter checksums (0: at the end only)")
      ->capture_default_str();
}

void add_train_options(CLI::App& app, TrainCommand& c) {
  c.model.add(app);
  c.batch.add(app, false);
  TrainConfig& t = c.cfg;
  app.add_option("--data", c.data.path,
                 "Training data: an HDF5 dataset from cllm prepare (.h5, .hdf5), or a text file "
                 "(byte-level tokens)")
      ->capture_default_str();
  app.add_option("--val-fraction", c.data.val_fraction,
                 "Tail of a text file held out for validation (datasets carry their own split)")
      ->capture_default_str()
      ->check(real_range(0.0, 0.5));
  app.add_option("--out", c.policy.out, "Output folder: checkpoints and metrics.jsonl")
      ->capture_default_str();
  app.add_option("--checkpoint-every", c.policy.checkpoint_every,
                 "Steps between checkpoints (0: only at the end); one is always written at the "
                 "end and at --stop-at")
      ->capture_default_str();
  app.add_option("--keep", c.policy.keep, "Newest checkpoints kept in --out (0: all)")
      ->capture_default_str();
  app.add_option("--resume", c.policy.resume,
                 "auto: continue from the newest valid checkpoint in --out, if any; none: start "
                 "afresh (refused if --out holds checkpoints); or a checkpoint file")
      ->capture_default_str();
  app.add_option("--stop-at", c.policy.stop_at,
                 "End after this step with a checkpoint, as an interruption would; the "
                 "learning-rate schedule still follows --steps (0: off)")
      ->capture_default_str();
  app.add_option("--steps", t.steps, "Optimizer steps")->capture_default_str();
  app.add_option("--lr", t.optim.lr, "Peak learning rate")->capture_default_str();
  app.add_option("--min-lr-ratio", t.optim.min_lr_ratio,
                 "Cosine decay ends at lr x this ratio")->capture_default_str();
  app.add_option("--warmup", t.optim.warmup_steps, "Linear warm-up steps")->capture_default_str();
  app.add_option("--weight-decay", t.optim.weight_decay,
                 "AdamW weight decay (matrices and embeddings only)")->capture_default_str();
  app.add_option("--grad-clip", t.optim.grad_clip, "Global gradient-norm clip (0: off)")
      ->capture_default_str();
  app.add_option("--seed", t.seed, "Seed of initialisation and data sampling")
      ->capture_default_str();
  app.add_option("--log-every", t.log_every, "Steps between log lines")->capture_default_str();
  app.add_option("--eval-every", t.eval_every, "Steps between validation losses (0: end only)")
      ->capture_default_str();
  app.add_option("--eval-batches", t.eval_batches, "Micro-batches per validation loss")
      ->capture_default_str();
  app.add_option("--max-bad-steps", t.max_bad_steps,
                 "Consecutive non-finite steps (skipped) before the run stops")
      ->capture_default_str();
  app.add_option("--sample-tokens", t.sample_tokens, "Text sampled at the end (0: none)")
      ->capture_default_str();
  add_dist_options(app, t);
}

void add_bench_options(CLI::App& app, BenchCommand& c) {
  c.model.add(app);
  c.batch.derive_global = true;
  c.batch.add(app, true);
  app.add_option("--steps", c.steps, "Timed steps")->capture_default_str();
  app.add_option("--warmup-steps", c.warmup, "Untimed steps first")->capture_default_str();
  app.add_flag("--json", c.json, "Print one JSON object instead of a table");
  app.add_option("--seed", c.seed, "Seed")->capture_default_str();
  add_dist_options(app, c.cfg);
}

double peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

// The BLAS may run kernels far below the CPU's (see cllm/blas.h): say so on
// stderr, with the fix, before a long run goes slowly for no visible reason.
void warn_if_blas_is_slow() {
  const std::string warning = kernels::blas_kernel_warning();
  if (!warning.empty()) std::fprintf(stderr, "cllm: warning: %s\n", warning.c_str());
}

// CPU time (user + system) of this process so far, all threads together.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  const auto seconds = [](const timeval& t) { return t.tv_sec + 1e-6 * t.tv_usec; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// The whole machine's CPU time in /proc/stat's ticks: in all, and stolen by
// the hypervisor (time a virtual CPU wanted to run and the host ran something
// else). Zeros where /proc/stat cannot be read.
struct MachineCpuTicks {
  double total = 0, steal = 0;
};

MachineCpuTicks machine_cpu_ticks() {
  MachineCpuTicks t;
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return t;
  // cpu  user nice system idle iowait irq softirq steal ...
  double v[8] = {};
  if (std::fscanf(f, "cpu %lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4],
                  &v[5], &v[6], &v[7]) == 8) {
    for (double x : v) t.total += x;
    t.steal = v[7];
  }
  std::fclose(f);
  return t;
}

int run_train(TrainCommand& c, const Comm& comm) {
  install_stop_signal_handlers();
  RunEnd end;
  try {
    TrainConfig cfg = c.cfg;
    collectively(comm, [&] {
      c.batch.apply(cfg, comm.size());
      cfg.model = c.model.resolve(ByteTokenizer::kVocabSize);
    });
    TrainingRun run(cfg, c.policy, c.data, comm);
    end = run.run();
  } catch (const CollectiveFailure& failure) {
    return report(comm, failure);
  }
  // Every rank returns the same code; rank 0 says why.
  const bool root = comm.is_root();
  switch (end.why) {
    case RunEnd::Why::completed:
    case RunEnd::Why::nothing_to_do: return kExitOk;
    case RunEnd::Why::stop_at:
      if (root)
        std::printf("stopped after step %lld of %d (--stop-at); the same command with --resume "
                  "auto continues\n",
                  static_cast<long long>(end.step), c.cfg.steps);
      return kExitOk;
    case RunEnd::Why::diverged:
      if (root)
        std::fprintf(stderr,
                   "cllm: error: stopping at step %lld after %d non-finite steps in a row; "
                   "parameters are those of the last good step (try a lower --lr)\n",
                   static_cast<long long>(end.step), end.bad_steps);
      return kExitDiverged;
    case RunEnd::Why::interrupted:
      if (root)
        std::printf("stopped after step %lld of %d by %s; the same command continues from the "
                  "checkpoint (exit code %d)\n",
                  static_cast<long long>(end.step), c.cfg.steps,
                  end.signal == SIGUSR1   ? "SIGUSR1"
                  : end.signal == SIGTERM ? "SIGTERM"
                  : end.signal == SIGINT  ? "SIGINT"
                                          : "a signal to another rank",
                  kExitInterrupted);
      return kExitInterrupted;
  }
  return kExitError;
}

int run_bench(BenchCommand& c, const Comm& comm) {
  TrainConfig& cfg = c.cfg;
  TokenDataset data;
  std::unique_ptr<Trainer> trainer;
  if (auto code = agree_on_setup(comm, [&] {
        c.batch.apply(cfg, comm.size());
        cfg.model = c.model.resolve(ByteTokenizer::kVocabSize);
        cfg.steps = c.warmup + c.steps;
        cfg.seed = c.seed;
        cfg.optim.warmup_steps = 0;
        cfg.validate();
        if (c.steps <= 0) throw std::invalid_argument("--steps must be positive");
        if (c.warmup < 0) throw std::invalid_argument("--warmup-steps must not be negative");
        // Random tokens: speed does not depend on the text.
        data.vocab_size = cfg.model.vocab_size;
        data.source = "random tokens";
        Rng rng(c.seed);
        data.train.resize(1 << 20);
        for (auto& t : data.train) t = static_cast<std::int32_t>(rng.next_u64() % data.vocab_size);
        data.val.assign(data.train.begin(), data.train.begin() + 4 * cfg.model.seq_len);
        trainer = std::make_unique<Trainer>(cfg, data, comm);
      }))
    return *code;
  if (comm.is_root()) warn_if_blas_is_slow();
  StepResult sum;
  double cpu_at_start = 0;
  MachineCpuTicks machine_at_start;
  for (int s = 0; s < cfg.steps; ++s) {
    if (s == c.warmup) {
      cpu_at_start = process_cpu_seconds();
      machine_at_start = machine_cpu_ticks();
    }
    const StepResult r = trainer->train_step(s);
    if (s < c.warmup) continue;
    sum.t_data += r.t_data;
    sum.t_matmul += r.t_matmul;
    sum.t_attention += r.t_attention;
    sum.t_waiting += r.t_waiting;
    sum.t_forward_backward += r.t_forward_backward;
    sum.t_reduce += r.t_reduce;
    sum.t_allreduce += r.t_allreduce;
    sum.t_optimizer += r.t_optimizer;
    sum.t_total += r.t_total;
  }
  const double step_s = sum.t_total / c.steps;
  const double tokens_per_s = static_cast<double>(cfg.tokens_per_step()) / step_s;
  const double gflops = cfg.model.flops_per_token() * tokens_per_s / 1e9;
  // The share of this rank's cores that were busy (OpenMP threads that spin
  // while they wait count as busy, as in top).
  const double cpu_busy = (process_cpu_seconds() - cpu_at_start) / (sum.t_total * cfg.threads);
  // On a shared virtual machine, stolen time is why a run may be slower than
  // its cores allow, and why it varies from run to run.
  const MachineCpuTicks machine_at_end = machine_cpu_ticks();
  const double ticks = machine_at_end.total - machine_at_start.total;
  const double cpu_steal = ticks > 0 ? (machine_at_end.steal - machine_at_start.steal) / ticks : 0;
  const ModelConfig& m = cfg.model;
  const auto frac = [&](double t) { return t / sum.t_total; };
  const double other_kernels =
      sum.t_forward_backward - sum.t_matmul - sum.t_attention - sum.t_waiting;
  if (!comm.is_root()) return kExitOk;
  if (c.json) {
    std::printf(
        "{\"preset\": \"%s\", \"layers\": %d, \"heads\": %d, \"embd\": %d, \"seq_len\": %d, "
        "\"vocab\": %d, \"params\": %zu, \"ranks\": %d, \"threads\": %d, \"micro_batch\": %d, "
        "\"global_batch\": %d, \"steps\": %d, \"tokens_per_s\": %.1f, \"ms_per_step\": %.3f, "
        "\"gflops\": %.2f, \"flops_per_token\": %.0f, \"thread_context_bytes\": %zu, "
        "\"peak_rss_bytes\": %.0f, \"cpu_busy\": %.3f, \"cpu_steal\": %.3f, \"blas\": \"%s\", "
        "\"time_split\": {\"data\": %.4f, \"forward_backward\": %.4f, \"matmul\": %.4f, "
        "\"attention\": %.4f, \"waiting\": %.4f, \"other_forward_backward\": %.4f, "
        "\"thread_reduce\": %.4f, \"allreduce\": %.4f, \"optimizer\": %.4f}}\n",
        c.model.preset.c_str(), m.n_layer, m.n_head, m.n_embd, m.seq_len, m.vocab_size,
        trainer->model().layout().numel(), comm.size(), cfg.threads, cfg.micro_batch,
        cfg.global_batch, c.steps, tokens_per_s, 1000 * step_s, gflops, m.flops_per_token(),
        trainer->thread_context_bytes(), peak_rss_bytes(), cpu_busy, cpu_steal,
        kernels::blas_name().c_str(), frac(sum.t_data),
        frac(sum.t_forward_backward), frac(sum.t_matmul), frac(sum.t_attention),
        frac(sum.t_waiting), frac(other_kernels), frac(sum.t_reduce), frac(sum.t_allreduce),
        frac(sum.t_optimizer));
  } else {
    std::printf("model       %d layers, %d heads, %d wide, seq %d: %zu parameters\n", m.n_layer,
                m.n_head, m.n_embd, m.seq_len, trainer->model().layout().numel());
    std::printf("layout      %d rank(s) x %d thread(s); %d sequences/step in micro-batches of %d\n",
                comm.size(), cfg.threads, cfg.global_batch, cfg.micro_batch);
    std::printf("throughput  %.0f tokens/s, %.1f ms/step, %.1f GFLOP/s; CPU %.0f%% busy; "
                "hypervisor steal %.0f%%\n",
                tokens_per_s, 1000 * step_s, gflops, 100 * cpu_busy, 100 * cpu_steal);
    std::printf("time split  data %.1f%%, forward+backward %.1f%% (matmul %.1f%%, attention "
                "%.1f%%, waiting for other threads %.1f%%, other kernels %.1f%%), "
                "thread reduce %.1f%%, allreduce %.1f%%, optimizer %.1f%%\n",
                100 * frac(sum.t_data), 100 * frac(sum.t_forward_backward),
                100 * frac(sum.t_matmul), 100 * frac(sum.t_attention),
                100 * frac(sum.t_waiting), 100 * frac(other_kernels),
                100 * frac(sum.t_reduce), 100 * frac(sum.t_allreduce),
                100 * frac(sum.t_optimizer));
    std::printf("memory      %.1f MiB per thread context, peak RSS %.1f MiB\n",
                trainer->thread_context_bytes() / 1048576.0, peak_rss_bytes() / 1048576.0);
    std::printf("blas        %s\n", kernels::blas_name().c_str());
  }
  return kExitOk;
}

}  // namespace

int run_cli(int argc, char** argv, [[maybe_unused]] const MpiEnvironment& mpi) {
  constexpr const char* kAbout = "cllm: train GPT-style language models on CPU clusters (MPI + OpenMP)";
  constexpr const char* kTrainAbout = "Train a model on a text corpus";
  constexpr const char* kBenchAbout = "Measure training throughput";
  constexpr const char* kPrepareAbout = "Turn text files into an HDF5 token dataset";
  constexpr const char* kGenerateAbout = "Sample text from a checkpoint";
  constexpr const char* kConfigHelp =
      "Read options from a TOML file: one 'name = value' per option, the long name "
      "without its leading dashes (micro-batch = 8); command-line options win";
  const std::string command = argc > 1 ? argv[1] : "";
  // Every rank takes part in each agreement below, whatever its arguments
  // (MPMD launches may give ranks different ones).
  const Comm world = Comm::duplicate(MPI_COMM_WORLD);
  // Each subcommand parses as a top-level app of its own: CLI11 2.1 reads a
  // --config file only for the top-level app, not for a subcommand.
  auto run_subcommand = [&](const char* about, auto& command_options, auto add_options,
                            auto run) {
    CLI::App app{about, "cllm " + command};
    add_config_option(app, kConfigHelp);
    add_options(app, command_options);
    if (auto code = agree(world, parse(app, argc - 1, argv + 1))) return *code;
    return run(command_options, world);
  };
  if (command == "train") {
    TrainCommand train;
    return run_subcommand(kTrainAbout, train, add_train_options, run_train);
  }
  if (command == "bench") {
    BenchCommand bench;
    return run_subcommand(kBenchAbout, bench, add_bench_options, run_bench);
  }
  if (command == "prepare") {
    PrepareCommand prepare;
    return run_subcommand(kPrepareAbout, prepare, add_prepare_options, run_prepare);
  }
  if (command == "generate") {
    GenerateCommand gen;
    return run_subcommand(kGenerateAbout, gen, add_generate_options, run_generate);
  }
  // No or an unknown subcommand: the top-level app lists the subcommands.
  CLI::App app{kAbout, "cllm"};
  app.require_subcommand(1);
  app.add_subcommand("prepare", std::string(kPrepareAbout) + " (cllm prepare --help)");
  app.add_subcommand("train", std::string(kTrainAbout) + " (cllm train --help)");
  app.add_subcommand("generate", std::string(kGenerateAbout) + " (cllm generate --help)");
  app.add_subcommand("bench", std::string(kBenchAbout) + " (cllm bench --help)");
  std::optional<Stop> stop = parse(app, argc, argv);
  if (!stop)
    stop = Stop{kExitUsage,
                "cllm: error: a subcommand is required: prepare, train, generate or bench\n"};
  return *agree(world, stop);
}

TrainConfig parse_train_options(std::vector<std::string> args) {
  TrainCommand c;
  CLI::App app{"Train a model on a text corpus", "cllm train"};
  add_config_option(app, "Read options from a TOML file");
  add_train_options(app, c);
  std::reverse(args.begin(), args.end());  // CLI11 takes the last argument first
  app.parse(args);
  c.batch.apply(c.cfg, 1);
  c.cfg.model = c.model.resolve(ByteTokenizer::kVocabSize);
  c.cfg.validate(1);
  return c.cfg;
}

}  // namespace cllm
