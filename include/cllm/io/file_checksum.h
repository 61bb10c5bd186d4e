// A SHA-256 of a cllm file's bytes, kept in the file's first 512 bytes (the
// HDF5 user block, which HDF5, h5ls, h5dump and h5py skip), so that a
// truncated, bit-flipped or otherwise damaged checkpoint or dataset is
// refused in one line before HDF5 decodes any of it: HDF5 1.10.8 has memory
// bugs of its own on corrupt files (tests/fuzz/README.md).
//
// The block holds four text lines, then NUL bytes:
//   cllm-sha256 v1
//   length <the whole file's size in bytes>
//   block <block size in bytes>
//   sha256 <hex of SHA-256 over the block hashes>
// The hashed bytes are those after the 512-byte block, in blocks of `block`
// bytes (the last one short); each block's SHA-256 in lowercase hex and a
// newline, concatenated, is hashed again. Blocks are hashed on all threads,
// so checking a dataset of tens of GB runs at the disk's speed, not one
// core's. The same by hand:
//   tail -c +513 FILE | split -b BLOCK --filter='sha256sum | cut -c1-64' | sha256sum
// Files without the first line (cllm's from before it wrote one, h5py's)
// are read as before, through HDF5's own checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cllm {

// The header's first line: a file that starts with it claims a checksum.
inline constexpr std::string_view kChecksumMagic = "cllm-sha256 v1\n";
// The user block's size: what create_file and create_memory_file (hdf5.h)
// set aside at the start of every file cllm writes.
inline constexpr std::size_t kChecksumHeaderBytes = 512;
// Bytes a block hash covers: large enough that the block hashes are few,
// small enough that a dataset has blocks for every thread.
inline constexpr std::uint64_t kChecksumBlockBytes = std::uint64_t{64} << 20;

// Writes the checksum of the file at path (closed by HDF5, its first
// kChecksumHeaderBytes set aside) into its first bytes. Throws
// std::runtime_error on an I/O error.
void write_file_checksum(const std::filesystem::path& path,
                         std::uint64_t block_bytes = kChecksumBlockBytes);
// The same in parts, for processes that share the reading: the blocks of
// a file of file_size bytes; the hex SHA-256s of blocks [first, last) of the
// file at path, on all threads; and the header from all the blocks' hashes.
std::uint64_t checksum_blocks(std::uint64_t file_size, std::uint64_t block_bytes = kChecksumBlockBytes);
std::vector<std::string> file_block_hashes(const std::filesystem::path& path, std::uint64_t first,
                                           std::uint64_t last, std::uint64_t block_bytes = kChecksumBlockBytes);
void write_file_checksum(const std::filesystem::path& path, const std::vector<std::string>& block_hashes,
                         std::uint64_t block_bytes = kChecksumBlockBytes);
// The same for a file's image in memory.
void write_file_checksum(std::span<unsigned char> image,
                         std::uint64_t block_bytes = kChecksumBlockBytes);

enum class FileChecksum { verified, absent };

// Verifies the checksum of the file at path, if it has one: `verified`,
// `absent` when the file does not start with the checksum's first line (or is
// shorter than the block). Throws std::runtime_error starting "damaged: its
// checksum does not match (...)" when the length or the hash differ, or the
// header cannot be read; the caller names the file.
FileChecksum verify_file_checksum(const std::filesystem::path& path);

}  // namespace cllm
