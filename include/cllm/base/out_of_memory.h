// Memory that cannot be had: a fault of the machine, never of the input.
// A caller that turns bad input into exit 2 lets it by (exit 1).
#pragma once

#include <stdexcept>

namespace cllm {

struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace cllm
