// The `cllm` command line (CLI11): subcommands prepare, train, generate,
// bench, eval, import and export. Each fills a config struct from its
// options and calls its use case (app/); failures become exit codes.
#pragma once

#include <string>
#include <vector>

#include "cllm/base/exit_codes.h"
#include "cllm/dist/mpi_env.h"
#include "cllm/train/train_config.h"

namespace cllm {

// Parses argv and runs the chosen subcommand; returns the exit code.
// Errors are reported as one line on stderr. Needs MPI initialised (the
// MpiEnvironment); every early exit is agreed by all ranks.
int run_cli(int argc, char** argv, const MpiEnvironment& mpi);

// For the fuzz harness (tests/fuzz/fuzz_config.cpp): parses args (what
// follows `cllm train`, e.g. {"--config", "run.toml"}) as `cllm train`
// does, and checks them as train does before it opens the data (one rank,
// the byte vocabulary). Throws CLI::Error (a std::runtime_error) for what
// CLI11 or the --config check refuses, --help included, and
// std::invalid_argument for a bad value.
TrainConfig parse_train_options(std::vector<std::string> args);

}  // namespace cllm
