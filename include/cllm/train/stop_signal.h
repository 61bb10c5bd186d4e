// SIGUSR1, SIGTERM and SIGINT ask a training run to stop cleanly: the
// handler only records the signal; the ranks agree on it at the next step
// boundary, write one checkpoint and exit with kExitInterrupted (training_run.h).
// Slurm sends SIGUSR1/SIGTERM before a time limit (--signal) and on
// preemption or scancel; SIGINT is a terminal's Ctrl-C. A second SIGINT
// kills the process at once, without a checkpoint.
//
// A signal handler can only reach process-wide state, so the flag is the one
// piece of global state in CLLM; it lives in stop_signal.cpp behind this
// interface.
#pragma once

namespace cllm {

// Installs the handlers for SIGUSR1, SIGTERM and SIGINT (once per process).
void install_stop_signal_handlers();

// The signal received since installation (SIGUSR1, SIGTERM or SIGINT), or 0.
int stop_signal_received();

}  // namespace cllm
