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

hid_t token_file_type(int vocab_size) {
  if (vocab_size <= 256) return H5T_STD_U8LE;
  if (vocab_size <= 65536) return H5T_STD_U16LE;
  return H5T_STD_U32LE;
}

// Creates the 1-D dataset name, chunked, shuffled, deflated and checksummed,
// and writes split's chunks into it as they are (H5Dwrite_chunk).
void write_tokens(hid_t file, const std::string& name, const FilteredSplit& split, int vocab_size) {
  const hsize_t n = split.tokens;
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
  h5::Handle dset(H5Dcreate2(file, name.c_str(), token_file_type(vocab_size), space, H5P_DEFAULT, dcpl,
                             H5P_DEFAULT),
                  "cannot create dataset '" + name + "'");
  if (split.chunks.size() != token_chunks(n)) throw std::logic_error("a split's chunks do not cover it");
  std::vector<unsigned char> bytes;
  for (std::size_t i = 0; i < split.chunks.size(); ++i) {
    const FilteredSplit::Chunk& c = split.chunks[i];
    bytes.resize(c.size);
    c.spool->read_bytes(c.offset, c.size, bytes.data());
    const hsize_t offset = static_cast<hsize_t>(i) * chunk;
    h5::check(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, &offset, bytes.size(), bytes.data()),
              "cannot write dataset '" + name + "'");
  }
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
  return std::max<std::size_t>(1, kChunkCacheBytes / (chunk * H5Tget_size(type)));
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

std::vector<std::uint64_t> filter_token_chunks(const TokenStream& split, std::uint64_t first,
                                               std::uint64_t last, TokenSpool& into) {
  const std::uint64_t n = split.size();
  std::vector<std::uint64_t> sizes;
  if (first >= last) return sizes;
  const std::size_t element = split.element_size();
  const hsize_t chunk = std::min<hsize_t>(kTokenChunk, n);
  const auto batch = static_cast<std::uint64_t>(4 * omp_get_max_threads());
  std::vector<std::vector<unsigned char>> filtered(batch);
  for (std::uint64_t b0 = first; b0 < last; b0 += batch) {
    const std::uint64_t b1 = std::min(last, b0 + batch);
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t i = static_cast<std::int64_t>(b0); i < static_cast<std::int64_t>(b1); ++i) {
      try {
        // The last chunk is stored whole: zeros past the end of the data.
        std::vector<unsigned char> raw(chunk * element, 0);
        const hsize_t begin = static_cast<hsize_t>(i) * chunk;
        split.read_bytes(begin, std::min(chunk, n - begin), raw.data());
        filtered[static_cast<std::size_t>(i) - b0] = h5::filter_chunk(raw, element, kDeflateLevel);
      } catch (...) {
#pragma omp critical(cllm_filter_token_chunks)
        failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    for (std::uint64_t i = b0; i < b1; ++i) {
      into.append_bytes(filtered[i - b0]);
      sizes.push_back(filtered[i - b0].size());
    }
  }
  return sizes;
}

void write_token_dataset(const std::filesystem::path& path, const FilteredSplit& train,
                         const FilteredSplit& val, const TokenizerSpec& tokenizer,
                         const std::vector<DatasetSource>& sources, double val_fraction) {
  try {
    DurableWriter out(path);
    // HDF5 writes to disk only where the room is certain (hdf5.h): the
    // tokens, deflate's worst case, each chunk's index entry and checksum,
    // the tokenizer's files, the sources and HDF5's own structures.
    std::uint64_t bytes = (train.tokens + val.tokens) / kTokenChunk * 128 + tokenizer.encoder_json.size() +
                          tokenizer.vocab_bpe.size() + (4u << 20);
    for (const auto& s : sources) bytes += 2 * (s.file.size() + s.sha256.size() + 2);
    for (const FilteredSplit* split : {&train, &val})
      for (const FilteredSplit::Chunk& c : split->chunks) bytes += c.size;
    if (const int error = out.reserve(bytes); error != 0 && error != EOPNOTSUPP)
      throw std::runtime_error("cannot reserve " + std::to_string(bytes >> 20) +
                               " MiB for the dataset: " + std::strerror(error));
    {
      h5::Handle file = h5::create_file(out.temporary_path(), /*large_attributes=*/true);
      h5::set_attr(file, "format", std::string(kDatasetFormat));
      h5::set_attr(file, "format_version", kDatasetFormatVersion);
      write_tokenizer(file, file, tokenizer);
      std::string names, sums;
      for (const auto& s : sources) {
        names += (names.empty() ? "" : "\n") + s.file;
        sums += (sums.empty() ? "" : "\n") + s.sha256;
      }
      h5::set_attr(file, "sources", names);  // one per line
      h5::set_attr(file, "sources_sha256", sums);
      h5::set_attr(file, "val_fraction", val_fraction);
      h5::create_group(file, "train");
      h5::create_group(file, "val");
      write_tokens(file, "train/tokens", train, tokenizer.vocab_size);
      write_tokens(file, "val/tokens", val, tokenizer.vocab_size);
      h5::flush(file);
    }  // closed: HDF5 writes no more, and the checksum covers every byte
    write_file_checksum(out.temporary_path());
    out.commit();
  } catch (const std::exception& e) {
    throw std::runtime_error(naming_file(path, e.what()));
  }
}

void write_token_dataset(const std::filesystem::path& path, const std::vector<std::int32_t>& train,
                         const std::vector<std::int32_t>& val, const TokenizerSpec& tokenizer,
                         const std::vector<DatasetSource>& sources, double val_fraction) {
  const std::size_t element = token_element_size(tokenizer.vocab_size);
  TokenSpool tokens(path, "tokens", element), chunks(path, "chunks", 1);
  tokens.append(train);
  tokens.append(val);
  const TokenStream all({{&tokens, 0, tokens.size()}});
  FilteredSplit splits[2];
  std::uint64_t offset = 0;
  for (int s = 0; s < 2; ++s) {
    const TokenStream split = s == 0 ? all.slice(0, train.size()) : all.slice(train.size(), all.size());
    splits[s].tokens = split.size();
    for (const std::uint64_t size : filter_token_chunks(split, 0, token_chunks(split.size()), chunks)) {
      splits[s].chunks.push_back({&chunks, offset, size});
      offset += size;
    }
  }
  write_token_dataset(path, splits[0], splits[1], tokenizer, sources, val_fraction);
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
