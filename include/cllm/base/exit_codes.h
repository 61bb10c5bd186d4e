// Every exit code of cllm, in one place (README: Exit codes). Slurm scripts
// act on them: 4 requeues, the others end the job.
#pragma once

#include <stdexcept>
#include <string>

namespace cllm {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;        // bad input file, I/O error, out of memory, internal error
inline constexpr int kExitUsage = 2;        // invalid command line or configuration
inline constexpr int kExitDiverged = 3;     // max_bad_steps non-finite steps in a row
inline constexpr int kExitInterrupted = 4;  // a stop signal: checkpoint written, resume to go on
inline constexpr int kExitStalled = 5;      // the ranks gave up waiting for a missing one

// Thrown for --help: every rank exits 0, and the one that asked prints text
// on stdout (dist/collective.h agrees on it like on a failure).
struct HelpRequested {
  std::string text;
};

// A command line that cannot be read (an unknown option, a missing value):
// exit 2, reported without a rank, since every rank reads the same line.
struct CommandLineError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

}  // namespace cllm
