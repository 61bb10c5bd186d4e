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

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace cllm
