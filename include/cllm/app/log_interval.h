// LogInterval: the steps of a run since its last log line - their seconds,
// and the time this rank waited for the others - and the record that closes
// them, with the wait of the rank that waited most. On every rank.
#pragma once

#include <cstdint>

#include "cllm/dist/comm.h"
#include "cllm/dist/timeline.h"
#include "cllm/train/metrics.h"
#include "cllm/train/train_config.h"
#include "cllm/train/trainer.h"

namespace cllm {

class LogInterval {
 public:
  // A run that starts after step first_step (0, or the one it resumed).
  // comm, timeline and config must outlive it.
  LogInterval(const Comm& comm, Timeline& timeline, const TrainConfig& config,
              std::int64_t first_step);

  void add(const StepResult& step);
  // The waits for other ranks since the last call: into this interval, and
  // into the timeline.
  void collect_waits();
  // The record of the interval that step `done` (1-based) ends, last being
  // its result, and a new interval begun. Collective: every rank's waits are
  // gathered.
  LogRecord close(int done, const StepResult& last);

 private:
  const Comm& comm_;
  Timeline& timeline_;
  const TrainConfig& config_;
  std::int64_t first_step_;
  double run_seconds_ = 0;  // of every step since first_step
  double seconds_ = 0, wait_seconds_ = 0;
  int steps_ = 0;
};

}  // namespace cllm
