// A structured synthetic corpus over 32 tokens: mostly a fixed successor
// function with some noise, so there is something to learn, and the same
// on every rank for a given seed.
#pragma once

#include <cstdint>
#include <vector>

#include "cllm/data/text_dataset.h"
#include "cllm/kernels/rng.h"

namespace cllm::test {

inline TokenDataset synthetic_corpus(std::uint64_t seed, std::size_t n_train, std::size_t n_val) {
  TokenDataset d;
  d.vocab_size = 32;
  d.source = "synthetic";
  Rng rng(seed);
  std::int32_t prev = 0;
  std::vector<std::int32_t> all(n_train + n_val);
  for (auto& t : all) {
    const std::uint64_t r = rng.next_u64();
    prev = (r % 5 == 0) ? static_cast<std::int32_t>((r >> 8) % 32) : (prev * 5 + 3) % 32;
    t = prev;
  }
  d.train.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n_train));
  d.val.assign(all.begin() + static_cast<std::ptrdiff_t>(n_train), all.end());
  return d;
}

}  // namespace cllm::test
