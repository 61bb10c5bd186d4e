// Gradient checking by central differences, shared by the kernel and the
// whole-model tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <span>

namespace cllm::test {

struct FiniteDifferenceCheck {
  double max_grad = 0;     // largest |analytic gradient|
  double worst_error = 0;  // largest |analytic - finite difference|
  std::size_t worst_index = 0;
  double worst_fd = 0;     // the finite difference there
};

// Compares grad, the analytic gradient of loss() with respect to x, with
// (loss(x + h) - loss(x - h)) / 2h for every element of x; x is restored.
inline FiniteDifferenceCheck check_central_differences(std::span<float> x,
                                                       std::span<const float> grad,
                                                       const std::function<double()>& loss,
                                                       float h) {
  FiniteDifferenceCheck r;
  for (float g : grad) r.max_grad = std::max(r.max_grad, static_cast<double>(std::abs(g)));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + h;
    const double lp = loss();
    x[i] = saved - h;
    const double lm = loss();
    x[i] = saved;
    const double fd = (lp - lm) / (2.0 * h);
    const double err = std::abs(fd - grad[i]);
    if (err > r.worst_error) r.worst_error = err, r.worst_index = i, r.worst_fd = fd;
  }
  return r;
}

}  // namespace cllm::test
