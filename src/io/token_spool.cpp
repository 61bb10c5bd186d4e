#include "cllm/io/token_spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cllm/io/durable_file.h"

namespace cllm {

std::runtime_error TokenSpool::error(const char* what, int err) const {
  return std::runtime_error(dataset_.string() + ": " + what + " its spool file " + path_.filename().string() +
                            ": " + std::strerror(err));
}

TokenSpool::TokenSpool(const std::filesystem::path& dataset, const std::string& what, int vocab_size)
    : dataset_(dataset),
      path_(temporary_name(dataset).string() + "." + what),
      element_size_(vocab_size <= 256 ? 1 : vocab_size <= 65536 ? 2 : 4) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) throw error("cannot create", errno);
}

TokenSpool::~TokenSpool() {
  ::close(fd_);
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

void TokenSpool::append(std::span<const std::int32_t> tokens) {
  scratch_.resize(tokens.size() * element_size_);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    for (std::size_t b = 0; b < element_size_; ++b)
      scratch_[i * element_size_ + b] = static_cast<unsigned char>(static_cast<std::uint32_t>(tokens[i]) >> (8 * b));
  append_bytes(scratch_);
}

void TokenSpool::append_bytes(std::span<const unsigned char> bytes) {
  if (bytes.size() % element_size_ != 0) throw std::logic_error("a spool takes whole tokens");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw error("cannot write", errno);
    done += static_cast<std::size_t>(n);
  }
  size_ += bytes.size() / element_size_;
}

void TokenSpool::read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const {
  const std::size_t want = count * element_size_;
  std::size_t done = 0;
  while (done < want) {
    const ssize_t n = ::pread(fd_, out + done, want - done, static_cast<off_t>(start * element_size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw error("cannot read", n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace cllm
