#include "cllm/io/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "cllm/base/read_file.h"
#include "fd_io.h"

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

DurableWriter::DurableWriter(std::filesystem::path path)
    : path_(std::move(path)), tmp_(temporary_name(path_)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error(naming_file(path_, io_error("cannot create its temporary file", errno).what()));
}

DurableWriter::~DurableWriter() {
  wait_for_sync();  // before its file descriptor goes
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

int DurableWriter::reserve(std::uint64_t bytes) noexcept {
  reserved_ = true;  // also a failed try: it may have reserved a part
  return ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes)) == 0 ? 0 : errno;
}

void DurableWriter::write(std::span<const unsigned char> bytes) {
  if (const int error = io::write_all(fd_, bytes); error != 0)
    throw std::runtime_error(naming_file(path_, io_error("write failed", error).what()));
}

void DurableWriter::start_sync() {
  wait_for_sync();
  sync_ = std::jthread([this] { sync_error_ = ::fdatasync(fd_) == 0 ? 0 : errno; });
}

void DurableWriter::wait_for_sync() {
  if (sync_.joinable()) sync_.join();
}

void DurableWriter::commit() {
  try {
    struct stat st {};
    // Gives back the reserved room the file did not use.
    wait_for_sync();
    if (sync_error_ != 0) throw io_error("fsync failed", sync_error_);
    if (reserved_ && (::fstat(fd_, &st) != 0 || ::ftruncate(fd_, st.st_size) != 0))
      throw io_error("cannot trim", errno);
    if (::fsync(fd_) != 0) throw io_error("fsync failed", errno);
    if (::close(std::exchange(fd_, -1)) != 0) throw io_error("close failed", errno);
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) throw std::runtime_error("cannot rename into place: " + ec.message());
    tmp_.clear();  // renamed: nothing to remove
    fsync_path(path_.parent_path().empty() ? std::filesystem::path(".") : path_.parent_path());
  } catch (const std::exception& e) {
    throw std::runtime_error(naming_file(path_, e.what()));
  }
}

void write_durably(const std::filesystem::path& path, std::span<const unsigned char> contents) {
  DurableWriter file(path);
  file.write(contents);
  file.commit();
}

}  // namespace cllm
