#include "cllm/io/dataset_file.h"

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <stdexcept>

#include "cllm/base/read_file.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/bpe_tokenizer.h"
#include "cllm/data/sha256.h"
#include "cllm/data/text_dataset.h"
#include "cllm/io/durable_file.h"
#include "cllm/io/file_checksum.h"
#include "cllm/io/hdf5.h"
#include "chunk_filters.h"
#include "tokenizer_attributes.h"

namespace cllm {

namespace {

// Random windows touch random chunks: small chunks keep a cache miss cheap.
// 16,384 tokens, not 65,536: a 4 GB dataset's windows then cost 4 times less
// inflating (the data phase of a small-preset step on a 4 GB dataset: 4.0%
// of the step with 65,536, 2.3% with 16,384, on the 2-core Zen 5 VM).
constexpr hsize_t kTokenChunk = 16384;
// The inflated chunks kept, per split: a dataset up to this size is cached
// whole after first touch; a larger one costs no more memory.
constexpr std::size_t kChunkCacheBytes = 32u << 20;
// libdeflate's level for token chunks: its 1 makes chunks about the size of
// zlib's 4 at 2.5 times the speed (138 against 55 MB/s of text a core, on the
// Zen 5 VM). The dataset declares it as deflate's level.
constexpr int kDeflateLevel = 1;
// The room a dataset's file reserves for its chunks at a time, as they come.
constexpr std::uint64_t kReserveStep = 64u << 20;

hid_t token_file_type(int vocab_size) {
  if (vocab_size <= 256) return H5T_STD_U8LE;
  if (vocab_size <= 65536) return H5T_STD_U16LE;
  return H5T_STD_U32LE;
}

// Creates the 1-D dataset name of n tokens, chunked, shuffled, deflated and
// checksummed, for its chunks to be written as they are (H5Dwrite_chunk).
h5::Handle create_tokens(hid_t file, const std::string& name, hsize_t n, int vocab_size) {
  h5::Handle space(H5Screate_simple(1, &n, nullptr), "dataspace of '" + name + "'");
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), "dataset creation");
  h5::check(H5Pset_obj_track_times(dcpl, 0), "track times");
  const hsize_t chunk = std::min(kTokenChunk, n);
  if (n > 0) {
    h5::check(H5Pset_chunk(dcpl, 1, &chunk), "chunk layout");
    h5::check(H5Pset_shuffle(dcpl), "shuffle filter");
    h5::check(H5Pset_deflate(dcpl, kDeflateLevel), "deflate filter");
    h5::check(H5Pset_fletcher32(dcpl), "fletcher32 filter");
  }
  return h5::Handle(H5Dcreate2(file, name.c_str(), token_file_type(vocab_size), space, H5P_DEFAULT, dcpl,
                               H5P_DEFAULT),
                    "cannot create dataset '" + name + "'");
}

// Slots of a chunk cache of kChunkCacheBytes for dset. HDF5 1.10 keeps a
// chunk in each slot whatever the cache's byte limit (12,421 slots held
// 800 MB of inflated chunks of a 4 GB dataset): the slots bound its memory.
// One per chunk, in order, so a small dataset is cached whole.
std::size_t chunk_cache_slots(hid_t dset) {
  h5::Handle dcpl(H5Dget_create_plist(dset), "dataset creation");
  hsize_t chunk = 0;
  if (H5Pget_layout(dcpl) != H5D_CHUNKED || H5Pget_chunk(dcpl, 1, &chunk) != 1 || chunk == 0) return 1;
  h5::Handle type(H5Dget_type(dset), "dataset type");
  // A type of no size, or a chunk past the cache (their product may wrap to
  // 0): one slot; the type is refused when the dataset is opened.
  const std::size_t element = H5Tget_size(type);
  if (element == 0 || chunk > kChunkCacheBytes / element) return 1;
  return std::max<std::size_t>(1, kChunkCacheBytes / (chunk * element));
}

h5::Handle open_tokens(hid_t file, const std::string& name, std::uint64_t& size) {
  std::size_t slots = 1;
  {
    h5::Handle probe(H5Dopen2(file, name.c_str(), H5P_DEFAULT), "no dataset " + name);
    slots = chunk_cache_slots(probe);
  }
  h5::Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), "dataset access");
  h5::check(H5Pset_chunk_cache(dapl, slots, kChunkCacheBytes, 1.0), "chunk cache");
  h5::Handle dset(H5Dopen2(file, name.c_str(), dapl), "no dataset " + name);
  const auto shape = h5::dataset_shape(dset);
  if (shape.size() != 1) throw std::runtime_error(name + " is not 1-D");
  h5::Handle type(H5Dget_type(dset), name);
  if (H5Tget_class(type) != H5T_INTEGER || H5Tget_sign(type) != H5T_SGN_NONE)
    throw std::runtime_error(name + " does not hold unsigned integers");
  size = shape[0];
  return dset;
}

}  // namespace

