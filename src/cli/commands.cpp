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
#include "cllm/checkpoint.h"
#include "cllm/checkpoint_store.h"
#include "cllm/cli.h"
#include "cllm/comm.h"
#include "cllm/dataset_file.h"
#include "cllm/generate.h"
#include "cllm/metrics.h"
#include "cllm/output_lock.h"
#include "cllm/run_settings.h"
#include "cllm/rng.h"
#include "cllm/stop_signal.h"
#include "cllm/text_dataset.h"
#include "cllm/tokenizer.h"
#include "cllm/trainer.h"
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
  std::string data = "data/austen.txt";
  std::string out = "runs/default";
  double val_fraction = 0.1;
  int checkpoint_every = 100;
  int keep = 3;
  std::string resume = "auto";
  int stop_at = 0;
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
  app.add_option("--data", c.data,
                 "Training data: an HDF5 dataset from cllm prepare (.h5, .hdf5), or a text file "
                 "(byte-level tokens)")
      ->capture_default_str();
  app.add_option("--val-fraction", c.val_fraction,
                 "Tail of a text file held out for validation (datasets carry their own split)")
      ->capture_default_str()
      ->check(real_range(0.0, 0.5));
  app.add_option("--out", c.out, "Output folder: checkpoints and metrics.jsonl")
      ->capture_default_str();
  app.add_option("--checkpoint-every", c.checkpoint_every,
                 "Steps between checkpoints (0: only at the end); one is always written at the "
                 "end and at --stop-at")
      ->capture_default_str();
  app.add_option("--keep", c.keep, "Newest checkpoints kept in --out (0: all)")
      ->capture_default_str();
  app.add_option("--resume", c.resume,
                 "auto: continue from the newest valid checkpoint in --out, if any; none: start "
                 "afresh (refused if --out holds checkpoints); or a checkpoint file")
      ->capture_default_str();
  app.add_option("--stop-at", c.stop_at,
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

// The data a run trains on and the tokenizer that made it.
struct TrainingData {
  std::unique_ptr<TokenSource> source;
  TokenizerSpec tokenizer;
};

// An HDF5 dataset (.h5, .hdf5) is read window by window; any other file is
// text, read whole with the byte tokenizer.
TrainingData open_training_data(const std::string& path, double val_fraction, int seq_len) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  TrainingData d;
  if (ext == ".h5" || ext == ".hdf5") {
    auto h5 = std::make_unique<Hdf5TokenSource>(path, seq_len + 1);
    d.tokenizer = h5->tokenizer();
    d.source = std::move(h5);
  } else {
    d.source = std::make_unique<TokenDataset>(load_text_dataset(path, val_fraction, seq_len));
  }
  return d;
}

// Rank 0: makes --out. Its lock, taken next, creates OUT/.lock and so proves
// the folder writable before any training is spent.
void prepare_output_folder(const fs::path& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw std::runtime_error(out.string() + ": cannot create output folder: " + ec.message());
}

// What this run records in its checkpoints, and compares with theirs on resume.
RunSettings run_settings(const TrainCommand& c, const TrainConfig& cfg, const TokenSource& data) {
  RunSettings s = config_settings(cfg);
  s["data"] = c.data;
  if (const std::string identity = data.identity(); !identity.empty()) s["data_identity"] = identity;
  s["checkpoint_every"] = std::int64_t{c.checkpoint_every};
  s["keep"] = std::int64_t{c.keep};
  return s;
}

std::string joined(const std::vector<std::string>& lines, const char* separator) {
  std::string s;
  for (const auto& line : lines) s += (s.empty() ? "" : separator) + line;
  return s;
}

