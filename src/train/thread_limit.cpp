#include "cllm/train/thread_limit.h"

#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <thread>

namespace cllm {

ThreadLimit thread_limit() {
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadLimit limit{hardware * kThreadsPerHardwareThread,
                    std::to_string(hardware) + " hardware threads x " +
                        std::to_string(kThreadsPerHardwareThread)};
  if (const int omp = omp_get_thread_limit(); omp < limit.threads)
    limit = {omp, "the OpenMP thread limit, OMP_THREAD_LIMIT"};
  // RLIMIT_NPROC counts the user's threads, these among them.
  if (rlimit nproc{}; getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY &&
                      nproc.rlim_cur < static_cast<rlim_t>(limit.threads))
    limit = {static_cast<int>(nproc.rlim_cur), "the process limit, ulimit -u"};
  return limit;
}

std::string thread_count_problem(int threads) {
  const ThreadLimit limit = thread_limit();
  if (threads <= limit.threads) return "";
  return std::to_string(threads) + " threads is more than this machine can start: at most " +
         std::to_string(limit.threads) + " (" + limit.reason + ")";
}

}  // namespace cllm
