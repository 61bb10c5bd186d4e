// Small text formatting every layer's messages and reports use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace cllm {

// printf into a std::string, of any length.
template <typename... Args>
std::string printf_string(const char* format, Args... args) {
  const int n = std::snprintf(nullptr, 0, format, args...);
  if (n <= 0) return {};
  std::string s(static_cast<std::size_t>(n) + 1, '\0');
  std::snprintf(s.data(), s.size(), format, args...);
  s.pop_back();  // the terminating NUL
  return s;
}

// "451.8 MiB", "3.2 GiB".
std::string format_bytes(std::size_t bytes);
// "42s", "7m05s", "3h20m"; "?" for a negative or non-finite time.
std::string format_duration(double seconds);
// "[3, 768]".
std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace cllm
