#include "cllm/base/format.h"

#include <cmath>

namespace cllm {

std::string format_bytes(std::size_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1048576.0) return printf_string("%.1f GiB", b / 1073741824.0);
  return printf_string("%.1f MiB", b / 1048576.0);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  if (t >= 3600) return printf_string("%ldh%02ldm", t / 3600, t % 3600 / 60);
  if (t >= 60) return printf_string("%ldm%02lds", t / 60, t % 60);
  return printf_string("%lds", t);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace cllm
