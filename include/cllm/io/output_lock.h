// One run per output folder: two runs on the same --out would take over each
// other's checkpoints, delete each other's temporary files and interleave
// their metrics. A run holds an advisory lock (flock) on OUT/.lock for its
// whole life; the file names the holder's host and process for the error a
// second run prints. The kernel drops the lock when the holder dies, however
// it dies, so a lock is never stale (on a network file system flock must be
// supported for the lock to hold across nodes: NFSv4 and Lustre with
// -o flock do).
#pragma once

#include <filesystem>

namespace cllm {

class OutputLock {
 public:
  // Takes the lock on folder/.lock without waiting. Throws
  // std::runtime_error naming the folder and the holder's host and PID when
  // another process holds it, or saying the folder is not writable when the
  // lock file cannot be made.
  explicit OutputLock(const std::filesystem::path& folder);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace cllm
