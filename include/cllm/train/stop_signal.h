// SIGUSR1, SIGTERM and SIGINT ask a training run to stop cleanly: the
// handler only records the signal; the ranks agree on it at the next step
// boundary, write one checkpoint and exit with kExitInterrupted (training_run.h).
// Slurm sends SIGUSR1/SIGTERM before a time limit (--signal) and on
// preemption or scancel; SIGINT is a terminal's Ctrl-C. A second SIGINT
// kills the process at once, without a checkpoint. cllm generate stops
// after the token it is sampling instead.
//
// The handlers are installed when the process starts, before MPI and the
// command line (cli/main.cpp): a signal sent while a job starts is recorded
// too, never the default action that would end the process with no exit
// code Slurm requeues. Commands that do not stop cleanly put the previous
// dispositions back once they know what they are (restore_stop_signals).
//
// A signal handler can only reach process-wide state, so the flag is the one
// piece of global state in CLLM; it lives in stop_signal.cpp behind this
// interface.
#pragma once

#include <signal.h>

namespace cllm {

// Installs the handlers for SIGUSR1, SIGTERM and SIGINT (once per process),
// whatever the dispositions inherited - a SIGINT ignored by a shell that
// started the process with & included - and unblocks the three: a signal
// blocked and pending since the process started is recorded then.
// Async-signal-safe, so it can run before anything else does.
void install_stop_signal_handlers();

// What the first SIGINT's note on stderr says will happen (a person at a
// terminal sees nothing until then).
enum class StopAction {
  checkpoint_at_step,  // cllm train
  end_after_token,     // cllm generate
};
void describe_stop_signals(StopAction action);

// For commands with no clean stop: the dispositions that
// install_stop_signal_handlers replaced come back, and a stop signal
// received meanwhile is raised again, to act as it would have.
void restore_stop_signals();

// The signal received since installation (SIGUSR1, SIGTERM or SIGINT), or 0.
int stop_signal_received();

// While one lives, the calling thread leaves the stop signals that have our
// handler pending instead of running it: a thread holds one while it runs
// matrix products. oneDNN 2.6's JIT GEMM kernels (gemm:jit, which runs
// attention's tile products) point rsp into the heap while they run, and a
// handler run on that thread writes its frame there, corrupting the heap
// (oneDNN issue 4845, fixed in 3.x). A signal sent meanwhile goes to a
// thread that does not hold it (MPI's, say) or waits for the end of the
// hold: either way the run sees it at the next step boundary, as always. A
// second SIGINT, whose action is to kill, is not held.
class StopSignalsHeld {
 public:
  StopSignalsHeld();
  ~StopSignalsHeld();
  StopSignalsHeld(const StopSignalsHeld&) = delete;
  StopSignalsHeld& operator=(const StopSignalsHeld&) = delete;

 private:
  sigset_t previous_;
};

}  // namespace cllm
