// `cllm train` and `cllm bench`.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"
#include "cllm/train/benchmark.h"
#include "cllm/train/stop_signal.h"
#include "cllm/train/training_run.h"
#include "agreement.h"
#include "config_file.h"
#include "options.h"
#include "subcommands.h"
#include "train_options.h"

namespace cllm {

namespace {

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
  TrainConfig cfg;
  BenchmarkConfig bench;
  RunPolicy policy;  // only --check-every, accepted as train does (a benchmark checks nothing)
  bool json = false;
};

void add_dist_options(CLI::App& app, BatchConfig& batch, RunPolicy& policy) {
  app.add_option("--bucket-mb", batch.bucket_mb,
                 "Gradient allreduce bucket (MiB); one bucket's allreduce overlaps the "
                 "in-rank reduction of the next")
      ->capture_default_str();
  app.add_option("--check-every", policy.check_every,
                 "Steps between cross-rank parameter checksums (0: at the end only)")
      ->capture_default_str();
}

void add_train_options(CLI::App& app, TrainCommand& c) {
  c.model.add(app);
  TrainConfig& t = c.cfg;
  c.batch.add(app, t.batch, false);
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
  app.add_option("--log-every", c.policy.log_every, "Steps between log lines")->capture_default_str();
  app.add_option("--eval-every", c.policy.eval_every, "Steps between validation losses (0: end only)")
      ->capture_default_str();
  app.add_option("--eval-batches", t.eval_batches, "Micro-batches per validation loss")
      ->capture_default_str();
  app.add_option("--max-bad-steps", c.policy.max_bad_steps,
                 "Consecutive non-finite steps (skipped) before the run stops")
      ->capture_default_str();
  app.add_option("--sample-tokens", c.policy.sample_tokens, "Text sampled at the end (0: none)")
      ->capture_default_str();
  add_dist_options(app, t.batch, c.policy);
}

void add_bench_options(CLI::App& app, BenchCommand& c) {
  c.model.add(app);
  c.batch.add(app, c.cfg.batch, true);
  app.add_option("--steps", c.bench.steps, "Timed steps")->capture_default_str();
  app.add_option("--warmup-steps", c.bench.warmup_steps, "Untimed steps first")
      ->capture_default_str();
  app.add_flag("--json", c.json, "Print one JSON object instead of a table");
  app.add_option("--seed", c.cfg.seed, "Seed")->capture_default_str();
  add_dist_options(app, c.cfg.batch, c.policy);
}

int run_train(TrainCommand& c, const Comm& comm) {
  install_stop_signal_handlers();
  RunEnd end;
  try {
    TrainConfig cfg;
    collectively(comm, [&] { cfg = with_options(c.cfg, c.model, c.batch, comm.size()); });
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
  try {
    TrainConfig cfg;
    collectively(comm, [&] { cfg = with_options(c.cfg, c.model, c.batch, comm.size()); });
    BenchmarkResult result = benchmark_training(cfg, c.bench, comm);
    if (comm.is_root()) {
      result.preset = c.model.preset;
      std::fputs((c.json ? bench_json(result) : bench_table(result)).c_str(), stdout);
    }
    return kExitOk;
  } catch (const CollectiveFailure& failure) {
    return report(comm, failure);
  }
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
  const Comm world = Comm::world();
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
    PrepareSpec prepare;
    return run_subcommand(kPrepareAbout, prepare, add_prepare_options, run_prepare);
  }
  if (command == "generate") {
    GenerateSpec gen;
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
  const TrainConfig cfg = with_options(c.cfg, c.model, c.batch, 1);
  cfg.validate(1);
  c.policy.validate();
  return cfg;
}

}  // namespace cllm
