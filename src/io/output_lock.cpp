#include "cllm/io/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cllm {

OutputLock::OutputLock(const std::filesystem::path& folder) {
  const std::filesystem::path path = folder / ".lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error(folder.string() + ": output folder is not writable (cannot create " +
                             path.filename().string() + ": " + std::strerror(errno) + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[256] = {};
    const ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
    std::string who = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : "";
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      throw std::runtime_error(path.string() + ": cannot lock: " + std::strerror(err));
    throw std::runtime_error(folder.string() + ": in use by another cllm run (" +
                             (who.empty() ? std::string("holder unknown") : who) +
                             "); wait for it to end, or choose another --out");
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string who = "host " + std::string(host) + ", pid " + std::to_string(::getpid()) + "\n";
  // Best effort: the lock holds whether or not its note is written.
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t written = ::pwrite(fd_, who.data(), who.size(), 0);
  }
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace cllm
