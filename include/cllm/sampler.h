// Which token windows a micro-batch trains on. The choice is a pure function
// of (seed, step, global micro-batch index), so the data of a step does not
// depend on how many threads or ranks share the work, nor on what ran before.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cllm {

// Fills inputs and targets (B,T) with random windows of tokens: targets are
// the inputs shifted by one.
void sample_training_windows(std::span<const std::int32_t> tokens, std::uint64_t seed,
                             std::int64_t step, std::int64_t micro_batch_index, int B, int T,
                             std::int32_t* inputs, std::int32_t* targets);

// Validation windows, evenly spaced over the split; window w of n_windows.
void validation_windows(std::span<const std::int32_t> tokens, std::int64_t first_window,
                        std::int64_t n_windows, int B, int T, std::int32_t* inputs,
                        std::int32_t* targets);

}  // namespace cllm
