// Comm::Mpi: what a Comm holds of MPI, private to src/dist/ so that no
// other layer sees <mpi.h>. Every collective of this layer waits in
// complete(), where the stall inspector watches and the wait is recorded.
#pragma once

#include <mpi.h>

#include <memory>
#include <span>
#include <vector>

#include "cllm/dist/comm.h"
#include "stall_inspector.h"

namespace cllm {

struct Comm::Mpi {
  MPI_Comm comm = MPI_COMM_NULL;                // MPI_COMM_NULL: one process, no MPI
  std::unique_ptr<StallInspector> inspector;   // null: not watching
  // The main thread's bookkeeping of its waits (comm.h).
  int step = 0;
  Collective current = Collective::agreement;  // the last arrive()'s
  std::vector<CollectiveWait> waits;

  Mpi() = default;
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
  ~Mpi();

  // Waits for requests this rank started after Comm::arrive; a caller may
  // do other work between the two (GradientReducer reduces the next bucket
  // in-rank). completed_at, when given, receives when each request was seen
  // complete (omp_get_wtime()); requests already complete are left as they are.
  void complete(std::span<MPI_Request> requests, std::span<double> completed_at = {});
};

}  // namespace cllm
