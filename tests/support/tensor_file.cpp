#include "support/tensor_file.h"

#include <bit>
#include <fstream>
#include <stdexcept>

namespace cllm::test {

static_assert(std::endian::native == std::endian::little, "tensor files are little-endian");

std::map<std::string, TensorRecord> read_tensor_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(name + ": cannot open tensor file");
  auto fail = [&](const std::string& why) { throw std::runtime_error(name + ": " + why); };
  auto read = [&](void* dst, std::size_t bytes) {
    if (!in.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes)))
      fail("truncated tensor file");
  };
  char magic[8];
  read(magic, 8);
  if (std::string(magic, 8) != "CLLMTNS1") fail("not a CLLM tensor file (bad magic)");
  std::uint32_t count = 0;
  read(&count, 4);
  std::map<std::string, TensorRecord> out;
  for (std::uint32_t r = 0; r < count; ++r) {
    std::uint32_t len = 0, dtype = 0, ndim = 0;
    read(&len, 4);
    std::string key(len, '\0');
    read(key.data(), len);
    read(&dtype, 4);
    read(&ndim, 4);
    TensorRecord rec;
    std::size_t numel = 1;
    for (std::uint32_t d = 0; d < ndim; ++d) {
      std::uint64_t dim = 0;
      read(&dim, 8);
      rec.shape.push_back(static_cast<std::int64_t>(dim));
      numel *= dim;
    }
    if (dtype == 0) {
      rec.f32.resize(numel);
      read(rec.f32.data(), numel * 4);
    } else if (dtype == 1) {
      rec.i32.resize(numel);
      read(rec.i32.data(), numel * 4);
    } else {
      fail("record " + key + " has unknown dtype " + std::to_string(dtype));
    }
    out.emplace(std::move(key), std::move(rec));
  }
  return out;
}

}  // namespace cllm::test
