#include "cllm/app/training_run.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "cllm/base/out_of_memory.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/tokenizer.h"
#include "cllm/dist/busy.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/trace_file.h"
#include "cllm/kernels/blas.h"
#include "cllm/model/generate.h"
#include "cllm/train/memory_plan.h"
#include "cllm/train/report_format.h"
#include "cllm/train/stop_signal.h"

namespace cllm {

namespace fs = std::filesystem;

namespace {

// Rank 0: makes out. Its lock, taken next, creates OUT/.lock and so proves
// the folder writable before any training is spent.
void prepare_output_folder(const fs::path& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw std::runtime_error(out.string() + ": cannot create output folder: " + ec.message());
}

// What this run records in its checkpoints, and compares with theirs on resume.
RunSettings run_settings(const TrainConfig& config, const RunConfig& policy, const DataConfig& data,
                         const TokenSource& source) {
  TrainRunConfig settings;
  settings.config = config;
  settings.policy = policy;
  settings.data = data;
  RunSettings s = recorded_settings(settings);
  if (const std::string identity = source.identity(); !identity.empty())
    s["data_identity"] = identity;
  return s;
}

std::string joined(const std::vector<std::string>& lines, const char* separator) {
  std::string s;
  for (const auto& line : lines) s += (s.empty() ? "" : separator) + line;
  return s;
}

// Where the weights came from, in every checkpoint of the run.
void record_init(const CheckpointReader& init, RunSettings& settings) {
  settings["init"] = fs::absolute(init.path()).string();
  const RunSettings origin = init.settings({"imported_from", "init"});
  if (const auto it = origin.find("imported_from"); it != origin.end()) settings["init_imported_from"] = it->second;
  if (const auto it = origin.find("init"); it != origin.end()) settings["init_init"] = it->second;
}

// The point a run continues from, as rank 0 hands it to the others with the
// parameters and moments.
struct ResumePoint {
  bool found = false;
  TrainingState state;
  std::int64_t optimizer_steps = 0;
};
static_assert(std::is_trivially_copyable_v<ResumePoint>);

}  // namespace

StepActions step_actions(const TrainConfig& config, const RunConfig& policy, int done, int end) {
  StepActions a;
  const bool last = done == config.steps;
  a.checkpoint = done == end || (policy.checkpoint_every > 0 && done % policy.checkpoint_every == 0);
  // Never checkpoint replicas that drifted apart.
  a.check_replicas = last || a.checkpoint ||
                     (policy.check_every > 0 && done % policy.check_every == 0);
  a.evaluate = last || (policy.eval_every > 0 && done % policy.eval_every == 0);
  a.log = done % policy.log_every == 0 || last || a.evaluate || done == end;
  return a;
}

TrainingRun::TrainingRun(TrainConfig config, RunConfig policy, DataConfig data, const Comm& comm,
                         SettingNames name_of)
    : config_(std::move(config)),
      policy_(std::move(policy)),
      store_(policy_.out),
      data_spec_(std::move(data)),
      comm_(comm),
      name_of_(std::move(name_of)) {
  collectively(comm_, [&] {
    // The settings first: a bad one is named before any file is touched.
    config_.validate(comm_.size());
    policy_.validate();
    data_spec_.validate();
    if (comm_.is_root() && !policy_.trace.empty()) {
      const bool resume_names_a_file = policy_.resume != "auto" && policy_.resume != "none";
      check_trace_path(policy_.trace, policy_.out,
                       {{"data", data_spec_.path},
                        {"init", policy_.init},
                        {"resume", resume_names_a_file ? policy_.resume : ""}});
    }
    if (comm_.is_root()) {
      prepare_output_folder(policy_.out);
      lock_.emplace(policy_.out);
    }
    std::optional<CheckpointReader> init;
    if (!policy_.init.empty()) {
      init.emplace(policy_.init);  // every rank reads the header: the model's shape
      config_.model = init->header().model;
    }
    data_ = open_training_data(data_spec_, config_.model.seq_len);
    if (init) {
      init->check_reads(data_.tokenizer, data_spec_.path);
    } else {
      config_.model.vocab_size = data_.source->vocab();
    }
    try {
      config_.model.validate();  // the vocabulary came from the file
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(data_spec_.path + ": " + e.what());
    }
    settings_ = run_settings(config_, policy_, data_spec_, *data_.source);
    if (init) record_init(*init, settings_);
    check_memory(training_memory(config_, comm_.size()), memory_limit());
    trainer_ = std::make_unique<Trainer>(config_, *data_.source, comm_);
    if (!policy_.trace.empty())
      timeline_ = Timeline(policy_.trace, policy_.trace_max_mb, config_.batch.threads, comm_, name_of_);
  });
  timeline_.start(comm_);
  trainer_->trace_into(&timeline_);
}

// Loads the checkpoint at path into the trainer, after checking that it
// belongs to this run: settings that define the run must match (else
// std::invalid_argument, exit 2); the others may change, with a warning
// each. expected_step: the step its file name says, when found by --resume
// auto. Other errors: std::runtime_error naming the file.
TrainingState TrainingRun::load_for_resume(
    const fs::path& path, std::optional<std::int64_t> expected_step) {
  const CheckpointReader checkpoint(path);
  const CheckpointContents& header = checkpoint.header();
  const RunSettings recorded = checkpoint.settings(compared_setting_names());
  if (expected_step && header.state.step != *expected_step)
    throw std::runtime_error(path.string() + ": its name says step " +
                             std::to_string(*expected_step) + ", its /state/step says " +
                             std::to_string(header.state.step));
  const SettingsComparison diff = compare_settings(recorded, settings_);
  if (!diff.refused.empty())
    throw SettingError(SettingError::literal(path.string()) +
                       " belongs to a run with other settings: " + joined(diff.refused, "; ") +
                       "; use the checkpoint's values, or another {out}");
  const double t0 = omp_get_wtime();
  CheckpointMoments moments;
  checkpoint.read_into(trainer_->mutable_model(), &moments);
  trainer_->mutable_optimizer().restore(moments.state());
  const TrainingState state = header.state;
  for (const std::string& change : diff.changed)
    std::fprintf(stderr, "cllm: warning: resuming with %s (the checkpoint's run used the first)\n",
                 name_settings(change, name_of_).c_str());
  std::printf("resuming from %s (step %lld, read in %.2f s)\n", path.c_str(),
              static_cast<long long>(state.step), omp_get_wtime() - t0);
  return state;
}

std::optional<TrainingState> TrainingRun::load_resume_point() {
  if (policy_.resume != "auto" && policy_.resume != "none")
    return load_for_resume(policy_.resume, std::nullopt);
  const std::vector<CheckpointFile> found = store_.list();
  if (policy_.resume == "none") {
    if (!found.empty())
      throw std::runtime_error(policy_.out + ": already holds checkpoints (newest " +
                               found.front().path.filename().string() + "); " +
                               name_settings("{resume} auto continues them, or choose another {out}",
                                             name_of_));
    return std::nullopt;
  }
  std::optional<TrainingState> resumed;
  store_.load_newest([&](const CheckpointFile& f) { resumed = load_for_resume(f.path, f.step); });
  return resumed;
}

std::optional<TrainingState> TrainingRun::share_resume_point(
    const std::optional<TrainingState>& mine) {
  ResumePoint point;
  if (mine) point = {true, *mine, trainer_->optimizer().steps_taken()};
  comm_.broadcast_value(point, Collective::resume);
  if (!point.found) return std::nullopt;
  if (comm_.size() > 1) {
    comm_.broadcast(trainer_->mutable_model().params(), Collective::resume);
    const std::size_t n = trainer_->model().layout().total();
    AlignedBuffer<float> m(n), v(n);
    std::copy_n(trainer_->optimizer().m().data(), n, m.data());
    std::copy_n(trainer_->optimizer().v().data(), n, v.data());
    comm_.broadcast(m.span(), Collective::resume);
    comm_.broadcast(v.span(), Collective::resume);
    trainer_->mutable_optimizer().restore(m.span(), v.span(), point.optimizer_steps);
  }
  return point.state;
}

void TrainingRun::print_header() const {
  const ModelConfig& m = config_.model;
  const TokenSource& source = *data_.source;
  std::printf("cllm train: %s (%llu train / %llu val tokens, %s tokenizer), out %s\n",
              source.name().c_str(),
              static_cast<unsigned long long>(source.split_size(Split::train)),
              static_cast<unsigned long long>(source.split_size(Split::val)),
              data_.tokenizer.name.c_str(), policy_.out.c_str());
  std::printf("model: %d layers, %d heads, %d wide, seq %d, vocab %d: %zu parameters\n", m.n_layer,
              m.n_head, m.n_embd, m.seq_len, m.vocab_size, trainer_->model().layout().numel());
  std::printf("batch: %d sequences/step = %d micro-batches of %d over %d rank(s) x %d "
              "thread(s); %.1f MiB per thread context\n",
              config_.batch.global_batch, config_.batch.micro_batches_per_step(),
              config_.batch.micro_batch, comm_.size(), config_.batch.threads, trainer_->thread_context_bytes() / 1048576.0);
  std::printf("matmul: %s, %s\n", kernels::matmul_engine_name(config_.batch.matmul.engine).c_str(),
              kernels::to_string(config_.batch.matmul.precision));
  std::fflush(stdout);
  warn_about_matmul(config_.batch.matmul);
}

// Rank 0 writes; every rank agrees on the outcome.
void TrainingRun::save_checkpoint(const TrainingState& state) {
  const TimedSpan span(timeline_, 0, "checkpoint", static_cast<int>(state.step));
  collectively(comm_, [&] {
    if (!comm_.is_root()) return;
    const BusyScope busy(comm_, Busy::writing_checkpoint);  // the others wait: not a stall
    const double t0 = omp_get_wtime();
    const fs::path path = store_.path(state.step);
    try {
      const OptimizerState optimizer = trainer_->optimizer().state();
      write_checkpoint(path, trainer_->model(), &optimizer, state, data_.tokenizer, settings_);
    } catch (const std::bad_alloc&) {  // HDF5's buffers, the settings' record
      throw OutOfMemory("out of memory: cannot write " + path.string() + " (" +
                        std::to_string(trainer_->model().layout().numel()) +
                        " parameters and their moments); the previous checkpoint is untouched");
    }
    store_.prune(policy_.keep, path);
    std::error_code ec;
    std::printf("checkpoint %s (%.1f MiB, %.2f s)\n", path.c_str(),
                static_cast<double>(fs::file_size(path, ec)) / 1048576.0, omp_get_wtime() - t0);
    std::fflush(stdout);
  }, Collective::checkpoint_agreement);
}

void TrainingRun::print_sample() const {
  const auto tok = make_tokenizer(data_.tokenizer);
  SamplingConfig so = kReadableSampling;
  so.tokens = policy_.sample_tokens;
  so.seed = config_.seed;
  const auto prompt = tok->encode("\n");
  const auto ids = [&] {
    const StopSignalsHeld while_multiplying;  // see stop_signal.h
    return generate(trainer_->model(), prompt, so);
  }();
  // Written by size, not with %s: byte-level text may hold NUL bytes.
  const std::string sample = tok->decode(std::span(ids).subspan(prompt.size()));
  std::printf("sample (temperature %g, top-k %d):\n", so.temperature, so.top_k);
  std::fwrite(sample.data(), 1, sample.size(), stdout);
  std::printf("\n");
}

int RunEnd::exit_code() const {
  if (why == Why::diverged) return kExitDiverged;
  return why == Why::interrupted || why == Why::interrupted_before_start ? kExitInterrupted : 0;
}

RunEnd TrainingRun::ended(RunEnd end) {
  timeline_.waits(comm_.take_waits());
  timeline_.flush(comm_, static_cast<int>(end.step));
  if (!comm_.is_root()) return end;
  const auto step = static_cast<long long>(end.step);
  if (end.why == RunEnd::Why::stop_at)
    std::printf("stopped after step %lld of %d (%s); the same command with %s auto continues\n",
                step, config_.steps, name_of_("stop_at").c_str(), name_of_("resume").c_str());
  const std::string by =
      end.signal ? std::string("SIG") + sigabbrev_np(end.signal) : "a signal to another rank";
  if (end.why == RunEnd::Why::interrupted_before_start)
    std::printf("stopped by %s before step %lld of %d: nothing new to save; the same command "
                "starts there (exit code %d)\n", by.c_str(), step + 1, config_.steps, kExitInterrupted);
  if (end.why == RunEnd::Why::interrupted)
    std::printf("stopped after step %lld of %d by %s; the same command continues from the "
                "checkpoint (exit code %d)\n", step, config_.steps, by.c_str(), kExitInterrupted);
  if (end.why == RunEnd::Why::diverged)
    std::fprintf(stderr, "cllm: error: stopping at step %lld after %d non-finite steps in a row; "
                         "parameters are those of the last good step (try a lower %s)\n",
                 step, end.bad_steps, name_of_("lr").c_str());
  std::fflush(stdout);
  return end;
}

TrainingState TrainingRun::resume_or_init() {
  const bool root = comm_.is_root();
  // Rank 0 reads the checkpoint and hands it on: one reader, however many ranks.
  std::optional<TrainingState> resumed;
  collectively(comm_, [&] {
    if (!root) return;
    const BusyScope busy(comm_, Busy::reading_checkpoint);  // the others wait: not a stall
    resumed = load_resume_point();
  }, Collective::resume);
  const std::optional<TrainingState> point = share_resume_point(resumed);  // on every rank
  if (!point && !policy_.init.empty()) {
    collectively(comm_, [&] {
      if (!root) return;
      const BusyScope busy(comm_, Busy::reading_checkpoint);
      const double t0 = omp_get_wtime();
      CheckpointReader(policy_.init).read_into(trainer_->mutable_model());
      std::printf("initialising from %s (read in %.2f s)\n", policy_.init.c_str(), omp_get_wtime() - t0);
    }, Collective::resume);
    if (comm_.size() > 1) comm_.broadcast(trainer_->mutable_model().params(), Collective::resume);
  }
  return point.value_or(TrainingState{});
}

RunEnd TrainingRun::nothing_to_do(std::int64_t step, int end) const {
  if (comm_.is_root())
    std::printf("cllm train: %s is at step %lld, which %s; nothing to do\n", policy_.out.c_str(),
                static_cast<long long>(step),
                (end == config_.steps ? "completes " + name_of_("steps")
                                      : "reaches " + name_of_("stop_at")).c_str());
  return {RunEnd::Why::nothing_to_do, step};
}

bool TrainingRun::count_bad_step(const StepResult& r, TrainingState& state) const {
  if (r.applied) {
    state.bad_steps_in_a_row = 0;
    return false;
  }
  // Every rank sees the same loss and norm, so decides alike.
  ++state.bad_steps_in_a_row;
  if (comm_.is_root())
    std::fprintf(stderr,
                 "cllm: warning: step %d: non-finite %s (loss %g, grad norm %g); update "
                 "skipped (%d of %s %d in a row)\n",
                 r.step + 1,
                 std::isfinite(r.loss) && std::isfinite(r.grad_norm) ? "update"
                 : std::isfinite(r.loss)                             ? "gradient norm"
                                                                     : "loss",
                 r.loss, r.grad_norm, state.bad_steps_in_a_row, name_of_("max_bad_steps").c_str(),
                 policy_.max_bad_steps);
  return state.bad_steps_in_a_row >= policy_.max_bad_steps;
}

void TrainingRun::log(LogInterval& interval, int done, const StepResult& last, bool evaluate) {
  LogRecord rec = interval.close(done, last);
  if (evaluate) {
    const TimedSpan span(timeline_, 0, "evaluate", done);
    rec.val_loss = trainer_->evaluate();
  }
  if (comm_.is_root()) {
    std::printf("%s\n", format_log_line(rec).c_str());
    std::fflush(stdout);
    metrics_->write(rec);
    if (done == config_.steps)
      std::printf("final validation loss %.4f; parameter checksum %016llx, the same on all %d "
                  "rank(s)\n",
                  *rec.val_loss, static_cast<unsigned long long>(checksum(trainer_->model().params())),
                  comm_.size());
  }
  interval.collect_waits();  // the log's own, before the timeline goes out
  timeline_.flush(comm_, done);
}

RunEnd TrainingRun::run() {
  const TrainingState start = resume_or_init();
  const int end = policy_.stop_at > 0 ? std::min(policy_.stop_at, config_.steps) : config_.steps;
  if (start.step >= end) return nothing_to_do(start.step, end);
  // A stop signal while the run started (the handlers are in place from the
  // process's start: cli/main.cpp): the ranks agree on it before the first
  // step, and there is nothing a checkpoint would add.
  if (!comm_.all_ok(stop_signal_received() == 0, Collective::stop_agreement))
    return ended({RunEnd::Why::interrupted_before_start, start.step, stop_signal_received()});
  collectively(comm_, [&] {
    if (comm_.is_root()) metrics_.emplace(fs::path(policy_.out) / "metrics.jsonl", start.step);
  });
  if (comm_.is_root()) print_header();
  TrainingState state = start;
  LogInterval interval(comm_, timeline_, config_, start.step);
  for (int step = static_cast<int>(start.step); step < end; ++step) {
    const StepResult r = trainer_->train_step(step);
    interval.add(r);
    const int done = step + 1;
    state.step = done;
    state.tokens_seen += config_.tokens_per_step();
    if (count_bad_step(r, state)) return ended({RunEnd::Why::diverged, done, 0, state.bad_steps_in_a_row});
    const StepActions act = step_actions(config_, policy_, done, end);
    if (act.check_replicas) trainer_->check_replicas(done);
    interval.collect_waits();  // this step's, and those of the last step boundary
    if (act.log) log(interval, done, r, act.evaluate);
    timeline_.step_done(comm_, done);  // between log lines too: memory bounded
    // A stop signal on any rank: all ranks agree on it here, at the step
    // boundary (after the last step there is nothing left to interrupt).
    const bool interrupted =
        done < end && !comm_.all_ok(stop_signal_received() == 0, Collective::stop_agreement);
    if (interrupted && !act.checkpoint) trainer_->check_replicas(done);
    if (act.checkpoint || interrupted) save_checkpoint(state);
    if (interrupted) return ended({RunEnd::Why::interrupted, done, stop_signal_received()});
  }
  if (end < config_.steps) return ended({RunEnd::Why::stop_at, end});
  ended({RunEnd::Why::completed, end});
  if (comm_.is_root() && policy_.sample_tokens > 0) print_sample();
  return {RunEnd::Why::completed, end};
}

}  // namespace cllm
