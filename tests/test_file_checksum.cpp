// The SHA-256 in the first 512 bytes of every checkpoint and dataset cllm
// writes (file_checksum.h): a truncated or bit-flipped file - in its raw data
// or in HDF5's metadata - is refused in one line before HDF5 opens it;
// --resume auto sets such a checkpoint aside; files without a checksum (cllm's
// from before, h5py's) still load; h5ls and h5dump read files with one.
// Messages prove "before HDF5": HDF5's would name a failed Fletcher-32
// check, a bad signature or a missing attribute.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "cllm/data/sha256.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/checkpoint_store.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/durable_file.h"
#include "cllm/io/file_checksum.h"
#include "cllm/io/hdf5.h"
#include "cllm/model/model.h"
#include "cllm/train/run_settings.h"
#include "support/process.h"
#include "support/run_args.h"
#include "support/text.h"
#include "support/tiny_model.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::split_lines;
using test::TempDir;

const std::string kText = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";
const std::string kDamaged = "damaged: its checksum does not match (";

std::string file_bytes(const fs::path& p) { return test::read_file(p); }
void put_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}
void flip_bit(const fs::path& p, std::size_t at) {
  std::string bytes = file_bytes(p);
  ASSERT_LT(at, bytes.size());
  bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
  put_bytes(p, bytes);
}

void write_tiny_checkpoint(const fs::path& path, const test::TinyModel& tiny,
                           std::int64_t step = 1) {
  RunSettings settings = config_settings(tiny.config);
  settings["data"] = std::string("test");
  const OptimizerState optimizer = tiny.optimizer.state();
  write_checkpoint(path, tiny.model, &optimizer, TrainingState{step, 64, 0}, TokenizerSpec{},
                   settings);
}

// Byte tokens: pseudo-random letters a-z, which deflate cannot shrink much:
// 400,000 of them make a dataset of several 64 KiB blocks.
std::vector<std::int32_t> letters(std::size_t n) {
  std::vector<std::int32_t> t(n);
  std::uint64_t x = 88172645463325252ull;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t[i] = static_cast<std::int32_t>('a' + x % 26);
  }
  return t;
}

void write_letters_dataset(const fs::path& path) {
  write_token_dataset(path, letters(400000), letters(3000), TokenizerSpec{}, {{"test", "0"}}, 0.01);
}

