#include "chunk_filters.h"

#include <zlib.h>

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
  // Shuffle: byte b of every element, then byte b + 1 of every element...
  std::vector<unsigned char> shuffled;
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
  uLongf size = compressBound(static_cast<uLong>(input.size()));
  std::vector<unsigned char> out(size + 4);
  if (compress2(out.data(), &size, input.data(), static_cast<uLong>(input.size()), level) != Z_OK)
    throw std::runtime_error("deflate failed");
  const std::uint32_t sum = fletcher32({out.data(), size});
  for (int i = 0; i < 4; ++i) out[size + static_cast<std::size_t>(i)] = static_cast<unsigned char>(sum >> (8 * i));
  out.resize(size + 4);
  return out;
}

}  // namespace cllm::h5
