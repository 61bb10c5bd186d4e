#include "cllm/data/token_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <type_traits>

#include "cllm/data/sha256.h"

namespace cllm {

namespace fs = std::filesystem;

namespace {

constexpr std::int32_t kLlmcMagic = 20240520;  // llm.c's dev/data/data_common.py
constexpr std::size_t kLlmcHeaderBytes = 256 * 4;
// A 1-D integer array's header is under 128 bytes; numpy itself refuses
// headers over 10,000 bytes unless told otherwise.
constexpr std::uint64_t kNpyMaxHeaderBytes = 65536;

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return ext;
}

// Byte by byte, so the order is the file's whatever the machine's (the
// compilers turn it into one load).
std::uint64_t load_le(const unsigned char* p, unsigned bytes) {
  std::uint64_t v = 0;
  for (unsigned i = bytes; i-- > 0;) v = v << 8 | p[i];
  return v;
}

// Converts n ids of type U (little-endian; Signed: two's complement) to
// int32; returns the index of the first outside [0, vocab), or n.
template <typename U, bool Signed>
std::size_t decode(const unsigned char* p, std::size_t n, std::int32_t* out, std::int64_t vocab) {
  for (std::size_t i = 0; i < n; ++i, p += sizeof(U)) {
    U u = 0;
    for (std::size_t b = 0; b < sizeof(U); ++b) u = static_cast<U>(u | static_cast<U>(U{p[b]} << (8 * b)));
    if constexpr (Signed) {
      const auto s = static_cast<std::make_signed_t<U>>(u);
      if (s < 0 || static_cast<std::int64_t>(s) >= vocab) return i;
      out[i] = static_cast<std::int32_t>(s);
    } else {
      if (static_cast<std::uint64_t>(u) >= static_cast<std::uint64_t>(vocab)) return i;
      out[i] = static_cast<std::int32_t>(u);
    }
  }
  return n;
}

// The dict of a .npy header, as numpy writes it:
//   {'descr': '<u2', 'fortran_order': False, 'shape': (12345,), }
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::uint64_t> shape;
};

// The few Python literals that dict holds: quoted strings without escapes,
// True and False, tuples of whole numbers. Never looks past the text.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  NpyHeader parse() {
    NpyHeader header;
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        once(seen_descr, key);
        if (peek() != '\'' && peek() != '"')
          refuse("its 'descr' is not a string (a structured dtype?); token ids must be one integer per element");
        header.descr = string();
      } else if (key == "fortran_order") {
        once(seen_fortran, key);
        header.fortran_order = boolean();
      } else if (key == "shape") {
        once(seen_shape, key);
        header.shape = tuple();
      } else {
        refuse("its header has a key '" + key + "' besides 'descr', 'fortran_order' and 'shape'");
      }
      skip_space();
      if (peek() == '}') break;
      expect(',');
    }
    ++at_;  // the '}'
    skip_space();  // numpy pads with spaces and ends with a newline
    if (at_ != text_.size()) fail("text after the closing '}'");
    if (!seen_descr) refuse("its header has no 'descr'");
    if (!seen_fortran) refuse("its header has no 'fortran_order'");
    if (!seen_shape) refuse("its header has no 'shape'");
    return header;
  }

 private:
  char peek() const { return at_ < text_.size() ? text_[at_] : '\0'; }

  void skip_space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r'))
      ++at_;
  }

  void expect(char c) {
    if (at_ >= text_.size() || text_[at_] != c) fail(std::string("expected '") + c + "'");
    ++at_;
  }

  std::string string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const std::size_t start = ++at_;
    while (at_ < text_.size() && text_[at_] != quote) {
      if (text_[at_] == '\\') fail("a string with an escape");
      ++at_;
    }
    if (at_ >= text_.size()) fail("a string that does not end");
    return std::string(text_.substr(start, at_++ - start));
  }

  bool boolean() {
    for (const bool value : {true, false}) {
      const std::string_view word = value ? "True" : "False";
      if (text_.substr(at_, word.size()) == word) {
        at_ += word.size();
        return value;
      }
    }
    fail("expected True or False");
  }

  std::uint64_t integer() {
    const std::size_t start = at_;
    std::uint64_t v = 0;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') {
      const auto digit = static_cast<std::uint64_t>(text_[at_] - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) fail("a dimension too large");
      v = v * 10 + digit;
      ++at_;
    }
    if (at_ == start) fail("expected a whole number");
    if (peek() == 'L') ++at_;  // Python 2's long, in files it wrote
    return v;
  }

  // (), (N,), (N, M), (N, M,) ...; (N) is a number in Python, not a tuple.
  std::vector<std::uint64_t> tuple() {
    expect('(');
    std::vector<std::uint64_t> dims;
    skip_space();
    while (peek() != ')') {
      dims.push_back(integer());
      if (dims.size() > 64) fail("more than 64 dimensions");
      skip_space();
      if (peek() == ')' && dims.size() > 1) break;
      expect(',');
      skip_space();
    }
    ++at_;  // the ')'
    return dims;
  }

  void once(bool& seen, const std::string& key) {
    if (seen) refuse("its header has '" + key + "' twice");
    seen = true;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(path_ + ": NumPy header does not parse: " + why + " at byte " + std::to_string(at_) +
                             " of the header");
  }
  [[noreturn]] void refuse(const std::string& why) const {
    throw std::runtime_error(path_ + ": not a NumPy file of token ids: " + why);
  }

  std::string_view text_;
  const std::string& path_;
  std::size_t at_ = 0;
};

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

