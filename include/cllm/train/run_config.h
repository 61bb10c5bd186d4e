// RunConfig: what a training run does between steps, where it keeps its
// files, and when it ends - TrainingRun's settings (app/training_run.h),
// beside the Trainer's TrainConfig.
#pragma once

#include <string>

namespace cllm {

struct RunConfig {
  std::string out = "runs/default";  // folder of checkpoints and metrics.jsonl
  int log_every = 10;           // steps between log lines and metrics records
  int eval_every = 100;         // steps between validation losses (0: at the end only)
  int check_every = 100;        // steps between cross-rank parameter checksums (0: end only)
  int checkpoint_every = 100;   // steps between checkpoints (0: only at the end and at stop_at)
  int keep = 3;                 // newest checkpoints kept in out (0: all)
  std::string resume = "auto";  // auto, none, or a checkpoint file
  // A checkpoint whose weights (and model shape) a new run starts from, with
  // its own step 0 and fresh AdamW state; empty: random weights. A run that
  // finds checkpoints of its own in out resumes them instead.
  std::string init;
  int stop_at = 0;              // end after this step with a checkpoint (0: off)
  int max_bad_steps = 5;        // consecutive non-finite steps before giving up
  int sample_tokens = 200;      // text sampled at the end (0: none)
  std::string trace;            // Chrome trace file of the run's timeline (empty: off)
  double trace_max_mb = 1024;   // the trace file's bound: tracing stops there

  // Throws SettingError naming the setting (train_settings.h's ranges).
  void validate() const;
};

}  // namespace cllm
