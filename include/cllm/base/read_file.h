// Reading a whole file into memory, with the one-line errors the command
// line prints ("PATH: no such data file"), and naming files in errors.
#pragma once

#include <filesystem>
#include <string>

namespace cllm {

// Throws std::runtime_error "PATH: no such KIND" where nothing is there, and
// "PATH: not a regular file" for a folder, a device or a FIFO (which a read
// would block on).
void require_regular_file(const std::filesystem::path& path, const std::string& kind = "file");

// The file's bytes. kind names it in messages ("data file", "input file"):
// throws require_regular_file's errors, "PATH: cannot open KIND" or
// "PATH: read error", and OutOfMemory (out_of_memory.h) for a file too big
// to hold.
std::string read_file(const std::filesystem::path& path, const std::string& kind = "file");

// "PATH: what", unless what already starts with the path: errors name their
// file once, however many layers add it.
std::string naming_file(const std::filesystem::path& path, const std::string& what);

}  // namespace cllm
