// check_mpi: how src/dist/ checks the return code of each MPI call it makes
// (every MPI call lives in src/dist/). Private to src/dist/. With MPI's
// default error handler a failing call aborts before it returns; a
// communicator set to MPI_ERRORS_RETURN gets here.
#pragma once

#include <mpi.h>

#include <stdexcept>
#include <string>

namespace cllm {

// Throws std::runtime_error naming the call when rc is not MPI_SUCCESS.
inline void check_mpi(int rc, const char* call) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(call) + " failed");
}

}  // namespace cllm
