// --config FILE: a subcommand's options read from a TOML file, one
// `option = value` line per option (the long name without its dashes),
// checked strictly before CLI11 reads it (cllm/io/options_file.h).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace cllm {

// Adds --config to app. The file is checked when the option is parsed,
// before CLI11 opens it; its keys are looked up among app's options when the
// check runs, so add this before or after the other options alike.
CLI::Option* add_config_option(CLI::App& app, const std::string& help);

}  // namespace cllm
