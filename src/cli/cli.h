// The `cllm` command line: subcommands train and bench (CLI11). Every
// option has help text and a default; --config FILE reads the same options
// from a TOML file (keys are the long option names without dashes).
#pragma once

#include "cllm/dist/mpi_env.h"

namespace cllm {

// Exit codes, documented in the README.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;       // bad input, I/O error, internal error
inline constexpr int kExitUsage = 2;       // invalid command line
inline constexpr int kExitDiverged = 3;    // --max-bad-steps non-finite steps in a row
inline constexpr int kExitInterrupted = 4; // SIGUSR1/SIGTERM/SIGINT: checkpoint written, resume to go on

// Parses argv and runs the chosen subcommand; returns the exit code.
// Errors are reported as one line on stderr. Needs MPI initialised (the
// MpiEnvironment); every early exit is agreed by all ranks.
int run_cli(int argc, char** argv, const MpiEnvironment& mpi);

}  // namespace cllm