bool is_token_file(const std::string& path) {
  const std::string ext = lower_extension(path);
  return ext == ".bin" || ext == ".npy";
}

TokenFileReader::TokenFileReader(std::string path, int vocab_size)
    : path_(std::move(path)), vocab_(vocab_size), sha_(std::make_unique<Sha256>()) {
  if (vocab_size <= 0)
    throw std::invalid_argument(path_ + ": a vocabulary of " + std::to_string(vocab_size) + " tokens");
  std::error_code ec;
  if (!fs::exists(path_, ec)) throw std::runtime_error(path_ + ": no such input file");
  if (!fs::is_regular_file(path_, ec)) throw std::runtime_error(path_ + ": not a regular file");
  file_size_ = fs::file_size(path_, ec);
  if (ec) throw std::runtime_error(path_ + ": cannot read its size: " + ec.message());
  in_.open(path_, std::ios::binary);
  if (!in_) throw std::runtime_error(path_ + ": cannot open input file");
  // By the name, as is_token_file: each format's own errors then make sense.
  if (lower_extension(path_) == ".npy") open_npy(file_size_);
  else open_llmc(file_size_);
}

TokenFileReader::~TokenFileReader() = default;

void TokenFileReader::open_llmc(std::uint64_t size) {
  if (size < kLlmcHeaderBytes)
    throw std::runtime_error(path_ + ": not an llm.c token file (" + std::to_string(size) +
                             " bytes; its header alone is 1024)");
  unsigned char header[kLlmcHeaderBytes];
  read_exactly(header, sizeof header);
  const auto field = [&](int i) {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(load_le(header + 4 * i, 4)));
  };
  if (field(0) != kLlmcMagic)
    throw std::runtime_error(path_ + ": not an llm.c token file (magic " + std::to_string(field(0)) + ", expected " +
                             std::to_string(kLlmcMagic) + ")");
  const std::int32_t version = field(1);
  if (version != 1 && version != 2)
    throw std::runtime_error(path_ + ": llm.c token file version " + std::to_string(version) +
                             " is not supported (1: uint16 ids, 2: uint32 ids)");
  // llm.c reads the count as an int.
  if (field(2) < 0)
    throw std::runtime_error(path_ + ": llm.c token file's header says " + std::to_string(field(2)) + " tokens");
  tokens_ = static_cast<std::uint64_t>(field(2));
  element_bytes_ = version == 1 ? 2 : 4;
  signed_ = false;
  format_ = version == 1 ? "llm.c tokens, uint16" : "llm.c tokens, uint32";
  start_tokens(kLlmcHeaderBytes, size, "llm.c token file", "header");
}

