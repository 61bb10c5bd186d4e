#include "cllm/data/corpus_reader.h"

#include <glob.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "cllm/base/read_file.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/sha256.h"

namespace cllm {

namespace fs = std::filesystem;

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
      std::vector<std::string> below;
      for (const auto& entry : fs::recursive_directory_iterator(input, ec))
        if (entry.is_regular_file(ec)) below.push_back(entry.path().string());
      if (ec) throw std::runtime_error(input + ": cannot list folder: " + ec.message());
      if (below.empty()) throw std::runtime_error(input + ": folder holds no files");
      std::sort(below.begin(), below.end());
      files.insert(files.end(), below.begin(), below.end());
    } else if (!fs::exists(input, ec) && input.find_first_of("*?[") != std::string::npos) {
      glob_t found{};
      const int status = ::glob(input.c_str(), GLOB_ERR, nullptr, &found);
      std::vector<std::string> matched(found.gl_pathv, found.gl_pathv + found.gl_pathc);
      globfree(&found);
      if (status == GLOB_NOMATCH || matched.empty()) throw std::runtime_error(input + ": matches no file");
      if (status != 0) throw std::runtime_error(input + ": cannot expand the pattern");
      for (const std::string& m : matched)  // glob sorts
        if (fs::is_regular_file(m, ec)) files.push_back(m);
    } else {
      files.push_back(input);  // checked when opened
    }
  }
  return files;
}

namespace {

// Newlines in the first `bytes` bytes of a plain file: the line number a
// part that starts there begins at.
std::uint64_t lines_before(const std::string& path, std::uint64_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> block(1u << 20);
  std::uint64_t lines = 0;
  while (bytes > 0 && in) {
    in.read(block.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(bytes, block.size())));
    const auto got = static_cast<std::size_t>(in.gcount());
    lines += static_cast<std::uint64_t>(std::count(block.data(), block.data() + got, '\n'));
    bytes -= got;
  }
  return lines;
}

}  // namespace

bool is_gzip(const std::string& path) { return path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0; }

// A file's bytes [begin, end) as stored, through zlib for .gz (whole only).
class DocumentReader::Bytes {
 public:
  Bytes(const std::string& path, std::uint64_t begin, std::uint64_t end, bool hashed)
      : path_(path), left_(end - begin), hashed_(hashed) {
    require_regular_file(path, "input file");
    if (is_gzip(path)) {
      if (begin != 0) throw std::logic_error("a .gz file is read whole");
      left_ = kToTheEnd;  // end counts stored bytes, the reads decompressed ones
      gz_ = gzopen(path.c_str(), "rb");
      if (!gz_) throw std::runtime_error(path + ": cannot open input file: " + std::strerror(errno));
      gzbuffer(gz_, 1u << 20);
    } else {
      plain_.open(path, std::ios::binary);
      if (!plain_) throw std::runtime_error(path + ": cannot open input file");
      plain_.seekg(static_cast<std::streamoff>(begin));
    }
  }
  ~Bytes() {
    if (gz_) gzclose(gz_);
  }
  // Up to n bytes of the part into out; 0 at its end.
  std::size_t read(char* out, std::size_t n) {
    const std::size_t got = read_stored(out, static_cast<std::size_t>(std::min<std::uint64_t>(n, left_)));
    left_ -= got;
    if (hashed_) sha_.update({out, got});
    return got;
  }
  std::uint64_t stored() const { return stored_; }
  bool hashed() const { return hashed_; }
  std::string sha256() {
    if (!hashed_) throw std::logic_error("a part that is not its whole file has no hash of the file");
    return sha_.hex();
  }

 private:
  std::size_t read_stored(char* out, std::size_t n) {
    if (n == 0) return 0;
    if (gz_) {
      const int got = gzread(gz_, out, static_cast<unsigned>(std::min<std::size_t>(n, 1u << 30)));
      int error = Z_OK;
      const char* why = gzerror(gz_, &error);
      if (got < 0 || (error != Z_OK && error != Z_BUF_ERROR))
        throw std::runtime_error(path_ + ": cannot decompress: " + why);
      // gzread returns 0 for a stream cut short, and says so in gzerror.
      if (got == 0 && error == Z_BUF_ERROR) throw std::runtime_error(path_ + ": truncated gzip file");
      stored_ = static_cast<std::uint64_t>(gzoffset(gz_));
      return static_cast<std::size_t>(got);
    }
    plain_.read(out, static_cast<std::streamsize>(n));
    if (plain_.bad()) throw std::runtime_error(path_ + ": read error");
    const auto got = static_cast<std::size_t>(plain_.gcount());
    stored_ += got;
    return got;
  }

  std::string path_;
  std::uint64_t left_;  // of the part
  bool hashed_;         // the part is the whole file
  Sha256 sha_;
  gzFile gz_ = nullptr;
  std::ifstream plain_;
  std::uint64_t stored_ = 0;
};

