#include "cllm/base/read_file.h"

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "cllm/base/out_of_memory.h"

namespace cllm {

void require_regular_file(const std::filesystem::path& path, const std::string& kind) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw std::runtime_error(path.string() + ": no such " + kind);
  if (!std::filesystem::is_regular_file(status)) throw std::runtime_error(path.string() + ": not a regular file");
}

std::string read_file(const std::filesystem::path& path, const std::string& kind) {
  const std::string name = path.string();
  std::error_code ec;
  require_regular_file(path, kind);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(name + ": cannot open " + kind);
  const auto size = std::filesystem::file_size(path, ec);
  std::string bytes;
  try {
    if (!ec) bytes.resize(size);
  } catch (const std::exception&) {  // bad_alloc, or length_error past max_size
    throw OutOfMemory(name + ": out of memory: cannot allocate " +
                             std::to_string(size / 1048576) + " MiB to read the " + kind);
  }
  // One read of the size the file had (a character at a time ran at a few
  // hundred MB/s), then whatever it has grown by since.
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (in) bytes.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error(name + ": read error");
  return bytes;
}

std::string naming_file(const std::filesystem::path& path, const std::string& what) {
  return what.rfind(path.string(), 0) == 0 ? what : path.string() + ": " + what;
}

}  // namespace cllm