void TokenFileReader::open_npy(std::uint64_t size) {
  // "\x93NUMPY", major, minor, the header's length (uint16 in 1.0, uint32
  // in 2.0 and 3.0), the header.
  unsigned char start[12];
  if (size < 10)
    throw std::runtime_error(path_ + ": not a NumPy file (" + std::to_string(size) +
                             " bytes, too short for its header)");
  read_exactly(start, 8);
  if (std::memcmp(start, "\x93NUMPY", 6) != 0)
    throw std::runtime_error(path_ + ": not a NumPy file (it does not start with \\x93NUMPY)");
  const unsigned major = start[6], minor = start[7];
  if (major < 1 || major > 3)
    throw std::runtime_error(path_ + ": NumPy format version " + std::to_string(major) + "." + std::to_string(minor) +
                             " is not supported (1, 2 and 3 are)");
  const unsigned length_bytes = major == 1 ? 2 : 4;
  if (size < 8 + length_bytes) throw std::runtime_error(path_ + ": NumPy file is truncated inside its header");
  read_exactly(start + 8, length_bytes);
  const std::uint64_t header_bytes = load_le(start + 8, length_bytes);
  if (header_bytes > kNpyMaxHeaderBytes)
    throw std::runtime_error(path_ + ": NumPy header of " + std::to_string(header_bytes) +
                             " bytes is too long for an array of token ids (at most " +
                             std::to_string(kNpyMaxHeaderBytes) + ")");
  const std::uint64_t data_offset = 8 + length_bytes + header_bytes;
  if (data_offset > size)
    throw std::runtime_error(path_ + ": NumPy file is truncated inside its header (" + std::to_string(size) +
                             " bytes; the header says it ends at byte " + std::to_string(data_offset) + ")");
  std::string text(static_cast<std::size_t>(header_bytes), '\0');
  read_exactly(reinterpret_cast<unsigned char*>(text.data()), text.size());
  const NpyHeader header = NpyHeaderParser(text, path_).parse();

  // '<u2' and the like: byte order, kind, size. One byte has no order.
  const std::string& d = header.descr;
  const bool integer = d.size() == 3 && std::string_view("<>|=").find(d[0]) != std::string_view::npos &&
                       (d[1] == 'u' || d[1] == 'i') && std::string_view("1248").find(d[2]) != std::string_view::npos;
  if (!integer)
    throw std::runtime_error(path_ + ": NumPy dtype '" + d +
                             "' is not an integer type (token ids must be u1, i1, u2, i2, u4, i4, u8 or i8)");
  element_bytes_ = static_cast<unsigned>(d[2] - '0');
  signed_ = d[1] == 'i';
  if (element_bytes_ > 1 && d[0] == '>')
    throw std::runtime_error(path_ + ": NumPy dtype '" + d + "' is big-endian; token files must be little-endian ('<" +
                             d.substr(1) + "')");
  if (element_bytes_ > 1 && d[0] != '<')
    throw std::runtime_error(path_ + ": NumPy dtype '" + d + "' does not say it is little-endian ('<" + d.substr(1) +
                             "')");
  // Fortran order changes nothing in one dimension.
  if (header.shape.size() != 1)
    throw std::runtime_error(path_ + ": NumPy array of shape " + shape_text(header.shape) + " is " +
                             std::to_string(header.shape.size()) + "-dimensional" +
                             (header.fortran_order ? " (Fortran order)" : "") + "; token ids must be a 1-D array");
  tokens_ = header.shape[0];
  format_ = "NumPy " + d;
  start_tokens(data_offset, size, "NumPy file", "shape");
}

void TokenFileReader::start_tokens(std::uint64_t data_offset, std::uint64_t size, const char* what,
                                   const char* says) {
  const std::uint64_t held = size - data_offset;
  const std::string count = std::to_string(tokens_) + " tokens of " + std::to_string(element_bytes_) + " bytes";
  if (tokens_ > held / element_bytes_)
    throw std::runtime_error(path_ + ": " + what + " is truncated: its " + says + " says " + count +
                             ", the file holds " + std::to_string(held) + " bytes after its header");
  const std::uint64_t data_bytes = tokens_ * element_bytes_;
  if (held > data_bytes)
    throw std::runtime_error(path_ + ": " + what + " has " + std::to_string(held - data_bytes) +
                             " extra bytes after the " + count + " its " + says + " says");
  // Small files get a small buffer; kReadBytes is a multiple of every
  // element size, so each read ends on an id.
  buffer_capacity_ = static_cast<std::size_t>(std::min<std::uint64_t>(kReadBytes, data_bytes));
  if (buffer_capacity_ > 0) buffer_ = std::make_unique_for_overwrite<unsigned char[]>(buffer_capacity_);
  if (data_bytes == 0) check_end();
}