// The message of what reading path throws ("" if it loads).
template <class Read>
std::string error_of(const Read& read) {
  try {
    read();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string checkpoint_error(const fs::path& path) {
  return error_of([&] {
    const CheckpointReader checkpoint(path);
    Model model(checkpoint.header().model);
    CheckpointMoments moments;
    checkpoint.read_into(model, &moments);
  });
}

std::string dataset_error(const fs::path& path) {
  return error_of([&] { (void)read_split(path, Split::train); });
}

class FileChecksumTest : public ::testing::Test {
 protected:
  FileChecksumTest() { h5::silence_error_stack(); }
  TempDir dir;
};

// The header's four lines, and the hash as the header's comment defines it,
// computed here from the file's bytes.
TEST_F(FileChecksumTest, TheHeaderHoldsTheLengthAndTheTreeHashOfTheBytesAfterIt) {
  const fs::path path = dir / "data.h5";
  write_letters_dataset(path);
  write_file_checksum(path, 64 << 10);  // blocks of 64 KiB: several, the last one short
  const std::string bytes = file_bytes(path);
  ASSERT_GT(bytes.size(), kChecksumHeaderBytes + 3 * (64 << 10));
  std::string blocks;
  for (std::size_t at = kChecksumHeaderBytes; at < bytes.size(); at += 64 << 10)
    blocks += sha256_hex(std::string_view(bytes).substr(at, 64 << 10)) + "\n";
  std::string expected = "cllm-sha256 v1\nlength " + std::to_string(bytes.size()) +
                         "\nblock 65536\nsha256 " + sha256_hex(blocks) + "\n";
  expected.resize(kChecksumHeaderBytes, '\0');
  EXPECT_EQ(bytes.substr(0, kChecksumHeaderBytes), expected);
  EXPECT_EQ(verify_file_checksum(path), FileChecksum::verified);
  EXPECT_EQ(read_split(path, Split::train), letters(400000));
  // The last block, short.
  flip_bit(path, bytes.size() - 10);
  EXPECT_TRUE(contains(error_of([&] { verify_file_checksum(path); }),
                       kDamaged + "the SHA-256 of its bytes"));
}

// Ranks that share the reading (prepare) hash blocks in parts: the header
// is the same as from one reader, and hashes for another size are refused.
TEST_F(FileChecksumTest, BlockHashesInPartsGiveTheSameHeader) {
  const fs::path whole = dir / "whole.h5", parts = dir / "parts.h5";
  write_letters_dataset(whole);
  fs::copy_file(whole, parts);
  write_file_checksum(whole, 64 << 10);
  const std::uint64_t blocks = checksum_blocks(fs::file_size(parts), 64 << 10);
  ASSERT_GE(blocks, 4u);
  std::vector<std::string> hashes = file_block_hashes(parts, 0, 1, 64 << 10);
  for (const std::string& h : file_block_hashes(parts, 1, blocks, 64 << 10)) hashes.push_back(h);
  EXPECT_TRUE(file_block_hashes(parts, blocks, blocks + 3, 64 << 10).empty());  // past the end: none
  std::vector<std::string> short_by_one(hashes.begin(), hashes.end() - 1);
  EXPECT_THROW(write_file_checksum(parts, short_by_one, 64 << 10), std::logic_error);
  write_file_checksum(parts, hashes, 64 << 10);
  EXPECT_EQ(file_bytes(parts), file_bytes(whole));
  EXPECT_EQ(verify_file_checksum(parts), FileChecksum::verified);
}

TEST_F(FileChecksumTest, CheckpointsAndDatasetsAreWrittenWithAVerifiedChecksum) {
  const test::TinyModel tiny;
  const fs::path checkpoint = dir / "checkpoint-00000001.h5", dataset = dir / "data.h5";
  write_tiny_checkpoint(checkpoint, tiny);
  write_letters_dataset(dataset);
  for (const fs::path& p : {checkpoint, dataset}) {
    EXPECT_TRUE(file_bytes(p).starts_with(
        "cllm-sha256 v1\nlength " + std::to_string(fs::file_size(p)) + "\nblock 67108864\nsha256 "))
        << p;
    EXPECT_EQ(verify_file_checksum(p), FileChecksum::verified) << p;
  }
  EXPECT_EQ(checkpoint_error(checkpoint), "");
  EXPECT_EQ(dataset_error(dataset), "");
}

// On a nearly full disk a checkpoint is built in memory (checkpoint.cpp):
// its image starts with the user block too, sealed as a file on disk is.
TEST_F(FileChecksumTest, AFileBuiltInMemoryIsSealedAsOneOnDisk) {
  const fs::path path = dir / "image.h5", copy = dir / "copy.h5";
  std::vector<unsigned char> image;
  {
    h5::Handle file = h5::create_memory_file(path.string());
    h5::set_attr(file, "format", std::string(kCheckpointFormat));
    h5::write_bytes(file, "text", "some bytes to hash");
    image = h5::file_image(file);
  }
  ASSERT_GT(image.size(), kChecksumHeaderBytes);
  EXPECT_EQ(std::count(image.begin(), image.begin() + kChecksumHeaderBytes, 0),
            static_cast<std::ptrdiff_t>(kChecksumHeaderBytes));
  write_durably(copy, image);
  write_file_checksum(image);
  write_durably(path, image);
  write_file_checksum(copy);
  EXPECT_EQ(file_bytes(path), file_bytes(copy));
  EXPECT_EQ(verify_file_checksum(path), FileChecksum::verified);
  h5::Handle file = h5::open_file(path);
  EXPECT_EQ(h5::string_attr(file, "format"), kCheckpointFormat);
  EXPECT_EQ(h5::read_bytes(file, "text"), "some bytes to hash");
}

// Truncated, or one bit flipped in the tensors' data or in HDF5's own
// structures (the superblock, an attribute's name): one line naming the
// file, and the checksum's words, not HDF5's.
TEST_F(FileChecksumTest, DamagedCheckpointsAreRefusedBeforeHdf5ReadsThem) {
  const test::TinyModel tiny;
  const fs::path original = dir / "original.h5";
  write_tiny_checkpoint(original, tiny);
  const std::string bytes = file_bytes(original);
  const auto* wte = reinterpret_cast<const char*>(tiny.model.params().data());
  const std::size_t data = bytes.find(std::string(wte, 64));
  const std::size_t attribute = bytes.find("format_version");
  ASSERT_NE(data, std::string::npos);
  ASSERT_NE(attribute, std::string::npos);
  const struct {
    const char* name;
    std::size_t flip;  // npos: truncate instead
    std::string says;
  } cases[] = {
      {"truncated.h5", std::string::npos,
       "the file has " + std::to_string(bytes.size() / 2) + " bytes, its checksum header says " +
           std::to_string(bytes.size())},
      {"tensor-data.h5", data + 33, "the SHA-256 of its bytes is "},
      {"superblock.h5", kChecksumHeaderBytes + 9, "the SHA-256 of its bytes is "},
      {"attribute-name.h5", attribute + 2, "the SHA-256 of its bytes is "},
      {"header.h5", 20, "its checksum header is unreadable"},
  };
  for (const auto& c : cases) {
    const fs::path path = dir / c.name;
    fs::copy_file(original, path);
    if (c.flip == std::string::npos) {
      fs::resize_file(path, bytes.size() / 2);
    } else {
      flip_bit(path, c.flip);
    }
    const std::string error = checkpoint_error(path);
    EXPECT_TRUE(error.starts_with(path.string() + ": " + kDamaged + c.says))
        << c.name << ": " << error;
    EXPECT_EQ(split_lines(error).size(), 1u) << error;
  }
}

TEST_F(FileChecksumTest, DamagedDatasetsAreRefusedBeforeHdf5ReadsThem) {
  const fs::path original = dir / "original.h5";
  write_letters_dataset(original);
  const std::string bytes = file_bytes(original);
  const std::size_t format = bytes.find("cllm-dataset");
  ASSERT_NE(format, std::string::npos);
  // Inside the second chunk of train tokens: where HDF5 says it is, whose
  // addresses start after the user block.
  haddr_t chunk = 0;
  {
    h5::Handle file = h5::open_file(original);
    h5::Handle tokens(H5Dopen2(file, "train/tokens", H5P_DEFAULT), "tokens");
    h5::Handle space(H5Dget_space(tokens), "space");
    hsize_t size = 0;
    ASSERT_GE(H5Dget_chunk_info(tokens, space, 1, nullptr, nullptr, &chunk, &size), 0);
    ASSERT_GT(size, 100u);
    chunk += kChecksumHeaderBytes + 50;
  }
  const struct {
    const char* name;
    std::size_t flip;
  } cases[] = {
      {"chunk-data.h5", chunk},
      {"superblock.h5", kChecksumHeaderBytes + 9},
      {"format-attribute.h5", format + 3},
  };
  for (const auto& c : cases) {
    const fs::path path = dir / c.name;
    fs::copy_file(original, path);
    flip_bit(path, c.flip);
    const std::string error = dataset_error(path);
    EXPECT_TRUE(error.starts_with(path.string() + ": " + kDamaged + "the SHA-256 of its bytes is "))
        << c.name << ": " << error;
  }
  // The header wiped, the same flip is HDF5's to find: it is in the tokens.
  std::string wiped = file_bytes(dir / "chunk-data.h5");
  std::fill_n(wiped.begin(), kChecksumHeaderBytes, '\0');
  put_bytes(dir / "chunk-data.h5", wiped);
  EXPECT_TRUE(contains(dataset_error(dir / "chunk-data.h5"), "Fletcher32"))
      << dataset_error(dir / "chunk-data.h5");
  const fs::path cut = dir / "truncated.h5";
  fs::copy_file(original, cut);
  fs::resize_file(cut, bytes.size() - 1);
  EXPECT_TRUE(dataset_error(cut).starts_with(cut.string() + ": " + kDamaged + "the file has " +
                                             std::to_string(bytes.size() - 1) + " bytes"))
      << dataset_error(cut);
}

// Files cllm wrote before it wrote checksums (the fuzzers' seeds, made by
// it), and a file whose header is gone, load through HDF5's own checks.
TEST_F(FileChecksumTest, FilesWithoutAChecksumLoadAsBefore) {
  const std::string corpus = std::string(CLLM_SOURCE_DIR) + "/tests/fuzz/corpus/";
  const fs::path old_checkpoint = corpus + "fuzz_checkpoint/byte-1layer-embd4.h5";
  const fs::path old_dataset = corpus + "fuzz_dataset/byte-4000.h5";
  EXPECT_EQ(verify_file_checksum(old_checkpoint), FileChecksum::absent);
  EXPECT_EQ(verify_file_checksum(old_dataset), FileChecksum::absent);
  EXPECT_EQ(checkpoint_error(old_checkpoint), "");
  EXPECT_EQ(read_split(old_dataset, Split::val).size(), 400u);

  // A header wiped: HDF5 reads the file, and a flipped bit in the tensors'
  // data is then Fletcher-32's to find.
  const test::TinyModel tiny;
  const fs::path path = dir / "wiped.h5";
  write_tiny_checkpoint(path, tiny);
  std::string bytes = file_bytes(path);
  std::fill_n(bytes.begin(), kChecksumHeaderBytes, '\0');
  put_bytes(path, bytes);
  EXPECT_EQ(verify_file_checksum(path), FileChecksum::absent);
  EXPECT_EQ(checkpoint_error(path), "");
  flip_bit(
      path,
      bytes.find(std::string(reinterpret_cast<const char*>(tiny.model.params().data()), 64)) + 33);
  const std::string error = checkpoint_error(path);
  EXPECT_TRUE(contains(error, "Fletcher32")) << error;
}

// --resume auto: a damaged newest checkpoint is set aside as .bad with the
// checksum's words and the one before it loads.
TEST_F(FileChecksumTest, ResumeSetsADamagedNewestCheckpointAside) {
  const test::TinyModel tiny;
  CheckpointStore store(dir.path());
  write_tiny_checkpoint(store.path(2), tiny, 2);
  write_tiny_checkpoint(store.path(4), tiny, 4);
  flip_bit(store.path(4), fs::file_size(store.path(4)) / 2);
  testing::internal::CaptureStderr();
  std::int64_t loaded_step = -1;
  const auto loaded = store.load_newest([&](const CheckpointFile& f) {
    const CheckpointReader checkpoint(f.path);
    loaded_step = checkpoint.header().state.step;
  });
  const std::string warnings = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 2);
  EXPECT_EQ(loaded_step, 2);
  EXPECT_TRUE(fs::exists(store.path(4).string() + ".bad"));
  EXPECT_TRUE(contains(
      warnings, "cllm: warning: skipping checkpoint " + store.path(4).string() + ": " + kDamaged))
      << warnings;
}

// The command line: one line naming the file, exit 1, for a dataset given
// to train and a checkpoint given to --resume and generate.
TEST_F(FileChecksumTest, TheCommandsRefuseADamagedFileInOneLine) {
  const fs::path data = dir / "data.h5", run = dir / "run";
  ASSERT_EQ(test::run_cllm({"prepare", kText, "--out", data.string()}, dir.path()).exit_code, 0);
  const auto trained = test::run_cllm(
      test::with(test::tiny_run(data.string(), run.string(), 1, 2), {"--checkpoint-every", "2"}),
      dir.path());
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const fs::path checkpoint = CheckpointStore(run).path(2);
  ASSERT_EQ(verify_file_checksum(checkpoint), FileChecksum::verified);
  flip_bit(checkpoint, fs::file_size(checkpoint) - 100);
  flip_bit(data, fs::file_size(data) / 2);
  const std::vector<std::pair<std::vector<std::string>, fs::path>> cases = {
      {test::tiny_run(data.string(), (dir / "o1").string(), 1, 2), data},
      {test::with(test::tiny_run(kText, (dir / "o2").string(), 1, 2),
                  {"--resume", checkpoint.string()}),
       checkpoint},
      {{"generate", "--checkpoint", checkpoint.string()}, checkpoint},
  };
  for (const auto& [args, file] : cases) {
    const auto r = test::run_cllm(args, dir.path());
    EXPECT_EQ(r.exit_code, 1) << test::join(args);
    const auto lines = split_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_TRUE(lines[0].starts_with("cllm: error: " + file.string() + ": " + kDamaged))
        << lines[0];
  }
}

// Other tools read the files: the checksum is an HDF5 user block.
TEST_F(FileChecksumTest, Hdf5ToolsReadFilesWithAChecksum) {
  const test::TinyModel tiny;
  const fs::path path = dir / "checkpoint.h5";
  write_tiny_checkpoint(path, tiny);
  {
    h5::Handle file = h5::open_file(path);
    h5::Handle fcpl(H5Fget_create_plist(file), "creation");
    hsize_t user_block = 0;
    ASSERT_GE(H5Pget_userblock(fcpl, &user_block), 0);
    EXPECT_EQ(user_block, kChecksumHeaderBytes);
  }
  const auto ls = test::run_program("/usr/bin/h5ls", {"-r", path.string()}, dir.path());
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_TRUE(contains(ls.out, "/model/transformer.wte.weight Dataset {256, 8}")) << ls.out;
  const auto dump =
      test::run_program("/usr/bin/h5dump", {"-B", "-a", "/state/step", path.string()}, dir.path());
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_TRUE(contains(dump.out, "USERBLOCK_SIZE 512")) << dump.out;
  EXPECT_TRUE(contains(dump.out, "(0): 1")) << dump.out;
}

}  // namespace
}  // namespace cllm
