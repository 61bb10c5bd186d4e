#include "cllm/sampler.h"

#include <algorithm>

#include "cllm/rng.h"

namespace cllm {

std::uint64_t training_window_start(std::uint64_t n_tokens, int T, std::uint64_t seed,
                                    std::int64_t step, std::int64_t micro_batch_index, int row) {
  const std::uint64_t n_starts = n_tokens - static_cast<std::uint64_t>(T);  // start + T < n
  const std::uint64_t h =
      hash_words(seed, static_cast<std::uint64_t>(step),
                 static_cast<std::uint64_t>(micro_batch_index), static_cast<std::uint64_t>(row));
  return h % n_starts;
}

std::uint64_t validation_window_start(std::uint64_t n_tokens, int T, std::int64_t window,
                                      std::int64_t n_windows) {
  const std::uint64_t n_starts = n_tokens - static_cast<std::uint64_t>(T);
  return static_cast<std::uint64_t>(window) * n_starts / static_cast<std::uint64_t>(n_windows);
}

void read_windows(const TokenSource& source, Split split, std::span<const std::uint64_t> starts,
                  int T, std::int32_t* inputs, std::int32_t* targets) {
  std::vector<std::int32_t> window(static_cast<std::size_t>(T) + 1);
  for (std::size_t b = 0; b < starts.size(); ++b) {
    source.read_tokens(split, starts[b], window.size(), window.data());
    std::copy_n(window.begin(), T, inputs + b * T);
    std::copy_n(window.begin() + 1, T, targets + b * T);
  }
}

}  // namespace cllm
