// libFuzzer driver: the HDF5 token dataset reader (cllm::Hdf5TokenSource),
// given any bytes as the file. Throwing std::exception is a correct answer;
// a crash, a leak, undefined behaviour, a huge allocation or a token id
// outside [0, vocab()) (TokenSource's promise, on which the embedding lookup
// relies) is a finding.
#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <string>

#include "cllm/dataset_file.h"
#include "cllm/hdf5.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cllm::h5::silence_error_stack();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& path = cllm::fuzz::write_input("dataset.h5", data, size);
  try {
    // Windows of 2 tokens at least, as `cllm train --seq-len 1` asks.
    cllm::Hdf5TokenSource source(path, 2);
    std::array<std::int32_t, 64> window{};
    for (const cllm::Split split : {cllm::Split::train, cllm::Split::val}) {
      const std::uint64_t n = source.split_size(split);
      // The first, a middle and the last window, and a longer one.
      const std::uint64_t long_count = std::min<std::uint64_t>(n, window.size());
      const std::pair<std::uint64_t, std::size_t> reads[] = {
          {0, 2}, {n / 2 - 1, 2}, {n - 2, 2}, {n - long_count, long_count}};
      for (const auto& [start, count] : reads) {
        try {
          source.read_tokens(split, start, count, window.data());
        } catch (const std::exception&) {
          continue;
        }
        for (std::size_t i = 0; i < count; ++i)
          if (window[i] < 0 || window[i] >= source.vocab())
            cllm::fuzz::fail("token " + std::to_string(window[i]) + " at " +
                             std::to_string(start + i) + " is outside the vocabulary of " +
                             std::to_string(source.vocab()));
      }
      // A window past the end is refused, not read.
      bool refused = false;
      try {
        source.read_tokens(split, n - 1, 2, window.data());
      } catch (const std::out_of_range&) {
        refused = true;
      }
      if (!refused) cllm::fuzz::fail("a window past the end of a split was read");
    }
  } catch (const std::exception&) {
  }
  return 0;
}