void write_tokenizer(hid_t file, hid_t attributes_at, const TokenizerSpec& t) {
  h5::set_attr(attributes_at, "tokenizer", t.name);
  h5::set_attr(attributes_at, "vocab_size", static_cast<std::int64_t>(t.vocab_size));
  h5::set_attr(attributes_at, "eot_token", t.eot_token);
  if (t.name == "gpt2-bpe") {
    h5::Handle group = h5::exists(file, "tokenizer") ? h5::open_group(file, "tokenizer")
                                                     : h5::create_group(file, "tokenizer");
    h5::write_bytes(group, "encoder.json", t.encoder_json);
    h5::write_bytes(group, "vocab.bpe", t.vocab_bpe);
  }
}

TokenizerSpec read_tokenizer(hid_t file, hid_t attributes_at) {
  TokenizerSpec t;
  t.name = h5::string_attr(attributes_at, "tokenizer");
  // The vocabulary a tokenizer produces is fixed by its kind: a file that
  // says otherwise would let token ids index past the embedding table.
  int tokens = 0;
  if (t.name == "byte") {
    tokens = ByteTokenizer::kVocabSize;
  } else if (t.name == "gpt2-bpe") {
    tokens = Gpt2BpeTokenizer::kVocabSize;
  } else {
    throw std::runtime_error("unknown tokenizer '" + t.name + "'");
  }
  t.vocab_size = static_cast<int>(h5::int_attr(attributes_at, "vocab_size", 1,
                                               std::numeric_limits<std::int32_t>::max()));
  if (t.vocab_size != tokens)
    throw std::runtime_error("tokenizer " + t.name + " has " + std::to_string(tokens) +
                             " tokens, but vocab_size is " + std::to_string(t.vocab_size));
  t.eot_token = h5::int_attr(attributes_at, "eot_token", -1, t.vocab_size - 1);
  if (t.name == "gpt2-bpe") {
    h5::Handle group = h5::open_group(file, "tokenizer");
    t.encoder_json = h5::read_bytes(group, "encoder.json");
    t.vocab_bpe = h5::read_bytes(group, "vocab.bpe");
  }
  return t;
}

std::uint64_t token_chunks(std::uint64_t tokens) { return (tokens + kTokenChunk - 1) / kTokenChunk; }
std::uint64_t token_chunk_tokens() { return kTokenChunk; }

std::vector<unsigned char> filter_token_chunk(const TokenStream& split, std::uint64_t index) {
  const std::uint64_t n = split.size();
  const hsize_t chunk = std::min<hsize_t>(kTokenChunk, n);
  const hsize_t begin = index * chunk;
  if (begin >= n) throw std::logic_error("a token chunk past its split's end");
  // The last chunk is stored whole: zeros past the end of the data.
  std::vector<unsigned char> raw(chunk * split.element_size(), 0);
  split.read_bytes(begin, std::min(chunk, n - begin), raw.data());
  return h5::filter_chunk(raw, split.element_size(), kDeflateLevel);
}

struct TokenDatasetWriter::Open {
  DurableWriter out;
  h5::Handle file;
  h5::Handle splits[2];
  std::uint64_t chunks[2] = {0, 0};   // in each split
  std::uint64_t written[2] = {0, 0};  // of them
  hsize_t chunk[2] = {0, 0};          // tokens a chunk
  std::uint64_t reserved = 0;         // bytes of the file's room
  std::uint64_t room = 0;             // of it, reserved for chunks and not yet used
  bool closed = false;                // by close(): HDF5 writes no more
  explicit Open(const std::filesystem::path& path) : out(path) {}
};