// Rank 0: loads the checkpoint at path into the trainer, after checking that
// it belongs to this run: settings that define the run must match (else
// std::invalid_argument, exit 2); the others may change, with a warning
// each. expected_step: the step its file name says, when found by --resume
// auto. Other errors: std::runtime_error naming the file.
TrainingState load_checkpoint_for_resume(const fs::path& path,
                                         std::optional<std::int64_t> expected_step,
                                         const RunSettings& settings, Trainer& trainer) {
  const CheckpointReader checkpoint(path);
  const CheckpointContents& header = checkpoint.header();
  const RunSettings recorded = checkpoint.settings(compared_setting_names());
  if (expected_step && header.state.step != *expected_step)
    throw std::runtime_error(path.string() + ": its name says step " +
                             std::to_string(*expected_step) + ", its /state/step says " +
                             std::to_string(header.state.step));
  const SettingsComparison diff = compare_settings(recorded, settings);
  if (!diff.refused.empty())
    throw std::invalid_argument(path.string() + " belongs to a run with other settings: " +
                                joined(diff.refused, "; ") +
                                "; use the checkpoint's values, or another --out");
  const double t0 = omp_get_wtime();
  CheckpointMoments moments;
  checkpoint.read_into(trainer.mutable_model(), &moments);
  trainer.mutable_optimizer().restore(moments.state());
  const TrainingState state = header.state;
  for (const std::string& change : diff.changed)
    std::fprintf(stderr, "cllm: warning: resuming with %s (the checkpoint's run used the first)\n",
                 change.c_str());
  std::printf("resuming from %s (step %lld, read in %.2f s)\n", path.c_str(),
              static_cast<long long>(state.step), omp_get_wtime() - t0);
  return state;
}

// Rank 0: loads the checkpoint the run continues from into the trainer, as
// --resume says, and returns its state; nullopt: start afresh.
std::optional<TrainingState> load_resume_point(const TrainCommand& c, const RunSettings& settings,
                                               Trainer& trainer) {
  if (c.resume != "auto" && c.resume != "none")
    return load_checkpoint_for_resume(c.resume, std::nullopt, settings, trainer);
  CheckpointStore store(c.out);
  const std::vector<CheckpointFile> found = store.list();
  if (c.resume == "none") {
    if (!found.empty())
      throw std::runtime_error(c.out + ": already holds checkpoints (newest " +
                               found.front().path.filename().string() +
                               "); --resume auto continues them, or choose another --out");
    return std::nullopt;
  }
  std::optional<TrainingState> resumed;
  store.load_newest([&](const CheckpointFile& f) {
    resumed = load_checkpoint_for_resume(f.path, f.step, settings, trainer);
  });
  return resumed;
}

// Gives every rank rank 0's resume point: state, parameters, moments.
std::optional<TrainingState> share_resume_point(const Comm& comm, Trainer& trainer,
                                                const std::optional<TrainingState>& mine) {
  std::vector<std::int64_t> head = {mine ? 1 : 0, mine ? mine->step : 0,
                                    mine ? mine->tokens_seen : 0,
                                    mine ? mine->bad_steps_in_a_row : 0,
                                    trainer.optimizer().steps_taken()};
  comm.broadcast(head);
  if (!head[0]) return std::nullopt;
  if (comm.size() > 1) {
    comm.broadcast(trainer.mutable_model().params());
    const std::size_t n = trainer.model().layout().total();
    AlignedBuffer<float> m(n), v(n);
    std::copy_n(trainer.optimizer().m().data(), n, m.data());
    std::copy_n(trainer.optimizer().v().data(), n, v.data());
    comm.broadcast(m.span());
    comm.broadcast(v.span());
    trainer.mutable_optimizer().restore(m.span(), v.span(), head[4]);
  }
  return TrainingState{head[1], head[2], static_cast<int>(head[3])};
}

