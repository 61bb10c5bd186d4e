// Every exit code of cllm, in one place (README: Exit codes). Slurm scripts
// act on them: 4 requeues, the others end the job.
#pragma once

namespace cllm {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;        // bad input file, I/O error, out of memory, internal error
inline constexpr int kExitUsage = 2;        // invalid command line or configuration
inline constexpr int kExitDiverged = 3;     // max_bad_steps non-finite steps in a row
inline constexpr int kExitInterrupted = 4;  // a stop signal: checkpoint written, resume to go on
inline constexpr int kExitStalled = 5;      // the ranks gave up waiting for a missing one

}  // namespace cllm
