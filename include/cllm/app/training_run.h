// TrainingRun: one `cllm train` from start to end, on every rank. It owns
// what happens between optimizer steps - the log line and metrics.jsonl,
// validation, the replica check, checkpoints and their pruning, the stop
// signal, non-finite steps, the final sample - and resuming: finding the
// checkpoint to continue from, loading it on rank 0 and handing it to the
// others. The Trainer owns what happens inside a step.
//
// Every public member is collective: all ranks call it at the same point.
// A failure on any rank throws CollectiveFailure on every rank (collective.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "cllm/app/log_interval.h"
#include "cllm/base/exit_codes.h"
#include "cllm/base/setting_error.h"
#include "cllm/dist/comm.h"
#include "cllm/dist/timeline.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/checkpoint_store.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/output_lock.h"
#include "cllm/train/metrics.h"
#include "cllm/train/run_config.h"
#include "cllm/train/run_settings.h"
#include "cllm/train/train_config.h"
#include "cllm/train/trainer.h"

namespace cllm {

// Which step a run ends at, and why.
struct RunEnd {
  enum class Why {
    completed,      // --steps done
    nothing_to_do,  // the checkpoint it resumed from was already there
    stop_at,        // RunConfig::stop_at reached, checkpoint written
    interrupted,    // a stop signal, checkpoint written
    interrupted_before_start,  // a stop signal before the first step: nothing new to save
    diverged,       // max_bad_steps non-finite steps in a row
  };
  Why why = Why::completed;
  std::int64_t step = 0;  // steps done
  int signal = 0;         // interrupted*: the signal this rank received (0: another rank's)
  int bad_steps = 0;      // diverged: non-finite steps in a row

  int exit_code() const;  // 0, kExitDiverged or kExitInterrupted
};

class TrainingRun {
 public:
  // Validates the settings (before any I/O), takes out (rank 0 creates and
  // locks it), opens the data and builds the trainer. config.model's
  // vocabulary is replaced by the data's. name_of names settings in the
  // run's messages (the CLI: --lr, not lr).
  TrainingRun(TrainConfig config, RunConfig policy, DataConfig data, const Comm& comm,
              SettingNames name_of = recorded_name);

  // Continues from a checkpoint as policy.resume says (rank 0 reads it, every
  // rank gets it), opens metrics.jsonl, then trains to the end or to a stop.
  // Rank 0 says why a run ends before its last step.
  RunEnd run();

  const Trainer& trainer() const { return *trainer_; }
  const TrainConfig& config() const { return config_; }

 private:
  // Rank 0: the checkpoint policy.resume names or finds, loaded into the
  // trainer; nullopt: start afresh.
  std::optional<TrainingState> load_resume_point();
  TrainingState load_for_resume(const std::filesystem::path& path,
                                std::optional<std::int64_t> expected_step);
  // Rank 0's resume point (state, parameters, moments) on every rank.
  std::optional<TrainingState> share_resume_point(const std::optional<TrainingState>& mine);
  // The state the run starts from: a checkpoint's, else step 0 with
  // policy.init's weights or random ones. Collective.
  TrainingState resume_or_init();
  RunEnd nothing_to_do(std::int64_t step, int end) const;
  // Counts a step whose update was skipped (non-finite), or resets the count;
  // true when max_bad_steps is reached.
  bool count_bad_step(const StepResult& r, TrainingState& state) const;
  // The log line, metrics record and validation of the interval step `done`
  // ends; the timeline goes out. Collective.
  void log(LogInterval& interval, int done, const StepResult& last, bool evaluate);
  void print_header() const;
  void save_checkpoint(const TrainingState& state);
  void print_sample() const;
  // Flushes the timeline (collective), then says why the run ends (rank 0).
  RunEnd ended(RunEnd end);

  TrainConfig config_;
  RunConfig policy_;
  CheckpointStore store_;  // policy_.out
  DataConfig data_spec_;
  const Comm& comm_;
  SettingNames name_of_;
  std::optional<OutputLock> lock_;  // rank 0, for the whole run
  TrainingData data_;
  RunSettings settings_;
  std::unique_ptr<Trainer> trainer_;
  std::optional<MetricsFile> metrics_;  // rank 0
  Timeline timeline_;                   // off unless policy_.trace names a file
};

// What happens after step `done` (1-based) of a run that ends at `end`
// (stop_at or the last step) out of config.steps: the loop's cadences, as a
// pure function of the step.
struct StepActions {
  bool log = false, evaluate = false, check_replicas = false, checkpoint = false;
};
StepActions step_actions(const TrainConfig& config, const RunConfig& policy, int done, int end);

}  // namespace cllm
