// Which token windows a micro-batch trains on. The choice is a pure function
// of (seed, step, global micro-batch index), so the data of a step does not
// depend on how many threads or ranks share the work, nor on what ran before:
// a resumed run needs only the step number to continue the same stream.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cllm/data/token_source.h"

namespace cllm {

// Start of row `row` of a training micro-batch: a window of T + 1 tokens in a
// split of n_tokens.
std::uint64_t training_window_start(std::uint64_t n_tokens, int T, std::uint64_t seed,
                                    std::int64_t step, std::int64_t micro_batch_index, int row);

// Start of validation window w of n_windows, evenly spaced over the split.
std::uint64_t validation_window_start(std::uint64_t n_tokens, int T, std::int64_t window,
                                      std::int64_t n_windows);

// Reads windows of T + 1 tokens at starts into inputs and targets (B,T),
// B = starts.size(): targets are the inputs shifted by one. One thread at a
// time (see TokenSource::read_tokens).
// Throws std::runtime_error naming the source, split and position of a token
// id outside [0, source.vocab()).
void read_windows(const TokenSource& source, Split split, std::span<const std::uint64_t> starts,
                  int T, std::int32_t* inputs, std::int32_t* targets);

}  // namespace cllm
