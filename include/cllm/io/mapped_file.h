// A file mapped read-only into memory: its bytes without a copy into memory
// of our own (a 500 MB model file read whole would double an import's peak).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace cllm {

class MappedFile {
 public:
  // Throws std::runtime_error "PATH: no such KIND" or "PATH: cannot map KIND".
  MappedFile(const std::filesystem::path& path, const std::string& kind);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }
  // Gives the pages of bytes [begin, end) back to the page cache; they are
  // read again if touched. A file read once, front to back, then costs
  // memory for one piece at a time, not for the whole file.
  void release(std::size_t begin, std::size_t end) const;

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace cllm
