// cllm prepare's streaming path: tokens spooled block by block and written
// as chunks filtered on all threads (src/io/chunk_filters.h) must read back
// through HDF5's own filters - the checksum verified - as exactly the
// tokens of encoding the whole text at once.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cllm/app/prepare.h"
#include "cllm/data/bpe_tokenizer.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/dataset_file.h"
#include "support/process.h"

namespace cllm {
namespace {

const std::string kText = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";
const std::string kVocab = std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe";

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A split as HDF5 reads it, whatever the file's tokenizer says (read_split
// checks that against the vocabulary); empty if HDF5 fails to read it.
std::vector<std::int32_t> hdf5_read(const std::string& h5, const char* name) {
  const hid_t file = H5Fopen(h5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
  const hid_t space = H5Dget_space(dset);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)));
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (H5Dread(dset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tokens.data()) < 0) tokens.clear();
  H5Sclose(space);
  H5Dclose(dset);
  H5Fclose(file);
  return tokens;
}

std::vector<std::int32_t> both_splits(const std::string& h5) {
  std::vector<std::int32_t> all = read_split(h5, Split::train);
  const std::vector<std::int32_t> val = read_split(h5, Split::val);
  all.insert(all.end(), val.begin(), val.end());
  return all;
}

// Sizes around the chunk (65,536 tokens), in each element type: uint8,
// uint16 (shuffled) and uint32.
TEST(TokenDatasetWriter, EverySizeAndElementTypeReadsBackThroughHdf5sFilters) {
  test::TempDir dir;
  for (const int vocab : {256, 50257, 100000}) {
    for (const std::size_t n : {1, 1000, 65535, 65536, 65537, 200003}) {
      const std::string name = std::to_string(vocab) + "_" + std::to_string(n);
      SCOPED_TRACE(name);
      std::vector<std::int32_t> train(n), val(n / 3 + 1);
      std::uint64_t x = 88172645463325252ull;  // xorshift: tokens that do not compress away
      for (auto* split : {&train, &val})
        for (auto& t : *split) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          t = static_cast<std::int32_t>(x % static_cast<std::uint64_t>(vocab));
        }
      TokenizerSpec tokenizer;
      tokenizer.vocab_size = vocab;  // the element type follows it
      const std::string h5 = (dir / (name + ".h5")).string();
      write_token_dataset(h5, train, val, tokenizer, {}, 0.25);
      EXPECT_EQ(hdf5_read(h5, "train/tokens"), train);
      EXPECT_EQ(hdf5_read(h5, "val/tokens"), val);
      EXPECT_FALSE(std::filesystem::exists(spool_path(h5, "tokens"))) << "the spool was left behind";
    }
  }
}

// A chunk whose bytes changed fails its Fletcher-32 on read: the checksum
// is there and HDF5 verifies it.
TEST(TokenDatasetWriter, ACorruptChunkFailsItsChecksum) {
  test::TempDir dir;
  const std::string h5 = (dir / "d.h5").string();
  std::vector<std::int32_t> train(70000);
  for (std::size_t i = 0; i < train.size(); ++i) train[i] = static_cast<std::int32_t>(i * 7919 % 50257);
  TokenizerSpec tokenizer;
  tokenizer.vocab_size = 50257;
  write_token_dataset(h5, train, {1, 2, 3}, tokenizer, {}, 0);
  ASSERT_EQ(hdf5_read(h5, "train/tokens"), train);
  // The first chunk's offset, from HDF5.
  haddr_t offset = 0;
  {
    const hid_t file = H5Fopen(h5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t dset = H5Dopen2(file, "train/tokens", H5P_DEFAULT);
    const hid_t space = H5Dget_space(dset);
    hsize_t size = 0;
    ASSERT_GE(H5Dget_chunk_info(dset, space, 0, nullptr, nullptr, &offset, &size), 0);
    H5Sclose(space);
    H5Dclose(dset);
    H5Fclose(file);
  }
  std::fstream f(h5, std::ios::in | std::ios::out | std::ios::binary);
  char byte = 0;
  f.seekg(static_cast<std::streamoff>(offset + 40));
  f.get(byte);
  f.seekp(static_cast<std::streamoff>(offset + 40));
  f.put(static_cast<char>(byte ^ 0x5a));
  f.close();
  EXPECT_TRUE(hdf5_read(h5, "val/tokens") == std::vector<std::int32_t>({1, 2, 3}));
  EXPECT_TRUE(hdf5_read(h5, "train/tokens").empty()) << "HDF5 read a corrupt chunk";
}

// Text read in small blocks, each cut where GPT-2 would end a token anyway,
// gives the ids of the whole text: the same dataset as one block.
TEST(PrepareStreaming, BlocksGiveTheTokensOfTheWholeText) {
  test::TempDir dir;
  const std::string text = file_bytes(kText);
  for (const std::string tokenizer : {"byte", "gpt2-bpe"}) {
    SCOPED_TRACE(tokenizer);
    PrepareConfig spec;
    spec.inputs = {kText, kText};  // two documents
    spec.tokenizer = tokenizer;
    spec.vocab_dir = kVocab;
    spec.val_fraction = 0.1;
    spec.block_bytes = 100000;  // 41 blocks a file
    spec.out = (dir / (tokenizer + ".h5")).string();
    const PrepareSummary done = prepare_dataset(spec);

    std::vector<std::int32_t> expected = make_tokenizer(tokenizer_spec(tokenizer, kVocab))->encode(text);
    if (tokenizer == "gpt2-bpe") expected.push_back(Gpt2BpeTokenizer::kEndOfText);
    const std::size_t one = expected.size();
    expected.insert(expected.end(), expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(one));
    EXPECT_EQ(done.train_tokens + done.val_tokens, expected.size());
    EXPECT_EQ(done.val_tokens, static_cast<std::size_t>(static_cast<double>(expected.size()) * 0.1));
    EXPECT_TRUE(both_splits(spec.out) == expected) << "the blocks' tokens differ from the whole text's";
    EXPECT_EQ(done.bytes, 2 * text.size());
  }
}

}  // namespace
}  // namespace cllm
