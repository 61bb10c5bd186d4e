#include "cllm/io/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "cllm/data/read_file.h"

namespace cllm {

namespace {

// Closes a file descriptor when it goes out of scope.
struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::runtime_error io_error(const char* what, int err) {
  return std::runtime_error(std::string(what) + ": " + std::strerror(err));
}

void write_all(const std::filesystem::path& tmp, std::span<const unsigned char> contents) {
  FileDescriptor f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (f.fd < 0) throw io_error("cannot create its temporary file", errno);
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(f.fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error("write failed", errno);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(f.fd) != 0) throw io_error("fsync failed", errno);
  const int fd = std::exchange(f.fd, -1);
  if (::close(fd) != 0) throw io_error("close failed", errno);
}

}  // namespace

void fsync_path(const std::filesystem::path& path) {
  FileDescriptor f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw std::runtime_error(path.string() + ": cannot open for fsync: " + std::strerror(errno));
  if (::fsync(f.fd) != 0) throw std::runtime_error(path.string() + ": fsync failed: " + std::strerror(errno));
}

// A temporary name is the final one between these two.
constexpr std::string_view kTemporaryPrefix = ".", kTemporarySuffix = ".tmp";

std::filesystem::path temporary_name(const std::filesystem::path& path) {
  std::string name(kTemporaryPrefix);  // appended piecewise: GCC 12 warns falsely on "." + s + ".tmp"
  name += path.filename().string();
  name += kTemporarySuffix;
  return path.parent_path() / name;
}

std::optional<std::string_view> final_name(std::string_view temporary) {
  if (temporary.size() <= kTemporaryPrefix.size() + kTemporarySuffix.size() ||
      !temporary.starts_with(kTemporaryPrefix) || !temporary.ends_with(kTemporarySuffix))
    return std::nullopt;
  temporary.remove_prefix(kTemporaryPrefix.size());
  temporary.remove_suffix(kTemporarySuffix.size());
  return temporary;
}

void write_durably(const std::filesystem::path& path, std::span<const unsigned char> contents) {
  const auto tmp = temporary_name(path);
  try {
    write_all(tmp, contents);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw std::runtime_error("cannot rename into place: " + ec.message());
    fsync_path(path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path());
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error(naming_file(path, e.what()));
  }
}

}  // namespace cllm
