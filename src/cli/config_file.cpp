#include "config_file.h"

#include "cllm/io/options_file.h"

namespace cllm {

namespace {

// What a config key names, found as CLI11 finds it: "--key", then "-key" for
// one letter, then the key itself (a positional's name).
OptionKey key_kind(const CLI::App& app, const std::string& key) {
  const CLI::Option* opt = app.get_option_no_throw("--" + key);
  if (!opt && key.size() == 1) opt = app.get_option_no_throw("-" + key);
  if (!opt) opt = app.get_option_no_throw(key);
  if (!opt) return OptionKey::unknown;
  return opt->get_configurable() ? OptionKey::settable : OptionKey::not_settable_in_files;
}

}  // namespace

CLI::Option* add_config_option(CLI::App& app, const std::string& help) {
  // Backstop: a key that the check let through but CLI11 cannot place is an
  // error, not silently skipped.
  app.allow_config_extras(CLI::config_extras_mode::error);
  CLI::Option* opt = app.set_config("--config", "", help);
  opt->check(CLI::Validator(
      [&app](std::string& path) {
        return options_file_problem(path, [&app](const std::string& key) {
          return key_kind(app, key);
        });
      },
      "", "config file"));
  // Validate as soon as the option is parsed: CLI11 opens the file before it
  // would otherwise run validators.
  opt->trigger_on_parse();
  return opt;
}

}  // namespace cllm
