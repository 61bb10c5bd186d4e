// Sampling text from a model, one token at a time.
#pragma once

#include <cstdint>
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

// Continues prompt (at least one token) with new tokens; the context is the
// last seq_len tokens. Runs on the calling thread.
std::vector<std::int32_t> generate(const Model& model, std::vector<std::int32_t> prompt,
                                   const SamplingConfig& options);

}  // namespace cllm
