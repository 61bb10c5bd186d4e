// Reading a whole file into memory, with the one-line errors the command
// line prints ("PATH: no such data file").
#pragma once

#include <filesystem>
#include <string>

namespace cllm {

// The file's bytes. kind names it in messages ("data file", "input file"):
// throws std::runtime_error "PATH: no such KIND", "PATH: cannot open KIND" or
// "PATH: read error".
std::string read_file(const std::filesystem::path& path, const std::string& kind = "file");

}  // namespace cllm
