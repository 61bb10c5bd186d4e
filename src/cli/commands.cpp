// `cllm train` and `cllm bench`.
#include <omp.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "cllm/cli.h"
#include "cllm/comm.h"
#include "cllm/generate.h"
#include "cllm/metrics.h"
#include "cllm/rng.h"
#include "cllm/text_dataset.h"
#include "cllm/trainer.h"
#include "options.h"

namespace cllm {

namespace {

namespace fs = std::filesystem;

struct TrainCommand {
  ModelOptions model;
  BatchOptions batch;
  TrainConfig cfg;
  std::string data = "data/austen.txt";
  std::string out = "runs/default";
  double val_fraction = 0.1;
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
  app.add_option("--data", c.data, "Training text (byte-level tokens)")->capture_default_str();
  app.add_option("--val-fraction", c.val_fraction, "Tail of the data held out for validation")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  app.add_option("--out", c.out, "Output folder (metrics.jsonl)")->capture_default_str();
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

// CPU time (user + system) of this process so far, all threads together.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  const auto seconds = [](const timeval& t) { return t.tv_sec + 1e-6 * t.tv_usec; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// Why this rank stops before training (a bad option, a file it cannot read,
// memory it cannot get, or --help), and what it would print.
struct Stop {
  int code = kExitError;
  std::string text;  // printed as is
  std::FILE* stream = stderr;
};

// Every rank calls this at the same points with its own outcome. If any rank
// stops, all return the lowest stopping rank's exit code and that rank alone
// prints its text: the reason appears once, and no rank is left waiting in a
// collective for one that has gone.
std::optional<int> agree(const Comm& comm, const std::optional<Stop>& mine) {
  const std::vector<std::uint64_t> codes =
      comm.all_gather(mine ? static_cast<std::uint64_t>(mine->code) + 1 : 0);
  const auto first = std::find_if(codes.begin(), codes.end(), [](auto c) { return c != 0; });
  if (first == codes.end()) return std::nullopt;
  if (first - codes.begin() == comm.rank()) {
    std::fputs(mine->text.c_str(), mine->stream);
    std::fflush(mine->stream);
  }
  return static_cast<int>(*first - 1);
}

std::string error_line(const Comm& comm, const std::string& what) {
  return "cllm: error: " + (comm.size() > 1 ? "rank " + std::to_string(comm.rank()) + ": " : "") +
         what + "\n";
}

// Runs setup, which may fail on some ranks only, and agrees on the outcome.
std::optional<int> agree_on_setup(const Comm& comm, auto&& setup) {
  std::optional<Stop> stop;
  try {
    setup();
  } catch (const std::invalid_argument& e) {
    stop = Stop{kExitUsage, error_line(comm, e.what())};
  } catch (const std::exception& e) {
    stop = Stop{kExitError, error_line(comm, e.what())};
  }
  return agree(comm, stop);
}

int run_train(TrainCommand& c, const Comm& comm) {
  TrainConfig& cfg = c.cfg;
  const bool root = comm.is_root();
  TokenDataset data;
  std::optional<MetricsFile> metrics;  // rank 0 only
  std::unique_ptr<Trainer> trainer;
  if (auto code = agree_on_setup(comm, [&] {
        c.batch.apply(cfg, comm.size());
        cfg.model = c.model.resolve(ByteTokenizer::kVocabSize);
        cfg.validate();  // options first, so a bad option is named before the data is read
        data = load_text_dataset(c.data, c.val_fraction, cfg.model.seq_len);
        cfg.model.vocab_size = data.vocab_size;
        if (root) {
          std::error_code ec;
          fs::create_directories(c.out, ec);
          if (ec) throw std::runtime_error(c.out + ": cannot create output folder: " + ec.message());
          metrics.emplace(fs::path(c.out) / "metrics.jsonl");
        }
        trainer = std::make_unique<Trainer>(cfg, data, comm);
      }))
    return *code;

  const ModelConfig& m = cfg.model;
  if (root) {
    std::printf("cllm train: %s (%zu train / %zu val tokens), out %s\n", data.source.c_str(),
                data.train.size(), data.val.size(), c.out.c_str());
    std::printf("model: %d layers, %d heads, %d wide, seq %d, vocab %d: %zu parameters\n",
                m.n_layer, m.n_head, m.n_embd, m.seq_len, m.vocab_size,
                trainer->model().layout().numel());
    std::printf("batch: %d sequences/step = %d micro-batches of %d over %d rank(s) x %d "
                "thread(s); %.1f MiB per thread context\n",
                cfg.global_batch, cfg.micro_batches_per_step(), cfg.micro_batch, comm.size(),
                cfg.threads, trainer->thread_context_bytes() / 1048576.0);
    std::fflush(stdout);
  }

  int bad_in_a_row = 0;
  double interval_s = 0, total_s = 0;
  int interval_steps = 0;
  for (int step = 0; step < cfg.steps; ++step) {
    const StepResult r = trainer->train_step(step);
    interval_s += r.t_total;
    total_s += r.t_total;
    ++interval_steps;
    if (!r.applied) {  // every rank sees the same loss and norm, so decides alike
      ++bad_in_a_row;
      if (root)
        std::fprintf(stderr,
                   "cllm: warning: step %d: non-finite %s (loss %g, grad norm %g); update "
                   "skipped (%d of --max-bad-steps %d in a row)\n",
                   step + 1, std::isfinite(r.loss) && std::isfinite(r.grad_norm) ? "update" :
                   std::isfinite(r.loss) ? "gradient norm" : "loss",
                   r.loss, r.grad_norm, bad_in_a_row, cfg.max_bad_steps);
      if (bad_in_a_row >= cfg.max_bad_steps) {
        if (root)
          std::fprintf(stderr,
                     "cllm: error: stopping at step %d after %d non-finite steps in a row; "
                     "parameters are those of the last good step (try a lower --lr)\n",
                     step + 1, bad_in_a_row);
        return kExitDiverged;
      }
    } else {
      bad_in_a_row = 0;
    }
    const int done = step + 1;
    const bool last = done == cfg.steps;
    if (last || (cfg.check_every > 0 && done % cfg.check_every == 0))
      trainer->check_replicas(done);
    const bool eval = last || (cfg.eval_every > 0 && done % cfg.eval_every == 0);
    if (done % cfg.log_every == 0 || last || eval) {
      LogRecord rec;
      rec.step = done;
      rec.total_steps = cfg.steps;
      rec.loss = r.loss;
      rec.lr = r.lr;
      rec.grad_norm = r.grad_norm;
      rec.ms_per_step = 1000.0 * interval_s / interval_steps;
      rec.tokens_per_s = static_cast<double>(cfg.tokens_per_step()) * interval_steps / interval_s;
      rec.eta_s = total_s / done * (cfg.steps - done);
      if (eval) rec.val_loss = trainer->evaluate();
      if (root) {
        std::printf("%s\n", format_log_line(rec).c_str());
        std::fflush(stdout);
        metrics->write(rec);
      }
      interval_s = 0;
      interval_steps = 0;
      if (last && root)
        std::printf("final validation loss %.4f; parameter checksum %016llx, the same on all %d "
                    "rank(s)\n",
                    *rec.val_loss,
                    static_cast<unsigned long long>(checksum(trainer->model().params())),
                    comm.size());
    }
  }
  if (root && cfg.sample_tokens > 0) {
    const ByteTokenizer tok;
    SamplingOptions so;
    so.tokens = cfg.sample_tokens;
    so.seed = cfg.seed;
    so.temperature = 0.8f;
    so.top_k = 40;
    const auto text = tok.decode(generate(trainer->model(), tok.encode("\n"), so));
    std::printf("sample (temperature 0.8, top-k 40):\n%s\n", text.c_str() + 1);
  }
  return kExitOk;
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
  StepResult sum;
  double cpu_at_start = 0;
  for (int s = 0; s < cfg.steps; ++s) {
    if (s == c.warmup) cpu_at_start = process_cpu_seconds();
    const StepResult r = trainer->train_step(s);
    if (s < c.warmup) continue;
    sum.t_data += r.t_data;
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
  const ModelConfig& m = cfg.model;
  const auto frac = [&](double t) { return t / sum.t_total; };
  if (!comm.is_root()) return kExitOk;
  if (c.json) {
    std::printf(
        "{\"preset\": \"%s\", \"layers\": %d, \"heads\": %d, \"embd\": %d, \"seq_len\": %d, "
        "\"vocab\": %d, \"params\": %zu, \"ranks\": %d, \"threads\": %d, \"micro_batch\": %d, "
        "\"global_batch\": %d, \"steps\": %d, \"tokens_per_s\": %.1f, \"ms_per_step\": %.3f, "
        "\"gflops\": %.2f, \"flops_per_token\": %.0f, \"thread_context_bytes\": %zu, "
        "\"peak_rss_bytes\": %.0f, \"cpu_busy\": %.3f, \"time_split\": {\"data\": %.4f, "
        "\"forward_backward\": %.4f, \"thread_reduce\": %.4f, \"allreduce\": %.4f, "
        "\"optimizer\": %.4f}}\n",
        c.model.preset.c_str(), m.n_layer, m.n_head, m.n_embd, m.seq_len, m.vocab_size,
        trainer->model().layout().numel(), comm.size(), cfg.threads, cfg.micro_batch,
        cfg.global_batch, c.steps, tokens_per_s, 1000 * step_s, gflops, m.flops_per_token(),
        trainer->thread_context_bytes(), peak_rss_bytes(), cpu_busy, frac(sum.t_data),
        frac(sum.t_forward_backward), frac(sum.t_reduce), frac(sum.t_allreduce), frac(sum.t_optimizer));
  } else {
    std::printf("model       %d layers, %d heads, %d wide, seq %d: %zu parameters\n", m.n_layer,
                m.n_head, m.n_embd, m.seq_len, trainer->model().layout().numel());
    std::printf("layout      %d rank(s) x %d thread(s); %d sequences/step in micro-batches of %d\n",
                comm.size(), cfg.threads, cfg.global_batch, cfg.micro_batch);
    std::printf("throughput  %.0f tokens/s, %.1f ms/step, %.1f GFLOP/s; CPU %.0f%% busy\n",
                tokens_per_s, 1000 * step_s, gflops, 100 * cpu_busy);
    std::printf("time split  data %.1f%%, forward+backward %.1f%%, thread reduce %.1f%%, "
                "allreduce %.1f%%, optimizer %.1f%%\n",
                100 * frac(sum.t_data), 100 * frac(sum.t_forward_backward), 100 * frac(sum.t_reduce),
                100 * frac(sum.t_allreduce), 100 * frac(sum.t_optimizer));
    std::printf("memory      %.1f MiB per thread context, peak RSS %.1f MiB\n",
                trainer->thread_context_bytes() / 1048576.0, peak_rss_bytes() / 1048576.0);
  }
  return kExitOk;
}

// Parses argv with app; help and parse errors (a missing --config file
// among them) stop this rank.
std::optional<Stop> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp&) {
    return Stop{kExitOk, app.help(), stdout};
  } catch (const CLI::CallForAllHelp&) {
    return Stop{kExitOk, app.help("", CLI::AppFormatMode::All), stdout};
  } catch (const CLI::Error& e) {
    return Stop{kExitUsage, std::string("cllm: error: ") + e.what() + "\n"};
  }
}

}  // namespace

int run_cli(int argc, char** argv, [[maybe_unused]] const MpiEnvironment& mpi) {
  constexpr const char* kAbout = "cllm: train GPT-style language models on CPU clusters (MPI + OpenMP)";
  constexpr const char* kTrainAbout = "Train a model on a text corpus";
  constexpr const char* kBenchAbout = "Measure training throughput";
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
    app.set_config("--config", "", kConfigHelp);
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
  // No or an unknown subcommand: the top-level app lists the subcommands.
  CLI::App app{kAbout, "cllm"};
  app.require_subcommand(1);
  app.add_subcommand("train", std::string(kTrainAbout) + " (cllm train --help)");
  app.add_subcommand("bench", std::string(kBenchAbout) + " (cllm bench --help)");
  std::optional<Stop> stop = parse(app, argc, argv);
  if (!stop) stop = Stop{kExitUsage, "cllm: error: a subcommand is required: train or bench\n"};
  return *agree(world, stop);
}

}  // namespace cllm
