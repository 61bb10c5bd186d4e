// A run's settings by name, as a checkpoint records them (root attributes):
// train's run_settings.h makes and compares them, io's checkpoint.h writes
// and reads them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

namespace cllm {

using SettingValue = std::variant<std::int64_t, double, std::string>;
using RunSettings = std::map<std::string, SettingValue>;  // attribute name -> value

}  // namespace cllm
