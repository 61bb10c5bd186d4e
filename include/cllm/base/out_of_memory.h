// Memory that cannot be had: a fault of the machine, never of the input.
// A caller that turns bad input into exit 2 lets it by (exit 1).
#pragma once

#include <stdexcept>

#include "cllm/base/setting_error.h"

namespace cllm {

struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Settings that need more memory than the process can have, found before
// anything was allocated: named as a SettingError names them, and exits as
// out of memory does (1), not as a bad command line (2).
struct SettingsOutOfMemory : SettingError {
  using SettingError::SettingError;
};

}  // namespace cllm
