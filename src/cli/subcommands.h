// The subcommands besides train and bench: their options and how they run.
// Each runs its work on rank 0 (other ranks, under mpirun, wait) and agrees
// on the exit code with every rank.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "cllm/dist/comm.h"

namespace cllm {

struct PrepareCommand {
  std::vector<std::string> inputs;
  std::string out = "data/austen.h5";
  std::string tokenizer = "byte";
  std::string vocab_dir = "data/gpt2-bpe";
  double val_fraction = 0.1;
};
void add_prepare_options(CLI::App& app, PrepareCommand& c);
int run_prepare(PrepareCommand& c, const Comm& comm);

struct GenerateCommand {
  std::string checkpoint;
  std::string prompt = "\n";
  int tokens = 200;
  float temperature = 0.8f;
  int top_k = 40;
  std::uint64_t seed = 42;
};
void add_generate_options(CLI::App& app, GenerateCommand& c);
int run_generate(GenerateCommand& c, const Comm& comm);

}  // namespace cllm
