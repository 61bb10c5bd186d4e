// Sampling text from a model, one token at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cllm/model/model.h"

namespace cllm {

struct SamplingConfig {
  int tokens = 200;         // new tokens to generate
  float temperature = 1.0f; // > 0
  int top_k = 0;            // 0: the whole vocabulary
  std::uint64_t seed = 42;
};

// Text for people to read, as cllm samples it at the end of a run and by
// default in cllm generate: the likelier tokens, with some variety.
inline constexpr SamplingConfig kReadableSampling{
    .tokens = 200, .temperature = 0.8f, .top_k = 40, .seed = 42};

// Continues prompt (at least one token) with options.tokens new tokens,
// handing each to next as soon as it is sampled; next returns false to stop
// there. The context is the last seq_len tokens, and only those are kept:
// memory does not grow with options.tokens. Returns the tokens sampled.
// Runs on the calling thread.
std::int64_t generate(const Model& model, std::vector<std::int32_t> prompt,
                      const SamplingConfig& options, const std::function<bool(std::int32_t)>& next);

// The prompt and all its new tokens.
std::vector<std::int32_t> generate(const Model& model, std::vector<std::int32_t> prompt,
                                   const SamplingConfig& options);

}  // namespace cllm
