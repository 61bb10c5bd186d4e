// Writing files so that a crash at any moment leaves either the old file or
// the complete new one: write to a temporary name, fsync, rename, fsync the
// folder (the rename is durable only once the folder's entry is).
#pragma once

#include <filesystem>
#include <span>
#include <string_view>

namespace cllm {

// fsync of a file or a folder. Throws std::runtime_error naming the path.
void fsync_path(const std::filesystem::path& path);

// The temporary name a file is written under before it is renamed into
// place: in the same folder, so the rename is atomic, and hidden (a leading
// dot) from globs of finished files.
std::filesystem::path temporary_name(const std::filesystem::path& path);
// Whether a file name (no folder) is such a temporary name.
bool is_temporary_name(std::string_view name);

// Writes contents to path durably: to temporary_name(path) with plain
// write(2)s, fsync, rename, fsync of the folder. On any failure (a full disk
// among them) the temporary is removed and std::runtime_error names path;
// the old file at path is untouched.
void write_durably(const std::filesystem::path& path, std::span<const unsigned char> contents);

}  // namespace cllm
