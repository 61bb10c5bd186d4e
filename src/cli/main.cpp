// cllm: entry point. MPI lives for the scope of main. An error that escapes
// a subcommand becomes one line on stderr and a non-zero exit; with several
// ranks it ends them all (MPI_Abort), since the others may be waiting in a
// collective for this one. The stop signals' handlers come first of all
// (train/stop_signal.h).
#include <cstdio>
#include <exception>
#include <optional>

#include "cli.h"
#include "cllm/dist/mpi_env.h"
#include "cllm/io/hdf5_handle.h"
#include "cllm/train/stop_signal.h"

namespace {
// The stop signals' handlers, installed before any library's initialiser
// runs (.preinit_array entries of the executable come first): Open MPI,
// oneDNN and HDF5 take tens of milliseconds to start, a window in
// which a job's SIGTERM would otherwise end the process with no exit code
// (train/stop_signal.h).
void install_stop_signal_handlers_first(int, char**, char**) { cllm::install_stop_signal_handlers(); }
[[gnu::section(".preinit_array"), gnu::used]] void (*const kBeforeLibraries)(int, char**, char**) =
    install_stop_signal_handlers_first;
}  // namespace

int main(int argc, char** argv) {
  cllm::install_stop_signal_handlers();  // done already, unless the linker dropped the entry
  std::optional<cllm::MpiEnvironment> mpi;
  try {
    mpi.emplace(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cllm: error: %s\n", e.what());
    return cllm::kExitError;
  }
  // HDF5 would print its error stack on stderr; its errors become our one-line
  // messages instead.
  cllm::h5::silence_error_stack();
  try {
    return cllm::run_cli(argc, argv, *mpi);
  } catch (const std::exception& e) {
    if (mpi->size() > 1) {
      std::fprintf(stderr, "cllm: error: rank %d: %s\n", mpi->rank(), e.what());
      std::fflush(stderr);
      mpi->abort(cllm::kExitError);
    }
    std::fprintf(stderr, "cllm: error: %s\n", e.what());
    return cllm::kExitError;
  }
}
