// Writing files so that a crash at any moment leaves either the old file or
// the complete new one: write to a temporary name, fsync, rename, fsync the
// folder (the rename is durable only once the folder's entry is).
#pragma once

#include <filesystem>
#include <functional>

namespace cllm {

// fsync of a file or a folder. Throws std::runtime_error naming the path.
void fsync_path(const std::filesystem::path& path);

// The temporary name a file is written under before commit_file: in the same
// folder, so the rename is atomic, and hidden from globs of finished files.
std::filesystem::path temporary_name(const std::filesystem::path& path);

// fsyncs tmp, renames it to path, fsyncs the folder. Throws
// std::runtime_error naming the path.
void commit_file(const std::filesystem::path& tmp, const std::filesystem::path& path);

// Writes path durably: write(tmp) fills the temporary file (and closes it),
// then commit_file. On any failure the temporary is removed and the error is
// rethrown as std::runtime_error naming path (once), the old file untouched.
void write_durably(const std::filesystem::path& path,
                   const std::function<void(const std::filesystem::path& tmp)>& write);

}  // namespace cllm
