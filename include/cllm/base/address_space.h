// What the address-space limit (ulimit -v, RLIMIT_AS) leaves this process:
// the limit less what is mapped now (/proc/self/statm). A memory plan and
// a library that maps much as it loads (OpenBLAS) both ask before they fail.
#pragma once

#include <cstddef>
#include <optional>

namespace cllm {

// Bytes still mappable; nullopt when no limit is set.
std::optional<std::size_t> address_space_left();

}  // namespace cllm
