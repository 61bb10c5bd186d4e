#include "cllm/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cllm {

void fsync_path(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error(path.string() + ": cannot open for fsync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(path.string() + ": fsync failed: " + std::strerror(err));
}

std::filesystem::path temporary_name(const std::filesystem::path& path) {
  std::string name = ".";  // appended piecewise: GCC 12 warns falsely on "." + s + ".tmp"
  name += path.filename().string();
  name += ".tmp";
  return path.parent_path() / name;
}

void commit_file(const std::filesystem::path& tmp, const std::filesystem::path& path) {
  fsync_path(tmp);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error(path.string() + ": cannot rename into place: " + ec.message());
  const auto folder = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  fsync_path(folder);
}

}  // namespace cllm
