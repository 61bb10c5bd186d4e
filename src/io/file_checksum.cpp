#include "cllm/io/file_checksum.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/data/sha256.h"
#include "fd_io.h"

namespace cllm {

namespace {

constexpr std::string_view kMagic = kChecksumMagic;
// A forged header's block size must not make millions of block hashes.
constexpr std::uint64_t kMinBlockBytes = std::uint64_t{64} << 10,
                        kMaxBlockBytes = std::uint64_t{1} << 40;
// Each thread reads its block in pieces of this size.
constexpr std::size_t kReadBytes = std::size_t{1} << 20;

// Closes a file descriptor when it goes out of scope.
struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::runtime_error io_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

// The header as written: its lines, then NULs to kChecksumHeaderBytes.
std::string header_text(std::uint64_t length, std::uint64_t block, const std::string& sha256) {
  std::string text(kMagic);
  text += "length " + std::to_string(length) + "\nblock " + std::to_string(block) + "\nsha256 " +
          sha256 + "\n";
  text.resize(kChecksumHeaderBytes, '\0');
  return text;
}

std::uint64_t blocks_of(std::uint64_t begin, std::uint64_t end, std::uint64_t block) {
  return end > begin ? (end - begin + block - 1) / block : 0;
}

// The hex SHA-256s of blocks [first, last) of the bytes [begin, end), on
// all threads; hash_block(from, to, sha) feeds the bytes [from, to) into sha.
template <class HashBlock>
std::vector<std::string> block_hashes(std::uint64_t begin, std::uint64_t end, std::uint64_t block,
                                      std::uint64_t first, std::uint64_t last, const HashBlock& hash_block) {
  last = std::min(last, blocks_of(begin, end, block));
  std::vector<std::string> hex(last > first ? last - first : 0);
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(hex.size()); ++i) {
    try {
      const std::uint64_t from = begin + (first + static_cast<std::uint64_t>(i)) * block;
      Sha256 sha;
      hash_block(from, std::min(end, from + block), sha);
      hex[static_cast<std::size_t>(i)] = sha.hex();
    } catch (...) {
#pragma omp critical(cllm_block_hashes)
      failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  return hex;
}

// SHA-256 over the blocks' hex SHA-256s, each and a newline.
std::string top_sha256(const std::vector<std::string>& hex) {
  Sha256 top;
  for (const std::string& h : hex) {
    top.update(h);
    top.update("\n");
  }
  return top.hex();
}

std::vector<std::string> file_blocks(int fd, std::uint64_t size, std::uint64_t block, std::uint64_t first,
                                     std::uint64_t last) {
  return block_hashes(
      kChecksumHeaderBytes, size, block, first, last, [&](std::uint64_t from, std::uint64_t to, Sha256& sha) {
        std::vector<unsigned char> buffer(std::min<std::uint64_t>(kReadBytes, to - from));
        for (std::uint64_t at = from; at < to; at += buffer.size()) {
          const std::span<unsigned char> piece(buffer.data(),
                                               std::min<std::uint64_t>(buffer.size(), to - at));
          if (const int error = io::pread_all(fd, piece, static_cast<off_t>(at)); error != 0)
            throw io_error("cannot read it for its checksum", error);
          sha.update({reinterpret_cast<const char*>(piece.data()), piece.size()});
        }
      });
}

std::string file_tree_sha256(int fd, std::uint64_t size, std::uint64_t block) {
  return top_sha256(file_blocks(fd, size, block, 0, ~std::uint64_t{0}));
}

void check_block(std::uint64_t block) {
  if (block < kMinBlockBytes || block > kMaxBlockBytes)
    throw std::logic_error("write_file_checksum: a block of " + std::to_string(block) + " bytes");
}

std::uint64_t file_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw io_error("cannot stat it", errno);
  return static_cast<std::uint64_t>(st.st_size);
}

// The number after `key ` on the line starting at text[at]; at moves past it.
bool parse_field(std::string_view text, std::size_t& at, std::string_view key,
                 std::uint64_t& value) {
  if (text.substr(at, key.size() + 1) != std::string(key) + " ") return false;
  at += key.size() + 1;
  const char* first = text.data() + at;
  const auto [end, error] = std::from_chars(first, text.data() + text.size(), value);
  if (error != std::errc() || end == first) return false;
  at += static_cast<std::size_t>(end - first);
  return true;
}

[[noreturn]] void damaged(const std::string& why) {
  throw std::runtime_error("damaged: its checksum does not match (" + why + ")");
}

}  // namespace

void write_file_checksum(const std::filesystem::path& path, std::uint64_t block_bytes) {
  write_file_checksum(path, file_block_hashes(path, 0, ~std::uint64_t{0}, block_bytes), block_bytes);
}

std::uint64_t checksum_blocks(std::uint64_t file_size, std::uint64_t block_bytes) {
  return blocks_of(kChecksumHeaderBytes, file_size, block_bytes);
}

std::vector<std::string> file_block_hashes(const std::filesystem::path& path, std::uint64_t first,
                                           std::uint64_t last, std::uint64_t block_bytes) {
  check_block(block_bytes);
  FileDescriptor f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw io_error(path.string() + ": cannot open it for its checksum", errno);
  return file_blocks(f.fd, file_size(f.fd), block_bytes, first, last);
}

void write_file_checksum(const std::filesystem::path& path, const std::vector<std::string>& block_hashes,
                         std::uint64_t block_bytes) {
  check_block(block_bytes);
  FileDescriptor f{::open(path.c_str(), O_RDWR | O_CLOEXEC)};
  if (f.fd < 0) throw io_error(path.string() + ": cannot open it to write its checksum", errno);
  const std::uint64_t size = file_size(f.fd);
  if (size < kChecksumHeaderBytes)
    throw std::logic_error(path.string() + ": no room for a checksum");
  if (block_hashes.size() != checksum_blocks(size, block_bytes))
    throw std::logic_error(path.string() + ": block hashes for another size of file");
  const std::string header = header_text(size, block_bytes, top_sha256(block_hashes));
  if (const int error =
          io::pwrite_all(f.fd, {reinterpret_cast<const unsigned char*>(header.data()), header.size()}, 0);
      error != 0)
    throw io_error(path.string() + ": cannot write its checksum", error);
}

void write_file_checksum(std::span<unsigned char> image, std::uint64_t block_bytes) {
  check_block(block_bytes);
  if (image.size() < kChecksumHeaderBytes)
    throw std::logic_error("write_file_checksum: no room for a checksum");
  const std::string sha = top_sha256(block_hashes(
      kChecksumHeaderBytes, image.size(), block_bytes, 0, ~std::uint64_t{0},
      [&](std::uint64_t from, std::uint64_t to, Sha256& s) {
        s.update({reinterpret_cast<const char*>(image.data() + from), static_cast<std::size_t>(to - from)});
      }));
  const std::string header = header_text(image.size(), block_bytes, sha);
  std::copy(header.begin(), header.end(), image.begin());
}

FileChecksum verify_file_checksum(const std::filesystem::path& path) {
  FileDescriptor f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw io_error("cannot open", errno);
  const std::uint64_t size = file_size(f.fd);
  if (size < kChecksumHeaderBytes) return FileChecksum::absent;
  std::string header(kChecksumHeaderBytes, '\0');
  if (const int error =
          io::pread_all(f.fd, {reinterpret_cast<unsigned char*>(header.data()), header.size()}, 0);
      error != 0)
    throw io_error("cannot read", error);
  if (!std::string_view(header).starts_with(kMagic)) return FileChecksum::absent;
  // Read strictly: the fields parsed must give back the header byte for byte.
  std::size_t at = kMagic.size();
  std::uint64_t length = 0, block = 0;
  const bool parsed = parse_field(header, at, "length", length) && header[at++] == '\n' &&
                      parse_field(header, at, "block", block) && header[at++] == '\n' &&
                      std::string_view(header).substr(at, 7) == "sha256 ";
  const std::string stated = parsed ? header.substr(at + 7, kSha256HexChars) : "";
  if (!parsed || block < kMinBlockBytes || block > kMaxBlockBytes ||
      header_text(length, block, stated) != header)
    damaged("its checksum header is unreadable");
  if (length != size)
    damaged("the file has " + std::to_string(size) + " bytes, its checksum header says " +
            std::to_string(length));
  const std::string found = file_tree_sha256(f.fd, size, block);
  if (found != stated)
    damaged("the SHA-256 of its bytes is " + found.substr(0, 16) +
            "..., its checksum header says " + stated.substr(0, 16) + "...");
  return FileChecksum::verified;
}

}  // namespace cllm