DocumentReader::DocumentReader(std::string path, std::string jsonl_field, std::size_t block_bytes,
                               bool cut_anywhere, std::uint64_t begin, std::uint64_t end)
    : path_(std::move(path)),
      field_(std::move(jsonl_field)),
      block_bytes_(block_bytes),
      cut_anywhere_(cut_anywhere),
      begin_(begin) {
  std::error_code ec;
  ends_file_ = end == kToTheEnd || is_gzip(path_) || end >= fs::file_size(path_, ec);
  bytes_ = std::make_unique<Bytes>(path_, begin, end, begin == 0 && ends_file_);
  if (begin > 0 && field_.empty()) key_ = document_start(path_);
}

DocumentReader::~DocumentReader() = default;

std::uint64_t DocumentReader::bytes_read() const { return bytes_->stored(); }

bool DocumentReader::hashes_file() const { return bytes_->hashed(); }

std::string DocumentReader::sha256() { return bytes_->sha256(); }

bool DocumentReader::read_more() {
  if (at_end_) return false;
  // Through a buffer of its own, uninitialised: growing buffer_ by a block
  // would zero the block first, for every file however small.
  if (!read_buffer_) read_buffer_ = std::make_unique_for_overwrite<char[]>(kReadBytes);
  const std::size_t got = bytes_->read(read_buffer_.get(), kReadBytes);
  buffer_.append(read_buffer_.get(), got);
  at_end_ = got == 0;
  return got > 0;
}

void DocumentReader::read_ahead(std::size_t bytes) {
  while (buffer_.size() < bytes && read_more()) {
  }
}

bool DocumentReader::next(DocumentPiece& piece) {
  return field_.empty() ? next_text(piece) : next_record(piece);
}

bool DocumentReader::next_text(DocumentPiece& piece) {
  // A document's first piece holds its key (in_validation) whatever the block.
  const bool first = !started_ && begin_ == 0;
  if (!at_end_) buffer_.reserve(std::max(block_bytes_, kDocumentKeyBytes) + kReadBytes);  // not grown by doubling
  while (buffer_.size() < (first ? std::max(block_bytes_, kDocumentKeyBytes) : block_bytes_) && read_more()) {
  }
  if (buffer_.empty() && started_) return false;
  // The cut: where the blocks' ids are the whole's (at the end, everything;
  // a block with no such place is cut at its end).
  std::size_t cut = buffer_.size();
  if (!at_end_ && !cut_anywhere_) {
    cut = last_encoding_cut(buffer_);
    if (cut == 0) cut = buffer_.size();
  }
  if (first) key_.assign(buffer_, 0, std::min(buffer_.size(), kDocumentKeyBytes));
  // The block goes out by a swap, not a copy; piece.text's old room is read into next.
  std::string rest(buffer_, cut);
  buffer_.resize(cut);
  std::swap(piece.text, buffer_);
  buffer_.assign(rest);
  piece.first = first;
  started_ = true;
  piece.last = at_end_ && buffer_.empty() && ends_file_;
  return true;
}

bool DocumentReader::next_record(DocumentPiece& piece) {
  for (;;) {
    std::size_t eol = buffer_.find('\n', record_at_);
    if (eol == std::string::npos) {
      buffer_.erase(0, record_at_);
      record_at_ = 0;
      for (std::size_t searched = buffer_.size(); eol == std::string::npos && read_more(); searched = buffer_.size())
        eol = buffer_.find('\n', searched);
    }
    if (record_at_ == buffer_.size()) return false;
    const std::size_t end = eol == std::string::npos ? buffer_.size() : eol;
    const std::string_view line(buffer_.data() + record_at_, end - record_at_);
    ++line_;
    std::string why;
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      try {
        const nlohmann::json record = nlohmann::json::parse(line);
        const auto it = record.is_object() ? record.find(field_) : record.end();
        if (!record.is_object()) why = "not a JSON object";
        else if (it == record.end()) why = "no field '" + field_ + "'";
        else if (!it->is_string()) why = "field '" + field_ + "' is not a string";
        else piece.text = it->get<std::string>();
      } catch (const nlohmann::json::exception&) {
        why = "not valid JSON";
      }
      if (!why.empty() && skipped_++ == 0)
        first_skipped_ = path_ + ":" + std::to_string(line_ + (begin_ > 0 ? lines_before(path_, begin_) : 0)) +
                         ": " + why;
    } else {
      why = "blank";  // not counted
    }
    record_at_ = std::min(buffer_.size(), end + 1);
    if (why.empty()) {
      key_.assign(piece.text, 0, std::min(piece.text.size(), kDocumentKeyBytes));
      piece.first = piece.last = true;
      return true;
    }
  }
}

bool in_validation(std::string_view document_start, double fraction) {
  // FNV-1a, 64-bit, then the top 53 bits as a fraction in [0, 1).
  std::uint64_t h = 14695981039346656037ull;
  for (const char c : document_start.substr(0, kDocumentKeyBytes)) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;
}

std::string document_start(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string start(kDocumentKeyBytes, '\0');
  in.read(start.data(), static_cast<std::streamsize>(start.size()));
  if (in.bad()) throw std::runtime_error(path + ": read error");
  start.resize(static_cast<std::size_t>(in.gcount()));
  return start;
}

}  // namespace cllm
