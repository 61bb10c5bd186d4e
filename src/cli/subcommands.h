// The subcommands besides train and bench: their options and how they run.
// Each runs its work on rank 0 (other ranks, under mpirun, wait) and agrees
// on the exit code with every rank.
#pragma once

#include <CLI/CLI.hpp>

#include "cllm/dist/comm.h"
#include "cllm/io/generate_text.h"
#include "cllm/io/prepare.h"

namespace cllm {

void add_prepare_options(CLI::App& app, PrepareSpec& spec);
int run_prepare(PrepareSpec& spec, const Comm& comm);

void add_generate_options(CLI::App& app, GenerateSpec& spec);
int run_generate(GenerateSpec& spec, const Comm& comm);

}  // namespace cllm
