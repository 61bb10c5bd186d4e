// Shared by the fuzz drivers: a per-process scratch file that each input is
// written to, since the readers under test take paths, as cllm does.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "cllm/io/file_checksum.h"

namespace cllm::fuzz {

// $CLLM_FUZZ_TMPDIR, else /dev/shm (no disk writes at thousands of inputs a
// second), else $TMPDIR or /tmp; the process id keeps parallel fuzzers
// (-jobs, -workers) apart. One file per name, so that a driver may pick the
// name (the readers go by the extension) input by input; the files are
// removed when the process exits.
inline const std::filesystem::path& scratch_file(const std::string& name) {
  static const std::filesystem::path dir = [] {
    if (const char* d = std::getenv("CLLM_FUZZ_TMPDIR"); d && *d) return std::filesystem::path(d);
    if (std::filesystem::is_directory("/dev/shm") && access("/dev/shm", W_OK) == 0)
      return std::filesystem::path("/dev/shm");
    const char* t = std::getenv("TMPDIR");
    return std::filesystem::path(t && *t ? t : "/tmp");
  }();
  // A function's static, not a global: destroyed after the atexit handler
  // below, which is registered after it is made.
  static std::map<std::string, std::filesystem::path> paths;
  static const bool registered = [] {
    std::atexit([] {
      std::error_code ec;
      for (const auto& [n, p] : paths) std::filesystem::remove(p, ec);
    });
    return true;
  }();
  (void)registered;
  auto it = paths.find(name);
  if (it == paths.end())
    it = paths.emplace(name, dir / ("cllm-fuzz-" + std::to_string(getpid()) + "-" + name)).first;
  return it->second;
}

// Writes the input to the scratch file; aborts if it cannot (a harness
// failure, not a finding).
inline const std::filesystem::path& write_input(const std::string& name, const std::uint8_t* data,
                                                std::size_t size) {
  const std::filesystem::path& path = scratch_file(name);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

// A broken promise of the code under test: report it as a crash.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Gives the input to read, a reader of cllm's HDF5 files that throws
// std::exception on a bad file, each way such a file can come:
// - as it is: a file without a checksum (file_checksum.h) goes to HDF5, as
//   h5py's and old cllm files do; one whose checksum does not match must be
//   refused with the checksum's message, before HDF5 sees it (else: a
//   finding);
// - when it starts with a checksum header, again with its checksum written
//   afresh, so that the fuzzed bytes get past the checksum and exercise HDF5
//   and cllm's reader as a file cllm wrote would.
template <class Read>
void read_each_way(const std::string& name, const std::uint8_t* data, std::size_t size, const Read& read) {
  const std::filesystem::path& path = write_input(name, data, size);
  std::string refusal;  // the checksum's, if it refuses the file
  try {
    (void)verify_file_checksum(path);
  } catch (const std::exception& e) {
    refusal = e.what();
  }
  bool read_it = true;
  try {
    read(path);
  } catch (const std::exception& e) {
    read_it = false;
    if (!refusal.empty() && std::string_view(e.what()).find(refusal) == std::string_view::npos)
      fail("a file whose checksum does not match was not refused by it (" + refusal + "), but: " + e.what());
  }
  if (read_it && !refusal.empty()) fail("a file whose checksum does not match was read (" + refusal + ")");
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (size < kChecksumHeaderBytes || !bytes.starts_with(kChecksumMagic)) return;
  write_file_checksum(path);
  try {
    read(path);
  } catch (const std::exception&) {
  }
}

}  // namespace cllm::fuzz
