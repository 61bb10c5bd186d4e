#include "cllm/sampler.h"

#include <algorithm>

#include "cllm/rng.h"

namespace cllm {

namespace {
void copy_window(std::span<const std::int32_t> tokens, std::size_t start, int T,
                 std::int32_t* inputs, std::int32_t* targets) {
  std::copy_n(tokens.data() + start, T, inputs);
  std::copy_n(tokens.data() + start + 1, T, targets);
}
}  // namespace

void sample_training_windows(std::span<const std::int32_t> tokens, std::uint64_t seed,
                             std::int64_t step, std::int64_t micro_batch_index, int B, int T,
                             std::int32_t* inputs, std::int32_t* targets) {
  const std::uint64_t n_starts = tokens.size() - static_cast<std::size_t>(T);  // start + T < size
  for (int b = 0; b < B; ++b) {
    const std::uint64_t h = hash_words(seed, static_cast<std::uint64_t>(step),
                                       static_cast<std::uint64_t>(micro_batch_index),
                                       static_cast<std::uint64_t>(b));
    copy_window(tokens, h % n_starts, T, inputs + static_cast<std::size_t>(b) * T,
                targets + static_cast<std::size_t>(b) * T);
  }
}

void validation_windows(std::span<const std::int32_t> tokens, std::int64_t first_window,
                        std::int64_t n_windows, int B, int T, std::int32_t* inputs,
                        std::int32_t* targets) {
  const std::uint64_t n_starts = tokens.size() - static_cast<std::size_t>(T);
  for (int b = 0; b < B; ++b) {
    const auto w = static_cast<std::uint64_t>(first_window + b);
    const std::uint64_t start = w * n_starts / static_cast<std::uint64_t>(n_windows);
    copy_window(tokens, start, T, inputs + static_cast<std::size_t>(b) * T,
                targets + static_cast<std::size_t>(b) * T);
  }
}

}  // namespace cllm
