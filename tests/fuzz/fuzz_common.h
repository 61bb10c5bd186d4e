// Shared by the fuzz drivers: a per-process scratch file that each input is
// written to, since the readers under test take paths, as cllm does.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace cllm::fuzz {

// $CLLM_FUZZ_TMPDIR, else /dev/shm (no disk writes at thousands of inputs a
// second), else $TMPDIR or /tmp; the process id keeps parallel fuzzers
// (-jobs, -workers) apart. The file is removed when the process exits.
// One scratch file per process: the first call's name is kept.
inline const std::filesystem::path& scratch_file(const std::string& name) {
  static const std::filesystem::path path = [&] {
    std::filesystem::path dir;
    if (const char* d = std::getenv("CLLM_FUZZ_TMPDIR"); d && *d) {
      dir = d;
    } else if (std::filesystem::is_directory("/dev/shm") && access("/dev/shm", W_OK) == 0) {
      dir = "/dev/shm";
    } else {
      const char* t = std::getenv("TMPDIR");
      dir = t && *t ? t : "/tmp";
    }
    return dir / ("cllm-fuzz-" + std::to_string(getpid()) + "-" + name);
  }();
  static const bool registered = [] {
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    });
    return true;
  }();
  (void)registered;
  return path;
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

}  // namespace cllm::fuzz
