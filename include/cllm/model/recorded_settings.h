// A run's settings by name, as a checkpoint records them (root attributes).
// Plain data, shared by train (run_settings.h makes and compares them) and io
// (checkpoint.h writes and reads them), so that neither includes the other.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

namespace cllm {

using SettingValue = std::variant<std::int64_t, double, std::string>;
using RunSettings = std::map<std::string, SettingValue>;  // attribute name -> value

}  // namespace cllm
