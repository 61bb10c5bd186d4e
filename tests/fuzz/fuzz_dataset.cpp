// libFuzzer driver: the HDF5 token dataset reader (cllm::Hdf5TokenSource),
// given any bytes as the file, and read_windows, through which the trainer
// takes its tokens. Throwing std::exception is a correct answer; a crash, a
// leak, undefined behaviour, a huge allocation, a window past the end that
// is read, or a token id outside [0, vocab()) out of read_windows (the
// embedding lookup trusts them) is a finding. An input that starts with a
// checksum header is read as it is (a damaged file must be refused by the
// checksum) and with its checksum written afresh (fuzz_common.h).
#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>

#include "cllm/data/sampler.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/hdf5.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cllm::h5::silence_error_stack();
  return 0;
}

namespace {

// Reads the dataset at path as the trainer does; throws std::exception on a
// bad file.
void read_dataset(const std::filesystem::path& path) {
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
      }
    }
    // A window past the end is refused, not read.
    bool refused = false;
    try {
      source.read_tokens(split, n - 1, 2, window.data());
    } catch (const std::out_of_range&) {
      refused = true;
    }
    if (!refused) cllm::fuzz::fail("a window past the end of a split was read");
    // As the trainer reads them: windows of T + 1 = 2 tokens.
    const std::array<std::uint64_t, 3> starts = {0, (n - 2) / 2, n - 2};
    std::array<std::int32_t, starts.size()> inputs{}, targets{};
    try {
      cllm::read_windows(source, split, starts, 1, inputs.data(), targets.data());
    } catch (const std::exception&) {
      continue;
    }
    for (const auto& ids : {inputs, targets})
      for (const std::int32_t id : ids)
        if (id < 0 || id >= source.vocab())
          cllm::fuzz::fail("read_windows gave the token " + std::to_string(id) +
                           ", outside the vocabulary of " + std::to_string(source.vocab()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  cllm::fuzz::read_each_way("dataset.h5", data, size, read_dataset);
  return 0;
}
