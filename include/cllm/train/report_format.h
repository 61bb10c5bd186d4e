// Text and JSON formatting of reports: the log line and metrics.jsonl
// (train), cllm bench and the run's messages (app).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "cllm/base/format.h"
#include "cllm/kernels/blas.h"
#include "cllm/kernels/matmul.h"

namespace cllm {

// OpenBLAS may run kernels far below the CPU's (see cllm/kernels/blas.h): say
// so on stderr, with the fix, before a long run goes slowly for no visible
// reason.
// bf16 on a CPU without bf16 instructions runs, slowly: say that too.
inline void warn_about_matmul(const kernels::MatmulConfig& matmul) {
  std::string warning;
  if (matmul.engine == kernels::MatmulEngine::openblas) warning = kernels::OpenBlas().kernel_warning();
  if (matmul.precision == kernels::Precision::bf16) warning = kernels::bf16_support_warning();
  if (!warning.empty()) std::fprintf(stderr, "cllm: warning: %s\n", warning.c_str());
}

// v as a JSON number with the digits printf's format would print ("%.1f":
// one decimal, "%.8g": 8 significant digits): v is printed that way and
// parsed back, and nlohmann writes the shortest text that reads back as that
// double, which is those digits. JSON has no NaN or Infinity: a non-finite v
// is null.
inline nlohmann::ordered_json json_number(double v, const char* printf_format) {
  if (!std::isfinite(v)) return nullptr;
  return std::strtod(printf_string(printf_format, v).c_str(), nullptr);
}

}  // namespace cllm
