// How many OpenMP threads a rank may ask for (--threads). Past what the
// runtime can start, libgomp fails inside its thread start: "Thread creation
// failed" for some counts, a segmentation fault for larger ones, and no word
// of which option caused it. The limit is the least of OMP_THREAD_LIMIT
// (omp_get_thread_limit), the process limit (RLIMIT_NPROC, ulimit -u), and
// kThreadsPerHardwareThread threads per hardware thread: each thread owns a
// training context, and more than that many per core only shares the core.
#pragma once

#include <string>

namespace cllm {

inline constexpr int kThreadsPerHardwareThread = 64;

struct ThreadLimit {
  int threads;         // the most a rank may ask for
  std::string reason;  // where it comes from ("2 hardware threads x 64")
};

ThreadLimit thread_limit();

// Why threads is more than thread_limit() allows ("100000 is more than ...:
// at most 128 (2 hardware threads x 64)"), or "" when it is not.
std::string thread_count_problem(int threads);

}  // namespace cllm
