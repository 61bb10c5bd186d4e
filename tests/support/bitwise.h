// Bitwise equality of float arrays (parameters, moments, gradients): the
// test of reproducibility and exact resume, where a float comparison would
// let -0.0 pass for 0.0 and would fail on equal NaNs.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <span>

namespace cllm::test {

// EXPECT_TRUE(same_bits(a, b)) says where they first differ.
inline ::testing::AssertionResult same_bits(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure()
             << "element " << i << " of " << a.size() << " differs: " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

}  // namespace cllm::test