void TokenFileReader::read_exactly(unsigned char* out, std::size_t n) {
  in_.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(n));
  if (in_.bad()) throw std::runtime_error(path_ + ": read error");
  const auto got = static_cast<std::size_t>(in_.gcount());
  sha_->update({reinterpret_cast<const char*>(out), got});
  bytes_read_ += got;
  if (got != n)
    throw std::runtime_error(path_ + ": file shrank while being read (" + std::to_string(file_size_) +
                             " bytes when opened, ended after " + std::to_string(bytes_read_) + ")");
}

void TokenFileReader::check_end() {
  // The size was checked when the file opened; it must not have grown since.
  if (in_.peek() != std::ifstream::traits_type::eof())
    throw std::runtime_error(path_ + ": file grew while being read (" + std::to_string(file_size_) +
                             " bytes when opened)");
  if (in_.bad()) throw std::runtime_error(path_ + ": read error");
  at_end_ = true;
}

void TokenFileReader::refill() {
  const std::uint64_t left = (tokens_ - tokens_done_) * element_bytes_;  // the buffer is spent
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_capacity_, left));
  read_exactly(buffer_.get(), n);
  buffer_size_ = n;
  buffer_used_ = 0;
  if (n == left) check_end();
}

bool TokenFileReader::next(std::vector<std::int32_t>& ids, std::size_t max_tokens) {
  if (max_tokens == 0) throw std::invalid_argument(path_ + ": next() asked for 0 tokens");
  const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(max_tokens, tokens_ - tokens_done_));
  ids.resize(want);
  std::size_t filled = 0;
  while (filled < want) {
    if (buffer_used_ == buffer_size_) refill();
    const std::size_t n = std::min(want - filled, (buffer_size_ - buffer_used_) / element_bytes_);
    const unsigned char* p = buffer_.get() + buffer_used_;
    std::int32_t* out = ids.data() + filled;
    std::size_t good = 0;
    switch (element_bytes_ * 2 + (signed_ ? 1 : 0)) {
      case 2: good = decode<std::uint8_t, false>(p, n, out, vocab_); break;
      case 3: good = decode<std::uint8_t, true>(p, n, out, vocab_); break;
      case 4: good = decode<std::uint16_t, false>(p, n, out, vocab_); break;
      case 5: good = decode<std::uint16_t, true>(p, n, out, vocab_); break;
      case 8: good = decode<std::uint32_t, false>(p, n, out, vocab_); break;
      case 9: good = decode<std::uint32_t, true>(p, n, out, vocab_); break;
      case 16: good = decode<std::uint64_t, false>(p, n, out, vocab_); break;
      case 17: good = decode<std::uint64_t, true>(p, n, out, vocab_); break;
    }
    if (good < n) {
      const std::uint64_t raw = load_le(p + good * element_bytes_, element_bytes_);
      // Sign-extend a signed id, for the message.
      const unsigned shift = 64 - 8 * element_bytes_;
      const std::string id = signed_ ? std::to_string(static_cast<std::int64_t>(raw << shift) >> shift)
                                     : std::to_string(raw);
      throw std::runtime_error(path_ + ": token id " + id + " at position " + std::to_string(tokens_done_ + good) +
                               " is outside the vocabulary of " + std::to_string(vocab_) + " tokens");
    }
    buffer_used_ += n * element_bytes_;
    filled += n;
    tokens_done_ += n;
  }
  return want > 0;
}

std::string TokenFileReader::sha256() {
  if (!at_end_ || tokens_done_ != tokens_)
    throw std::logic_error(path_ + ": TokenFileReader::sha256() before every token was read");
  if (sha_hex_.empty()) sha_hex_ = sha_->hex();
  return sha_hex_;
}

}  // namespace cllm
