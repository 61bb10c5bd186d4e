// HDF5 token datasets, as `cllm prepare` writes them (DESIGN.md):
//   /train/tokens, /val/tokens   1-D unsigned integers (uint8 when the vocab
//                                fits, else uint16 or uint32), chunked,
//                                shuffle + deflate + Fletcher-32
//   /tokenizer/<file>            the tokenizer's vocabulary files (gpt2-bpe)
//   root attributes              format "cllm-dataset", format_version,
//                                vocab_size, tokenizer, eot_token, sources,
//                                sources_sha256, val_fraction
// The first 512 bytes (the HDF5 user block) hold a SHA-256 of the rest
// (file_checksum.h), verified before HDF5 opens the file; datasets of other
// writers (h5py) have none and go through HDF5's own checks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cllm/data/token_source.h"
#include "cllm/data/tokenizer_spec.h"
#include "cllm/io/hdf5_handle.h"
#include "cllm/io/token_spool.h"

namespace cllm {

inline constexpr const char* kDatasetFormat = "cllm-dataset";
inline constexpr std::int64_t kDatasetFormatVersion = 1;

struct DatasetSource {
  std::string file;    // as given
  std::string sha256;  // hex of its bytes
};

// Chunks of a split of `tokens` tokens (the last one may be short), and the
// tokens a chunk holds.
std::uint64_t token_chunks(std::uint64_t tokens);
std::uint64_t token_chunk_tokens();
// Chunk `index` of split, filtered as the dataset stores it (shuffle,
// deflate, Fletcher-32): what TokenDatasetWriter::write_chunk takes. Any
// thread may filter any chunk.
std::vector<unsigned char> filter_token_chunk(const TokenStream& split, std::uint64_t index);

// A dataset written as its filtered chunks arrive: to a temporary beside
// path, fsynced and renamed to path by commit(), so that a crash leaves
// either the old file or the new one. Memory does not grow with the
// dataset. Destroyed uncommitted, it leaves nothing. Errors are
// std::runtime_error naming the file.
class TokenDatasetWriter {
 public:
  TokenDatasetWriter(const std::filesystem::path& path, std::uint64_t train_tokens, std::uint64_t val_tokens,
                     const TokenizerSpec& tokenizer, double val_fraction);
  ~TokenDatasetWriter();
  TokenDatasetWriter(const TokenDatasetWriter&) = delete;
  TokenDatasetWriter& operator=(const TokenDatasetWriter&) = delete;

  // Chunk `index` of split 0 (train) or 1 (val), from filter_token_chunk.
  // In any order; in the chunks' order, the file is the same every time.
  void write_chunk(int split, std::uint64_t index, std::span<const unsigned char> filtered);
  // Every chunk written: records the sources (known only once the inputs
  // are read through), closes, checksums and renames the file into place.
  void commit(const std::vector<DatasetSource>& sources);
  // The same in two steps, for ranks that share the checksum's reading:
  // close() records the sources, closes the file, starts it to disk and
  // gives its temporary path, whose blocks any rank may hash
  // (file_block_hashes); commit_hashed() writes the checksum from every
  // block's hash and renames the file into place.
  std::filesystem::path close(const std::vector<DatasetSource>& sources);
  void commit_hashed(const std::vector<std::string>& block_hashes);

 private:
  struct Open;
  std::filesystem::path path_;
  std::unique_ptr<Open> open_;
  void reserve(std::uint64_t more);  // bytes of room more in the file
};

// The same from tokens in memory (tests, small datasets).
void write_token_dataset(const std::filesystem::path& path, const std::vector<std::int32_t>& train,
                         const std::vector<std::int32_t>& val, const TokenizerSpec& tokenizer,
                         const std::vector<DatasetSource>& sources, double val_fraction);

// Reads windows straight from the file: each rank reads only the hyperslabs
// of its own windows, through a chunk cache sized to hold the whole dataset
// when it is small. Read-only access needs no coordination, so every rank
// opens the file on its own.
class Hdf5TokenSource final : public TokenSource {
 public:
  // Checks the format, version and that both splits hold a window of
  // min_window tokens. Throws std::runtime_error naming the file.
  Hdf5TokenSource(const std::filesystem::path& path, int min_window);

  std::uint64_t split_size(Split split) const override {
    return split == Split::train ? train_size_ : val_size_;
  }
  void read_tokens(Split split, std::uint64_t start, std::size_t count,
                   std::int32_t* out) const override;
  int vocab() const override { return tokenizer_.vocab_size; }
  const std::string& name() const override { return name_; }
  std::string identity() const override { return identity_; }
  const TokenizerSpec& tokenizer() const { return tokenizer_; }

 private:
  std::string name_;
  std::string identity_;
  TokenizerSpec tokenizer_;
  h5::Handle file_, train_, val_;
  std::uint64_t train_size_ = 0, val_size_ = 0;
};

// Every stored token is below vocab_size: checked by prepare before writing.
// Exposed for tests: reads the whole split.
std::vector<std::int32_t> read_split(const std::filesystem::path& path, Split split);

// The data a run trains on: a file, and the share of a text file held out
// for validation (datasets carry their own split).
struct DataConfig {
  std::string path = "data/austen.txt";
  double val_fraction = 0.1;  // tail of a text file held out (a dataset has its own split)

  // Throws SettingError naming the setting: val_fraction outside (0, 0.5].
  void validate() const;
};

// Throws SettingError unless 0 <= val_fraction <= 0.5 (NaN fails too).
void check_val_fraction(double val_fraction);

// The data opened, and the tokenizer that made it.
struct TrainingData {
  std::unique_ptr<TokenSource> source;
  TokenizerSpec tokenizer;
};

// An HDF5 dataset (.h5, .hdf5) is read window by window; any other file is
// text, read whole with the byte tokenizer. Windows are seq_len + 1 tokens.
// Throws std::runtime_error naming the file.
TrainingData open_training_data(const DataConfig& spec, int seq_len);

}  // namespace cllm
