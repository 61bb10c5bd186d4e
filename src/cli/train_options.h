// `cllm train`'s options parsed without running anything: for the fuzz
// harness (tests/fuzz/fuzz_config.cpp), which feeds --config files to the
// same CLI11 app the command line uses.
#pragma once

#include <string>
#include <vector>

#include "cllm/train/train_config.h"

namespace cllm {

// Parses args (what follows `cllm train`, e.g. {"--config", "run.toml"}) with
// the options run_cli gives `cllm train` (add_config_option, then
// add_train_options), then resolves and checks them with the calls run_train
// makes before it opens the data (with_options, TrainConfig::validate,
// RunPolicy::validate; one rank, the byte vocabulary). Throws CLI::Error (a
// std::runtime_error) for what CLI11 or the --config check refuses, --help
// included, and std::invalid_argument for a bad value.
TrainConfig parse_train_options(std::vector<std::string> args);

}  // namespace cllm
