// SIGUSR1 and SIGTERM ask a training run to stop cleanly: the handler only
// records the signal; the ranks agree on it at the next step boundary, write
// one checkpoint and exit with kExitInterrupted (cli.h). Slurm sends these
// before a time limit (--signal) and on preemption or scancel.
//
// A signal handler can only reach process-wide state, so the flag is the one
// piece of global state in CLLM; it lives in stop_signal.cpp behind this
// interface.
#pragma once

namespace cllm {

// Installs the handlers for SIGUSR1 and SIGTERM (once per process).
void install_stop_signal_handlers();

// The signal received since installation (SIGUSR1 or SIGTERM), or 0.
int stop_signal_received();

}  // namespace cllm
