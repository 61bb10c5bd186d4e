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

void write_durably(const std::filesystem::path& path,
                   const std::function<void(const std::filesystem::path& tmp)>& write) {
  const auto tmp = temporary_name(path);
  try {
    write(tmp);
    commit_file(tmp, path);
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    const std::string what = e.what();
    throw std::runtime_error(what.rfind(path.string(), 0) == 0 ? what
                                                              : path.string() + ": " + what);
  }
}

}  // namespace cllm