int run_train(TrainCommand& c, const Comm& comm) {
  install_stop_signal_handlers();
  TrainConfig& cfg = c.cfg;
  const bool root = comm.is_root();
  TrainingData data;
  std::unique_ptr<Trainer> trainer;
  std::optional<OutputLock> lock;  // rank 0, for the whole run
  RunSettings settings;
  std::optional<TrainingState> resumed;
  if (auto code = agree_on_setup(comm, [&] {
        c.batch.apply(cfg, comm.size());
        cfg.model = c.model.resolve(ByteTokenizer::kVocabSize);
        cfg.validate(comm.size());  // options first: a bad one is named before data is read
        if (c.stop_at < 0) throw std::invalid_argument("--stop-at must not be negative");
        if (c.checkpoint_every < 0)
          throw std::invalid_argument("--checkpoint-every must not be negative");
        if (root) {
          prepare_output_folder(c.out);
          lock.emplace(c.out);
        }
        data = open_training_data(c.data, c.val_fraction, cfg.model.seq_len);
        cfg.model.vocab_size = data.source->vocab();
        try {
          cfg.model.validate();  // the vocabulary came from the file
        } catch (const std::invalid_argument& e) {
          throw std::runtime_error(c.data + ": " + e.what());
        }
        settings = run_settings(c, cfg, *data.source);
        trainer = std::make_unique<Trainer>(cfg, *data.source, comm);
      }))
    return *code;
  // Rank 0 reads the checkpoint and hands it on: one reader, however many ranks.
  if (auto code = agree_on_setup(comm, [&] {
        if (root) resumed = load_resume_point(c, settings, *trainer);
      }))
    return *code;
  resumed = share_resume_point(comm, *trainer, resumed);
  const TrainingState start = resumed.value_or(TrainingState{});
  const int end = c.stop_at > 0 ? std::min(c.stop_at, cfg.steps) : cfg.steps;
  if (start.step >= end) {
    if (root)
      std::printf("cllm train: %s is at step %lld, which %s; nothing to do\n", c.out.c_str(),
                  static_cast<long long>(start.step),
                  end == cfg.steps ? "completes --steps" : "reaches --stop-at");
    return kExitOk;
  }
  std::optional<MetricsFile> metrics;  // rank 0 only
  if (auto code = agree_on_setup(comm, [&] {
        if (root) metrics.emplace(fs::path(c.out) / "metrics.jsonl", start.step);
      }))
    return *code;

  const ModelConfig& m = cfg.model;
  const TokenSource& source = *data.source;
  if (root) {
    std::printf("cllm train: %s (%llu train / %llu val tokens, %s tokenizer), out %s\n",
                source.name().c_str(),
                static_cast<unsigned long long>(source.split_size(Split::train)),
                static_cast<unsigned long long>(source.split_size(Split::val)),
                data.tokenizer.name.c_str(), c.out.c_str());
    std::printf("model: %d layers, %d heads, %d wide, seq %d, vocab %d: %zu parameters\n",
                m.n_layer, m.n_head, m.n_embd, m.seq_len, m.vocab_size,
                trainer->model().layout().numel());
    std::printf("batch: %d sequences/step = %d micro-batches of %d over %d rank(s) x %d "
                "thread(s); %.1f MiB per thread context\n",
                cfg.global_batch, cfg.micro_batches_per_step(), cfg.micro_batch, comm.size(),
                cfg.threads, trainer->thread_context_bytes() / 1048576.0);
    std::printf("blas: %s\n", kernels::blas_name().c_str());
    std::fflush(stdout);
    warn_if_blas_is_slow();
  }

  TrainingState state = start;
  // Rank 0 writes; every rank agrees on the outcome.
  const auto save_checkpoint = [&](int done) {
    return agree_on_setup(comm, [&] {
      if (!root) return;
      const double t0 = omp_get_wtime();
      CheckpointStore store(c.out);
      const fs::path path = store.path(done);
      write_checkpoint(path, trainer->model(), trainer->optimizer().state(), state, data.tokenizer,
                       settings);
      store.prune(c.keep, path);
      std::error_code ec;
      std::printf("checkpoint %s (%.1f MiB, %.2f s)\n", path.c_str(),
                  static_cast<double>(fs::file_size(path, ec)) / 1048576.0, omp_get_wtime() - t0);
      std::fflush(stdout);
    });
  };
  double interval_s = 0, total_s = 0;
  int interval_steps = 0;
  for (int step = static_cast<int>(start.step); step < end; ++step) {
    const StepResult r = trainer->train_step(step);
    interval_s += r.t_total;
    total_s += r.t_total;
    ++interval_steps;
    state.step = step + 1;
    state.tokens_seen += cfg.tokens_per_step();
    if (!r.applied) {  // every rank sees the same loss and norm, so decides alike
      ++state.bad_steps_in_a_row;
      if (root)
        std::fprintf(stderr,
                   "cllm: warning: step %d: non-finite %s (loss %g, grad norm %g); update "
                   "skipped (%d of --max-bad-steps %d in a row)\n",
                   step + 1, std::isfinite(r.loss) && std::isfinite(r.grad_norm) ? "update" :
                   std::isfinite(r.loss) ? "gradient norm" : "loss",
                   r.loss, r.grad_norm, state.bad_steps_in_a_row, cfg.max_bad_steps);
      if (state.bad_steps_in_a_row >= cfg.max_bad_steps) {
        if (root)
          std::fprintf(stderr,
                     "cllm: error: stopping at step %d after %d non-finite steps in a row; "
                     "parameters are those of the last good step (try a lower --lr)\n",
                     step + 1, state.bad_steps_in_a_row);
        return kExitDiverged;
      }
    } else {
      state.bad_steps_in_a_row = 0;
    }
    const int done = step + 1;
    const bool last = done == cfg.steps;
    const bool save = done == end || (c.checkpoint_every > 0 && done % c.checkpoint_every == 0);
    if (last || save || (cfg.check_every > 0 && done % cfg.check_every == 0))
      trainer->check_replicas(done);  // never checkpoint replicas that drifted apart
    const bool eval = last || (cfg.eval_every > 0 && done % cfg.eval_every == 0);
    if (done % cfg.log_every == 0 || last || eval || done == end) {
      LogRecord rec;
      rec.step = done;
      rec.total_steps = cfg.steps;
      rec.loss = r.loss;
      rec.lr = r.lr;
      rec.grad_norm = r.grad_norm;
      rec.ms_per_step = 1000.0 * interval_s / interval_steps;
      rec.tokens_per_s = static_cast<double>(cfg.tokens_per_step()) * interval_steps / interval_s;
      rec.eta_s = total_s / (done - start.step) * (cfg.steps - done);
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
    // A stop signal on any rank: all ranks agree on it here, at the step
    // boundary (after the last step there is nothing left to interrupt).
    const bool interrupted = done < end && !comm.all_ok(stop_signal_received() == 0);
    if (interrupted && !save) trainer->check_replicas(done);
    if (save || interrupted)
      if (auto code = save_checkpoint(done)) return *code;
    if (interrupted) {
      if (root)
        std::printf("stopped after step %d of %d by %s; the same command continues from "
                    "the checkpoint (exit code %d)\n",
                    done, cfg.steps,
                    stop_signal_received() == SIGUSR1   ? "SIGUSR1"
                    : stop_signal_received() == SIGTERM ? "SIGTERM"
                    : stop_signal_received() == SIGINT  ? "SIGINT"
                                                        : "a signal to another rank",
                    kExitInterrupted);
      return kExitInterrupted;
    }
  }
  if (end < cfg.steps) {
    if (root)
      std::printf("stopped after step %d of %d (--stop-at); the same command with --resume auto "
                  "continues\n",
                  end, cfg.steps);
    return kExitOk;
  }
  if (root && cfg.sample_tokens > 0) {
    const auto tok = make_tokenizer(data.tokenizer);
    SamplingOptions so;
    so.tokens = cfg.sample_tokens;
    so.seed = cfg.seed;
    so.temperature = 0.8f;
    so.top_k = 40;
    const auto prompt = tok->encode("\n");
    const auto ids = generate(trainer->model(), prompt, so);
    // Written by size, not with %s: byte-level text may hold NUL bytes.
    const std::string sample = tok->decode(std::span(ids).subspan(prompt.size()));
    std::printf("sample (temperature 0.8, top-k 40):\n");
    std::fwrite(sample.data(), 1, sample.size(), stdout);
    std::printf("\n");
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
