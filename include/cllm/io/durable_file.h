// Writing files so that a crash at any moment leaves either the old file or
// the complete new one: write to a temporary name, fsync, rename, fsync the
// folder (the rename is durable only once the folder's entry is).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>
#include <thread>

namespace cllm {

// fsync of a file or a folder. Throws std::runtime_error naming the path.
void fsync_path(const std::filesystem::path& path);

// The temporary name a file is written under before it is renamed into
// place: in the same folder, so the rename is atomic, and hidden (a leading
// dot) from globs of finished files.
std::filesystem::path temporary_name(const std::filesystem::path& path);
// The reverse, on a file name (no folder): the name the temporary file
// would have been renamed to (".x.h5.tmp" -> "x.h5"); nullopt for a name
// that is no temporary one. This file owns the scheme: whoever cleans up
// after killed writes asks here which files were theirs.
std::optional<std::string_view> final_name(std::string_view temporary);

// A file written piece by piece, durably: to temporary_name(path) with plain
// write(2)s; commit() fsyncs it, renames it into place and fsyncs the
// folder. Destroyed uncommitted (an exception on the way), it removes the
// temporary and leaves any old file at path untouched. Errors are
// std::runtime_error naming path.
class DurableWriter {
 public:
  explicit DurableWriter(std::filesystem::path path);
  ~DurableWriter();
  DurableWriter(const DurableWriter&) = delete;
  DurableWriter& operator=(const DurableWriter&) = delete;

  // Reserves room for bytes in the file (fallocate, the size unchanged), so
  // that writes others make through temporary_path() cannot meet a full
  // disk (HDF5 crashes at exit after a failed write). False where the room
  // is not there or the file system cannot reserve it.
  bool try_reserve(std::uint64_t bytes) noexcept { return reserve(bytes) == 0; }
  // The same, returning 0 or why not (errno: ENOSPC, EOPNOTSUPP...).
  int reserve(std::uint64_t bytes) noexcept;
  const std::filesystem::path& temporary_path() const { return tmp_; }
  void write(std::span<const unsigned char> bytes);
  void write(std::span<const float> values) {
    write({reinterpret_cast<const unsigned char*>(values.data()), values.size_bytes()});
  }
  // Starts what is written so far to disk on a thread of its own, so that
  // the last writes (a checksum, which reads the file back) run beside it
  // and commit's fsync has only those left.
  void start_sync();
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
  bool reserved_ = false;
  std::jthread sync_;
  int sync_error_ = 0;  // its errno
  void wait_for_sync();
};

// Writes contents to path durably (a DurableWriter of one write): to temporary_name(path) with plain
// write(2)s, fsync, rename, fsync of the folder. On any failure (a full disk
// among them) the temporary is removed and std::runtime_error names path;
// the old file at path is untouched.
void write_durably(const std::filesystem::path& path, std::span<const unsigned char> contents);

}  // namespace cllm
