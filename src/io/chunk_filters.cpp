#include "chunk_filters.h"

#include <libdeflate.h>

#include <algorithm>
#include <memory>

#include <stdexcept>

namespace cllm::h5 {

std::uint32_t fletcher32(std::span<const unsigned char> bytes) {
  const unsigned char* data = bytes.data();
  std::size_t words = bytes.size() / 2;
  std::uint32_t sum1 = 0, sum2 = 0;
  // Sums of 16-bit big-endian words, folded every 360 words before they overflow.
  while (words > 0) {
    std::size_t run = words > 360 ? 360 : words;
    words -= run;
    do {
      sum1 += static_cast<std::uint32_t>(data[0]) << 8 | data[1];
      data += 2;
      sum2 += sum1;
    } while (--run);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (bytes.size() % 2) {
    sum1 += static_cast<std::uint32_t>(*data) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return sum2 << 16 | sum1;
}

std::vector<unsigned char> filter_chunk(std::span<const unsigned char> raw, std::size_t element_size,
                                        int level) {
  // A thread's room to work in, kept from chunk to chunk: what leaves is only
  // the chunk as stored, allocated once at its size.
  thread_local std::vector<unsigned char> shuffled, deflated;
  // Shuffle: byte b of every element, then byte b + 1 of every element...
  std::span<const unsigned char> input = raw;
  if (element_size > 1) {
    const std::size_t n = raw.size() / element_size;
    shuffled.resize(raw.size());
    for (std::size_t b = 0; b < element_size; ++b)
      for (std::size_t i = 0; i < n; ++i) shuffled[b * n + i] = raw[i * element_size + b];
    // Bytes past the last whole element stay where they are.
    for (std::size_t i = n * element_size; i < raw.size(); ++i) shuffled[i] = raw[i];
    input = shuffled;
  }
  // One compressor a thread: it holds a few hundred KiB of tables.
  thread_local const std::unique_ptr<libdeflate_compressor, decltype(&libdeflate_free_compressor)> compressor(
      libdeflate_alloc_compressor(level), &libdeflate_free_compressor);
  if (!compressor) throw std::runtime_error("cannot allocate a deflate compressor");
  deflated.resize(libdeflate_zlib_compress_bound(compressor.get(), input.size()));
  const std::size_t size = libdeflate_zlib_compress(compressor.get(), input.data(), input.size(), deflated.data(), deflated.size());
  if (size == 0) throw std::runtime_error("deflate failed");
  std::vector<unsigned char> out(size + 4);
  std::copy_n(deflated.begin(), size, out.begin());
  const std::uint32_t sum = fletcher32({out.data(), size});
  for (std::size_t i = 0; i < 4; ++i) out[size + i] = static_cast<unsigned char>(sum >> (8 * i));
  return out;
}

}  // namespace cllm::h5
