#include "cllm/io/token_spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cllm/io/durable_file.h"
#include "fd_io.h"

namespace cllm {

std::size_t token_element_size(int vocab_size) { return vocab_size <= 256 ? 1 : vocab_size <= 65536 ? 2 : 4; }

std::runtime_error TokenSpool::error(const char* what, int err) const {
  return std::runtime_error(dataset_.string() + ": " + what + " its spool file " + path_.filename().string() +
                            ": " + std::strerror(err));
}

TokenSpool::TokenSpool(const std::filesystem::path& dataset, const std::string& what, std::size_t element_size,
                       bool create)
    : dataset_(dataset),
      path_(temporary_name(dataset).string() + "." + what),
      owned_(create),
      element_size_(element_size) {
  fd_ = create ? ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
               : ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw error(create ? "cannot create" : "cannot open", errno);
  if (!create) {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw error("cannot read", errno);
    size_ = static_cast<std::uint64_t>(st.st_size) / element_size_;
  }
}

TokenSpool::TokenSpool(const std::filesystem::path& dataset, const std::string& what, std::size_t element_size)
    : TokenSpool(dataset, what, element_size, true) {}

TokenSpool TokenSpool::open(const std::filesystem::path& dataset, const std::string& what,
                            std::size_t element_size) {
  return TokenSpool(dataset, what, element_size, false);
}

TokenSpool::TokenSpool(TokenSpool&& o) noexcept
    : dataset_(std::move(o.dataset_)),
      path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      owned_(std::exchange(o.owned_, false)),
      element_size_(o.element_size_),
      size_(o.size_),
      scratch_(std::move(o.scratch_)) {}

TokenSpool::~TokenSpool() {
  if (fd_ < 0) return;
  ::close(fd_);
  std::error_code ec;
  if (owned_) std::filesystem::remove(path_, ec);
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
  if (const int err = io::write_all(fd_, bytes); err != 0) throw error("cannot write", err);
  size_ += bytes.size() / element_size_;
}

void TokenSpool::read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const {
  const auto offset = static_cast<off_t>(start * element_size_);
  if (const int err = io::pread_all(fd_, {out, count * element_size_}, offset); err != 0)
    throw error("cannot read", err);
}

FileTokens::FileTokens(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error(path_ + ": cannot open input file: " + std::strerror(errno));
}

FileTokens::FileTokens(FileTokens&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}

FileTokens::~FileTokens() {
  if (fd_ >= 0) ::close(fd_);
}

void FileTokens::read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const {
  // EIO for an early end: the file shrank since it was planned.
  if (const int err = io::pread_all(fd_, {out, count}, static_cast<off_t>(start)); err != 0)
    throw std::runtime_error(path_ + ": cannot read input file: " + std::strerror(err));
}

TokenStream::TokenStream(std::vector<SpoolRange> pieces) : pieces_(std::move(pieces)) {
  for (const SpoolRange& piece : pieces_) size_ += piece.size();
}

void TokenStream::read_bytes(std::uint64_t start, std::size_t count, unsigned char* out) const {
  if (start + count > size_) throw std::logic_error("a token stream read past its end");
  for (const SpoolRange& piece : pieces_) {
    if (count == 0) return;
    if (start >= piece.size()) {
      start -= piece.size();
      continue;
    }
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(count, piece.size() - start));
    piece.spool->read_bytes(piece.begin + start, n, out);
    out += n * piece.spool->element_size();
    count -= n;
    start = 0;
  }
}

TokenStream TokenStream::slice(std::uint64_t begin, std::uint64_t end) const {
  std::vector<SpoolRange> kept;
  std::uint64_t at = 0;  // of the piece's first token, in this stream
  for (const SpoolRange& piece : pieces_) {
    const std::uint64_t from = std::max(begin, at), to = std::min(end, at + piece.size());
    if (from < to) kept.push_back({piece.spool, piece.begin + (from - at), piece.begin + (to - at)});
    at += piece.size();
  }
  return TokenStream(std::move(kept));
}

}  // namespace cllm
