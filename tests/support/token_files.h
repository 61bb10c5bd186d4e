// Token files as other tools lay them out, byte by byte: llm.c's .bin
// shards and numpy.save's .npy arrays (for tests of src/data/token_file.cpp
// and of cllm prepare).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cllm::test {

inline void put_le(std::string& bytes, std::uint64_t v, unsigned width) {
  for (unsigned i = 0; i < width; ++i) bytes += static_cast<char>((v >> (8 * i)) & 0xff);
}

// llm.c's layout: 256 int32 (magic, version, count, zeros), then the ids.
// count: what the header says, if not the number of ids.
inline std::string llmc_bytes(int version, const std::vector<std::uint64_t>& ids,
                              std::optional<std::int32_t> count = std::nullopt,
                              std::int32_t magic = 20240520) {
  std::string bytes;
  put_le(bytes, static_cast<std::uint32_t>(magic), 4);
  put_le(bytes, static_cast<std::uint32_t>(version), 4);
  put_le(bytes, static_cast<std::uint32_t>(count.value_or(static_cast<std::int32_t>(ids.size()))), 4);
  bytes.resize(1024, '\0');
  for (const std::uint64_t id : ids) put_le(bytes, id, version == 1 ? 2 : 4);
  return bytes;
}

// numpy.save's layout: magic, version, header length, the dict padded with
// spaces to a multiple of 64 bytes and ended by a newline, the data.
inline std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const std::size_t preamble = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += '\0';
  put_le(bytes, header.size(), major == 1 ? 2 : 4);
  return bytes + header + data;
}

inline std::string npy_dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape +
         ", }";
}

// ids as a 1-D array of descr ('<u2' ...), negative ones two's complement.
inline std::string npy_of(const std::string& descr, const std::vector<std::int64_t>& ids, int major = 1) {
  const unsigned width = static_cast<unsigned>(descr[2] - '0');
  std::string data;
  for (const std::int64_t id : ids) put_le(data, static_cast<std::uint64_t>(id), width);
  return npy_bytes(npy_dict(descr, "(" + std::to_string(ids.size()) + ",)"), data, major);
}

}  // namespace cllm::test
