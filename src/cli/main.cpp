// cllm: entry point. MPI lives for the scope of main; any error becomes one
// line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>

#include "cllm/cli.h"
#include "cllm/mpi_env.h"

int main(int argc, char** argv) {
  try {
    cllm::MpiEnvironment mpi(argc, argv);
    return cllm::run_cli(argc, argv, mpi);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cllm: error: %s\n", e.what());
    return cllm::kExitError;
  }
}
