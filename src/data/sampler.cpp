#include "cllm/data/sampler.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cllm/kernels/rng.h"

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
  const auto vocab = static_cast<std::uint32_t>(source.vocab());
  for (std::size_t b = 0; b < starts.size(); ++b) {
    source.read_tokens(split, starts[b], window.size(), window.data());
    // Ids index the embedding table and the logits: one out of range would
    // read and write past them. Checked here, where every id enters a step.
    for (std::size_t i = 0; i < window.size(); ++i)
      if (static_cast<std::uint32_t>(window[i]) >= vocab)
        throw std::runtime_error(source.name() + ": token id " + std::to_string(window[i]) +
                                 " at position " + std::to_string(starts[b] + i) + " of the " +
                                 (split == Split::train ? "train" : "val") +
                                 " split is outside the vocabulary of " +
                                 std::to_string(vocab) + " tokens");
    std::copy_n(window.begin(), T, inputs + b * T);
    std::copy_n(window.begin() + 1, T, targets + b * T);
  }
}

}  // namespace cllm
