// --config FILE: a subcommand's options read from a TOML file, one
// `option = value` line per option (the long name without its dashes).
//
// CLI11 2.1 reads such files leniently: it skips keys that name no option,
// sections, short lines and junk without a word, and it opens whatever path
// it is given (a FIFO blocks it, /dev/zero never ends). cllm checks the file
// first and refuses, naming the file and the line, anything that would not
// be read as written.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace cllm {

// Adds --config to app. The file is checked when the option is parsed,
// before CLI11 opens it: a regular file of UTF-8 text (no NUL or other
// control bytes) whose lines are blank, comments (# or ;), or `key = value`
// with a key that names one of app's options (looked up when the check runs,
// so add this before or after the other options alike). Sections are
// refused: the options of a subcommand are top-level keys.
CLI::Option* add_config_option(CLI::App& app, const std::string& help);

// Why path is not a --config file for app ("FILE:LINE: unknown option
// 'stpes'"), or "" when it is one. Reads only a regular file, and at most
// kMaxConfigFileBytes of it.
std::string config_file_problem(const CLI::App& app, const std::string& path);

inline constexpr std::size_t kMaxConfigFileBytes = std::size_t{1} << 20;

}  // namespace cllm
