// Reader for the "CLLM tensor file" format that tests/reference/tensorfile.py
// writes: named float32/int32 arrays, used for the PyTorch reference data.
// Layout: magic "CLLMTNS1", u32 count, then per record u32 name length, name,
// u32 dtype (0 float32, 1 int32), u32 ndim, ndim x u64 dims, raw data; all
// little-endian, no padding.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace cllm::test {

struct TensorRecord {
  std::vector<std::int64_t> shape;
  std::vector<float> f32;         // dtype 0
  std::vector<std::int32_t> i32;  // dtype 1
};

// Throws std::runtime_error naming the file on any format error.
std::map<std::string, TensorRecord> read_tensor_file(const std::filesystem::path& path);

}  // namespace cllm::test
