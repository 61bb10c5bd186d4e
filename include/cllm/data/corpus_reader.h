// Corpora as people have them, read as a stream of documents with bounded
// memory: many files, folders and glob patterns; plain text (a document per
// file) or JSON Lines (a document per record, its text in one field); either
// of them gzip-compressed (.gz).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cllm {

// The files of the inputs, in the order given: a file as it is, a folder as
// every regular file below it (in path order), a pattern with * ? or [ as
// the files glob(3) finds (in path order). Throws std::runtime_error naming
// an input that is none of these or matches nothing.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

// Whether path is read through zlib: its name ends in .gz.
bool is_gzip(const std::string& path);

// A piece of a document's text: a whole JSONL record, or a block of a text
// file cut where tokenizing the blocks gives the ids of the whole.
struct DocumentPiece {
  std::string text;
  bool first = false, last = false;  // of its document
};

// Reads one file, or a part of it (a rank's share, corpus_shares.h), as
// documents. jsonl_field empty: the file is one document
// of text; else each non-blank line is a JSON object whose string field
// jsonl_field is a document. A line that is not (bad JSON, no such field, not
// a string) is skipped and counted. Files ending in .gz are decompressed.
class DocumentReader {
 public:
  // block_bytes: the size of a text file's pieces; cut_anywhere: any byte
  // boundary is a safe cut (byte-level tokens). [begin, end): the stored
  // bytes to read, cut where the file may be (share_corpus); not .gz.
  static constexpr std::uint64_t kToTheEnd = ~std::uint64_t{0};
  DocumentReader(std::string path, std::string jsonl_field, std::size_t block_bytes, bool cut_anywhere,
                 std::uint64_t begin = 0, std::uint64_t end = kToTheEnd);
  ~DocumentReader();
  // The next piece, or false at the end of the file. Throws
  // std::runtime_error naming the file (a read error, a truncated .gz).
  bool next(DocumentPiece& piece);
  // Reads until `bytes` wait in the buffer (or the part ends): next() then
  // has them at hand. Another thread may call it while the pieces next()
  // gave are being tokenized.
  void read_ahead(std::size_t bytes);
  std::uint64_t bytes_read() const;  // of the part, as stored (compressed for .gz)
  // For a part that is the whole file (hashes_file()): the SHA-256 of its
  // bytes (decompressed), once every piece is read. A part that stops short
  // leaves the file's hash to whoever reads it all (prepare, beside its
  // chunk rounds, where the work is shared by speed).
  bool hashes_file() const;
  std::string sha256();
  // The first kDocumentKeyBytes of the last piece's document, also where the
  // part starts inside it: what in_validation hashes.
  const std::string& document_key() const { return key_; }
  std::uint64_t skipped_lines() const { return skipped_; }
  // "FILE:LINE: why" of the first skipped line, or "".
  const std::string& first_skipped() const { return first_skipped_; }

 private:
  class Bytes;  // plain or gzip
  bool next_text(DocumentPiece& piece);
  bool next_record(DocumentPiece& piece);
  bool read_more();  // appends to buffer_; false at the end

  std::string path_, field_;
  std::size_t block_bytes_;
  bool cut_anywhere_;
  std::unique_ptr<Bytes> bytes_;
  static constexpr std::size_t kReadBytes = std::size_t{1} << 20;
  std::unique_ptr<char[]> read_buffer_;  // kReadBytes
  std::string buffer_;   // read, not yet handed out (JSON Lines: from record_at_)
  std::size_t record_at_ = 0;  // moved up only to read more: not a line at a time
  std::uint64_t begin_;
  bool at_end_ = false;      // of the part's bytes
  bool ends_file_ = true;    // the part's end is the file's
  bool started_ = false;     // the part has begun
  std::uint64_t line_ = 0, skipped_ = 0;  // line_: within the part
  std::string first_skipped_;
  std::string key_;
};

// Whether a document goes to validation: a hash of its first
// kDocumentKeyBytes below fraction of the hash's range. By content, so the
// same document is on the same side whatever rank or thread reads it, and
// duplicates stay together.
inline constexpr std::size_t kDocumentKeyBytes = 65536;
bool in_validation(std::string_view document_start, double fraction);
// The first kDocumentKeyBytes of a plain file.
std::string document_start(const std::string& path);

}  // namespace cllm