TokenDatasetWriter::TokenDatasetWriter(const std::filesystem::path& path, std::uint64_t train_tokens,
                                       std::uint64_t val_tokens, const TokenizerSpec& tokenizer,
                                       double val_fraction)
    : path_(path) {
  try {
    open_ = std::make_unique<Open>(path);
    // HDF5 writes to disk only where the room is certain (hdf5.h): first
    // each chunk's index entry, the tokenizer's files and HDF5's own
    // structures, then the chunks a step at a time, then the sources.
    reserve((token_chunks(train_tokens) + token_chunks(val_tokens)) * 128 + tokenizer.encoder_json.size() +
            tokenizer.vocab_bpe.size() + (4u << 20));
    // HDF5 keeps the blocks it frees on lists of its own, up to 16 MiB: the
    // ones it outgrew (its metadata accumulator doubles to 2 MiB) would stay.
    constexpr int kList = 64 << 10, kAllLists = 1 << 20;
    h5::check(H5set_free_list_limits(kAllLists, kList, kAllLists, kList, kAllLists, kList), "free list limits");
    open_->file = h5::create_file(open_->out.temporary_path(), /*format_1_10=*/true);
    const hid_t file = open_->file;
    // HDF5's metadata cache grows with a file's chunk index (up to 32 MiB):
    // written once, in order, the index (an array, format_1_10) needs a page
    // of it at a time, and prepare's memory stays the same whatever the corpus.
    H5AC_cache_config_t cache{};
    cache.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    h5::check(H5Fget_mdc_config(file, &cache), "metadata cache");
    cache.set_initial_size = true;
    cache.initial_size = 128u << 10;
    cache.min_size = 128u << 10;
    cache.max_size = 256u << 10;
    h5::check(H5Fset_mdc_config(file, &cache), "metadata cache");
    h5::set_attr(file, "format", std::string(kDatasetFormat));
    h5::set_attr(file, "format_version", kDatasetFormatVersion);
    write_tokenizer(file, file, tokenizer);
    h5::set_attr(file, "val_fraction", val_fraction);
    h5::create_group(file, "train");
    h5::create_group(file, "val");
    open_->splits[0] = create_tokens(file, "train/tokens", train_tokens, tokenizer.vocab_size);
    open_->splits[1] = create_tokens(file, "val/tokens", val_tokens, tokenizer.vocab_size);
    for (int s = 0; s < 2; ++s) {
      const std::uint64_t tokens = s == 0 ? train_tokens : val_tokens;
      open_->chunks[s] = token_chunks(tokens);
      open_->chunk[s] = std::min<hsize_t>(kTokenChunk, tokens);
    }
  } catch (const std::exception& e) {
    open_.reset();
    throw std::runtime_error(naming_file(path, e.what()));
  }
}

TokenDatasetWriter::~TokenDatasetWriter() = default;

void TokenDatasetWriter::reserve(std::uint64_t more) {
  open_->reserved += more;
  if (const int error = open_->out.reserve(open_->reserved); error != 0 && error != EOPNOTSUPP)
    throw std::runtime_error("cannot reserve " + std::to_string(open_->reserved >> 20) +
                             " MiB for the dataset: " + std::strerror(error));
}

void TokenDatasetWriter::write_chunk(int split, std::uint64_t index, std::span<const unsigned char> filtered) {
  try {
    if (!open_ || open_->closed || split < 0 || split > 1 || index >= open_->chunks[split])
      throw std::logic_error("a token chunk that the dataset does not have");
    // Room for the chunks in steps: a reservation per chunk would cost a system call each.
    if (filtered.size() > open_->room) {
      const std::uint64_t step = std::max<std::uint64_t>(kReserveStep, filtered.size());
      reserve(step);
      open_->room += step;
    }
    open_->room -= filtered.size();
    const hsize_t offset = index * open_->chunk[split];
    h5::check(H5Dwrite_chunk(open_->splits[split], H5P_DEFAULT, 0, &offset, filtered.size(), filtered.data()),
              std::string("cannot write dataset '") + (split == 0 ? "train" : "val") + "/tokens'");
    ++open_->written[split];
  } catch (const std::exception& e) {
    throw std::runtime_error(naming_file(path_, e.what()));
  }
}

std::filesystem::path TokenDatasetWriter::close(const std::vector<DatasetSource>& sources) {
  try {
    if (!open_ || open_->closed) throw std::logic_error("a dataset closed twice");
    if (open_->written[0] != open_->chunks[0] || open_->written[1] != open_->chunks[1])
      throw std::logic_error("a dataset closed before all its chunks were written");
    std::string names, sums;
    for (const auto& s : sources) {
      names += (names.empty() ? "" : "\n") + s.file;
      sums += (sums.empty() ? "" : "\n") + s.sha256;
    }
    reserve(2 * (names.size() + sums.size()) + (64u << 10));
    h5::set_attr(open_->file, "sources", names);  // one per line
    h5::set_attr(open_->file, "sources_sha256", sums);
    h5::flush(open_->file);
    for (h5::Handle& split : open_->splits) split = h5::Handle();
    open_->file = h5::Handle();  // closed: HDF5 writes no more, and the checksum covers every byte
    open_->closed = true;
    open_->out.start_sync();      // to disk while it is read back for its checksum
    return open_->out.temporary_path();
  } catch (const std::exception& e) {
    throw std::runtime_error(naming_file(path_, e.what()));
  }
}

void TokenDatasetWriter::commit_hashed(const std::vector<std::string>& block_hashes) {
  try {
    if (!open_ || !open_->closed) throw std::logic_error("a dataset committed before it was closed");
    write_file_checksum(open_->out.temporary_path(), block_hashes);
    open_->out.commit();
    open_.reset();
  } catch (const std::exception& e) {
    throw std::runtime_error(naming_file(path_, e.what()));
  }
}

