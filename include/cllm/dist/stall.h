// The stall inspector's settings and records (after Horovod's stall
// inspector). Every collective a Comm runs is watched while this rank waits
// in it: when rank 0 has waited warn_s seconds, it names the ranks that have
// not arrived (those that do not answer its question, see
// src/dist/stall_inspector.h), with the step and the collective, again once
// per interval. After abort_s seconds every rank ends with kExitStalled,
// naming them, instead of hanging until the job's time limit. A rank busy
// with long work of its own (busy.h: a checkpoint, an evaluation) is there,
// not missing: a note says so, once a wait. The inspector
// only watches, with messages of its own on a communicator of its own: a
// run's results are the same with it or without it.
#pragma once

#include "cllm/base/exit_codes.h"

namespace cllm {

// What a rank waits in; named in warnings, errors and the trace.
enum class Collective {
  agreement,             // collectively(): did any rank fail at setting up?
  gradient_allreduce,    // the step's gradient, bucket by bucket
  loss_sum,              // the step's micro-batch losses
  evaluation,            // the validation losses
  replica_check,         // the parameters' checksums
  stop_agreement,        // did any rank get a stop signal?
  checkpoint_agreement,  // did rank 0 write the checkpoint?
  resume,                // rank 0's checkpoint, handed to the others
  prepare,               // cllm prepare: the plan, the token counts, the chunks
  log,                   // the ranks' waits, for the log line
  trace,                 // the ranks' timeline events, for the trace file
};
// "the gradient allreduce", ...
const char* to_string(Collective what);

struct StallConfig {
  double warn_s = 60;  // seconds waited before rank 0 names the missing ranks (0: off)
  double abort_s = 0;  // seconds waited before every rank ends with kExitStalled (0: off)

  bool on() const { return warn_s > 0 || abort_s > 0; }
  // Throws SettingError naming {stall_warn} or {stall_abort} (setting_error.h).
  void validate() const;
};

// One wait of this rank's main thread for a collective to complete, in
// omp_get_wtime() seconds: what comm_wait_s adds up, and the trace shows.
struct CollectiveWait {
  Collective what = Collective::agreement;
  int step = 0;  // the step label at the time (Comm::label_step)
  double begin = 0, end = 0;
};

}  // namespace cllm
