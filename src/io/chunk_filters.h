// HDF5's filter pipeline for token datasets, run by cllm itself: shuffle,
// deflate, Fletcher-32, as HDF5 1.10's filters would (H5Zshuffle.c,
// H5Zfletcher32.c byte for byte; the deflate stream is libdeflate's, which
// any zlib inflates). Chunks filtered here on all threads are
// written with H5Dwrite_chunk; HDF5's own pipeline runs on one thread inside
// H5Dwrite and held `cllm prepare` to the speed of one core's deflate.
// Private to src/io/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace cllm::h5 {

// HDF5's Fletcher-32 of bytes (H5_checksum_fletcher32).
std::uint32_t fletcher32(std::span<const unsigned char> bytes);

// One chunk of raw elements of element_size bytes, filtered: shuffled (when
// element_size > 1), deflated at libdeflate's level (1-12), the Fletcher-32 of that appended
// (little-endian). HDF5 reads it back through the filters H5Pset_shuffle,
// H5Pset_deflate(level) and H5Pset_fletcher32 declare, in that order.
std::vector<unsigned char> filter_chunk(std::span<const unsigned char> raw, std::size_t element_size,
                                        int level);

}  // namespace cllm::h5