void TokenDatasetWriter::commit(const std::vector<DatasetSource>& sources) {
  const std::filesystem::path file = close(sources);
  std::vector<std::string> hashes;
  try {
    hashes = file_block_hashes(file, 0, ~std::uint64_t{0});
  } catch (const std::exception& e) {
    throw std::runtime_error(naming_file(path_, e.what()));
  }
  commit_hashed(hashes);
}

void write_token_dataset(const std::filesystem::path& path, const std::vector<std::int32_t>& train,
                         const std::vector<std::int32_t>& val, const TokenizerSpec& tokenizer,
                         const std::vector<DatasetSource>& sources, double val_fraction) {
  TokenSpool tokens(path, "tokens", token_element_size(tokenizer.vocab_size));
  tokens.append(train);
  tokens.append(val);
  const TokenStream all({{&tokens, 0, tokens.size()}});
  const TokenStream splits[2] = {all.slice(0, train.size()), all.slice(train.size(), all.size())};
  TokenDatasetWriter out(path, train.size(), val.size(), tokenizer, val_fraction);
  for (int s = 0; s < 2; ++s)
    for (std::uint64_t i = 0; i < token_chunks(splits[s].size()); ++i)
      out.write_chunk(s, i, filter_token_chunk(splits[s], i));
  out.commit(sources);
}

Hdf5TokenSource::Hdf5TokenSource(const std::filesystem::path& path, int min_window)
    : name_(path.string()) {
  try {
    file_ = h5::open_format(path, kDatasetFormat, kDatasetFormatVersion);
    tokenizer_ = read_tokenizer(file_, file_);
    train_ = open_tokens(file_, "train/tokens", train_size_);
    val_ = open_tokens(file_, "val/tokens", val_size_);
    // The sources' hashes and the sizes: cheap to read, and they change
    // whenever the tokens do (short of a hand-edited file).
    const std::string sources =
        h5::has_attr(file_, "sources_sha256") ? h5::string_attr(file_, "sources_sha256") : "";
    identity_ = tokenizer_.name + " dataset of " + std::to_string(train_size_) + " train + " +
                std::to_string(val_size_) + " val tokens, sources sha256 " +
                sha256_hex(sources).substr(0, 16);
  } catch (const std::exception& e) {
    throw std::runtime_error(name_ + ": " + e.what());
  }
  const auto need = static_cast<std::uint64_t>(min_window);
  if (train_size_ < need || val_size_ < need)
    throw std::runtime_error(name_ + ": too short (" + std::to_string(train_size_) + " train, " +
                             std::to_string(val_size_) + " val tokens) for windows of " +
                             std::to_string(min_window) + " tokens");
}

void Hdf5TokenSource::read_tokens(Split split, std::uint64_t start, std::size_t count,
                                  std::int32_t* out) const {
  if (start + count > split_size(split))
    throw std::out_of_range(name_ + ": token window past the end of the split");
  try {
    h5::read_range(split == Split::train ? train_ : val_, H5T_NATIVE_INT32, start, count, out);
  } catch (const std::exception& e) {
    throw std::runtime_error(name_ + ": " + e.what());
  }
}

std::vector<std::int32_t> read_split(const std::filesystem::path& path, Split split) {
  Hdf5TokenSource source(path, 1);
  std::vector<std::int32_t> tokens(source.split_size(split));
  if (!tokens.empty()) source.read_tokens(split, 0, tokens.size(), tokens.data());
  return tokens;
}

void check_val_fraction(double val_fraction) {
  char value[32];
  std::snprintf(value, sizeof value, "%g", val_fraction);
  require_setting(val_fraction >= 0 && val_fraction <= 0.5,  // NaN too
                  "{val_fraction} must be in [0, 0.5], not " + std::string(value));
}

void DataConfig::validate() const {
  check_val_fraction(val_fraction);
  // Every run scores validation windows (at --eval-every and at the end):
  // refused now rather than after the text is read.
  require_setting(val_fraction > 0, "{val_fraction} must be above 0 for training, which needs "
                                    "validation windows (cllm prepare takes 0)");
}

TrainingData open_training_data(const DataConfig& spec, int seq_len) {
  std::string ext = std::filesystem::path(spec.path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  TrainingData d;
  if (ext == ".h5" || ext == ".hdf5") {
    auto h5 = std::make_unique<Hdf5TokenSource>(spec.path, seq_len + 1);
    d.tokenizer = h5->tokenizer();
    d.source = std::move(h5);
  } else {
    d.source = std::make_unique<TokenDataset>(load_text_dataset(spec.path, spec.val_fraction, seq_len));
  }
  return d;
}

}  // namespace cllm
