// cllm prepare's streaming path: tokens spooled block by block and written
// as chunks filtered on all threads (src/io/chunk_filters.h) must read back
// through HDF5's own filters - the checksum verified - as exactly the
// tokens of encoding the whole text at once.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cllm/app/prepare.h"
#include "cllm/data/corpus_reader.h"
#include "cllm/data/corpus_shares.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/bpe_tokenizer.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/file_checksum.h"
#include "support/process.h"
#include "support/token_files.h"

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

// Sizes around the chunk (16,384 tokens), in each element type: uint8,
// uint16 (shuffled) and uint32.
TEST(TokenDatasetWriter, EverySizeAndElementTypeReadsBackThroughHdf5sFilters) {
  test::TempDir dir;
  for (const int vocab : {256, 50257, 100000}) {
    for (const std::size_t n : {1, 1000, 16383, 16384, 16385, 65537, 200003}) {
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
      for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
        EXPECT_NE(entry.path().filename().string()[0], '.') << entry.path() << " was left behind";
    }
  }
}

// The chunk rounds hand rank 0 chunks in rounds: whatever the order they are
// written in, the tokens are the same, and a dataset with a chunk missing is
// refused at commit and leaves nothing behind.
TEST(TokenDatasetWriter, ChunksInAnyOrderGiveTheSameTokensAndAMissingOneIsRefused) {
  test::TempDir dir;
  std::vector<std::int32_t> train(3 * 16384 + 100), val(20000);
  for (std::size_t i = 0; i < train.size(); ++i) train[i] = static_cast<std::int32_t>(i * 7919 % 50257);
  for (std::size_t i = 0; i < val.size(); ++i) val[i] = static_cast<std::int32_t>(i * 104729 % 50257);
  TokenizerSpec tokenizer;
  tokenizer.vocab_size = 50257;
  TokenSpool spool(dir / "spool.h5", "tokens", 2);
  spool.append(train);
  spool.append(val);
  const TokenStream all({{&spool, 0, spool.size()}});
  const TokenStream splits[2] = {all.slice(0, train.size()), all.slice(train.size(), all.size())};
  const std::string h5 = (dir / "d.h5").string();
  {
    TokenDatasetWriter out(h5, train.size(), val.size(), tokenizer, 0.1);
    for (int s = 1; s >= 0; --s)  // backwards
      for (std::uint64_t i = token_chunks(splits[s].size()); i-- > 0;)
        out.write_chunk(s, i, filter_token_chunk(splits[s], i));
    out.commit({{"in.txt", "00"}});
  }
  EXPECT_EQ(hdf5_read(h5, "train/tokens"), train);
  EXPECT_EQ(hdf5_read(h5, "val/tokens"), val);
  const std::string missing = (dir / "missing.h5").string();
  {
    TokenDatasetWriter out(missing, train.size(), val.size(), tokenizer, 0.1);
    for (std::uint64_t i = 1; i < token_chunks(train.size()); ++i)  // not the first
      out.write_chunk(0, i, filter_token_chunk(splits[0], i));
    out.write_chunk(1, 0, filter_token_chunk(splits[1], 0));
    try {
      out.commit({});
      ADD_FAILURE() << "a dataset with a chunk missing was committed";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    }
    EXPECT_THROW(out.write_chunk(0, token_chunks(train.size()), filter_token_chunk(splits[0], 0)),
                 std::runtime_error);
  }
  EXPECT_FALSE(std::filesystem::exists(missing));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    EXPECT_NE(entry.path().filename().string().rfind(".missing", 0), 0u) << entry.path() << " was left behind";
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
    // HDF5 counts addresses from the end of the user block (the file's checksum).
    const hid_t fcpl = H5Fget_create_plist(file);
    hsize_t user_block = 0;
    ASSERT_GE(H5Pget_userblock(fcpl, &user_block), 0);
    offset += user_block;
    H5Pclose(fcpl);
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

// Byte-level text is done as its chunks are written, the rest as it is
// tokenized: every report is within the inputs' bytes and none goes back.
TEST(PrepareStreaming, ProgressNeverPassesTheInputsOrGoesBack) {
  test::TempDir dir;
  const std::uint64_t size = std::filesystem::file_size(kText);
  for (const std::string tokenizer : {"byte", "gpt2-bpe"}) {
    SCOPED_TRACE(tokenizer);
    PrepareConfig spec;
    spec.inputs = {kText, kText};
    spec.tokenizer = tokenizer;
    spec.vocab_dir = kVocab;
    spec.block_bytes = 100000;
    spec.out = (dir / (tokenizer + ".h5")).string();
    std::vector<PrepareProgress> reports;
    prepare_dataset(spec, Comm(), [&](const PrepareProgress& p) { reports.push_back(p); });
    ASSERT_GE(reports.size(), 3u);
    for (std::size_t i = 0; i < reports.size(); ++i) {
      EXPECT_EQ(reports[i].bytes, 2 * size);
      EXPECT_LE(reports[i].bytes_done, reports[i].bytes) << "report " << i;
      if (i > 0) {
        EXPECT_GE(reports[i].bytes_done, reports[i - 1].bytes_done) << "report " << i;
      }
    }
    EXPECT_TRUE(reports.back().done);
    EXPECT_EQ(reports.back().bytes_done, 2 * size);
  }
}

void write(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string gzip(const std::filesystem::path& path, std::string bytes) {
  const gzFile gz = gzopen(path.c_str(), "wb");
  gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(gz);
  return file_bytes(path.string());
}

// JSON Lines: a document per record; lines that hold none are skipped,
// counted and the first named; every document ends with <|endoftext|>.
TEST(PrepareInputs, JsonLinesGiveADocumentPerRecordAndNameTheLinesThatHoldNone) {
  test::TempDir dir;
  write(dir / "a.jsonl", "{\"text\": \"It is a truth\", \"id\": 1}\n"
                         "\n"
                         "{\"text\": 42}\n"
                         "not json at all\n"
                         "{\"body\": \"no text field\"}\n"
                         "{\"text\": \"universally acknowledged\\n\"}");  // no final newline
  PrepareConfig spec;
  spec.inputs = {(dir / "a.jsonl").string()};
  spec.jsonl_field = "text";
  spec.tokenizer = "gpt2-bpe";
  spec.vocab_dir = kVocab;
  spec.val_fraction = 0;
  spec.out = (dir / "a.h5").string();
  const PrepareSummary done = prepare_dataset(spec);
  EXPECT_EQ(done.documents, 2u);
  EXPECT_EQ(done.skipped_lines, 3u);
  EXPECT_EQ(done.first_skipped, (dir / "a.jsonl").string() + ":3: field 'text' is not a string");
  const auto tok = make_tokenizer(tokenizer_spec("gpt2-bpe", kVocab));
  std::vector<std::int32_t> expected = tok->encode("It is a truth");
  expected.push_back(Gpt2BpeTokenizer::kEndOfText);
  for (const std::int32_t id : tok->encode("universally acknowledged\n")) expected.push_back(id);
  expected.push_back(Gpt2BpeTokenizer::kEndOfText);
  EXPECT_EQ(hdf5_read(spec.out, "train/tokens"), expected);
}

// Records longer than the reader's 1 MiB reads, and short ones that straddle
// its reads, come out whole and in order; so does a last line with no newline.
TEST(PrepareInputs, JsonLinesAcrossTheReadsComeOutWholeAndInOrder) {
  test::TempDir dir;
  std::vector<std::string> texts;
  char letter = 'a';
  for (const std::size_t n : {5u, 3u << 20, 100u, (1u << 20) + 1, 7u}) texts.emplace_back(n, letter++);
  for (int i = 0; i < 40000; ++i) texts.push_back(std::to_string(i));  // ~0.3 MiB of short lines
  std::string lines, expected;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (i % 1000 == 3) lines += "\n";  // a blank line now and then
    lines.append("{\"text\": \"").append(texts[i]).append("\"}");
    if (i + 1 < texts.size()) lines += "\n";
    expected += texts[i];
  }
  write(dir / "long.jsonl", lines);
  PrepareConfig spec;
  spec.inputs = {(dir / "long.jsonl").string()};
  spec.jsonl_field = "text";
  spec.val_fraction = 0;
  spec.out = (dir / "long.h5").string();
  const PrepareSummary done = prepare_dataset(spec);
  EXPECT_EQ(done.documents, texts.size());
  EXPECT_EQ(done.skipped_lines, 0u);
  const std::vector<std::int32_t> ids = hdf5_read(spec.out, "train/tokens");
  EXPECT_TRUE(std::string(ids.begin(), ids.end()) == expected);  // no 4 MiB diff on failure
}

// Folders, glob patterns and .gz files, in the order given: the same tokens
// as the plain files named one by one; a cut-short .gz is one line, exit 1.
TEST(PrepareInputs, FoldersPatternsAndGzipReadAsThePlainFilesInOrder) {
  test::TempDir dir;
  const std::string text = file_bytes(kText);
  write(dir / "c/b.txt", text.substr(0, 100000));
  write(dir / "c/sub/a.txt", text.substr(100000, 50000));
  write(dir / "p/x1.txt", text.substr(150000, 30000));
  write(dir / "p/x2.txt", text.substr(180000, 20000));
  const std::string zipped = gzip(dir / "z.txt.gz", text.substr(200000, 300000));
  const auto prepare = [&](std::vector<std::string> inputs, const std::string& out) {
    std::vector<std::string> args = {"prepare"};
    args.insert(args.end(), inputs.begin(), inputs.end());
    args.insert(args.end(), {"--out", out, "--tokenizer", "gpt2-bpe", "--vocab-dir", kVocab});
    return test::run_cllm(args, dir.path());
  };
  const auto listed = prepare({"c/b.txt", "c/sub/a.txt", "p/x1.txt", "p/x2.txt", "z.txt.gz"}, "listed.h5");
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  // A folder is every file below it in path order: c/b.txt before c/sub/a.txt.
  const auto expanded = prepare({"c", "p/x*.txt", "z.txt.gz"}, "expanded.h5");
  ASSERT_EQ(expanded.exit_code, 0) << expanded.err;
  EXPECT_TRUE(both_splits((dir / "listed.h5").string()) == both_splits((dir / "expanded.h5").string()));
  const std::vector<std::int32_t> all = both_splits((dir / "listed.h5").string());
  EXPECT_EQ(std::count(all.begin(), all.end(), Gpt2BpeTokenizer::kEndOfText), 5) << "a document per file";

  write(dir / "cut.txt.gz", zipped.substr(0, zipped.size() / 2));
  const auto cut = prepare({"cut.txt.gz"}, "cut.h5");
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_EQ(cut.err, "cllm: error: cut.txt.gz: truncated gzip file\n");
  EXPECT_FALSE(std::filesystem::exists(dir / "cut.h5"));
  const auto none = prepare({"q*.txt"}, "none.h5");
  EXPECT_EQ(none.err, "cllm: error: q*.txt: matches no file\n");
  EXPECT_EQ(none.exit_code, 1);
}

// llm.c shards and .npy arrays are copied as they are, in order among the
// text files (no end-of-text token added: llm.c's shards hold their own);
// an id the vocabulary does not have is one line naming the file, exit 1.
TEST(PrepareInputs, TokenFilesAreCopiedAsTheyAre) {
  test::TempDir dir;
  const auto tok = make_tokenizer(tokenizer_spec("gpt2-bpe", kVocab));
  const std::string text = file_bytes(kText);
  const std::vector<std::int32_t> a = tok->encode(text.substr(0, 30000)), b = tok->encode(text.substr(30000, 20000));
  write(dir / "k/1.bin", test::llmc_bytes(1, std::vector<std::uint64_t>(a.begin(), a.end())));
  write(dir / "k/2.npy", test::npy_of("<i4", std::vector<std::int64_t>(b.begin(), b.end())));
  write(dir / "k/3.txt", text.substr(50000, 10000));
  const auto r =
      test::run_cllm({"prepare", "k", "--out", "k.h5", "--tokenizer", "gpt2-bpe", "--vocab-dir", kVocab}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::int32_t> expected = a;
  expected.insert(expected.end(), b.begin(), b.end());
  for (const std::int32_t id : tok->encode(text.substr(50000, 10000))) expected.push_back(id);
  expected.push_back(Gpt2BpeTokenizer::kEndOfText);
  EXPECT_TRUE(both_splits((dir / "k.h5").string()) == expected);

  const auto bytes = test::run_cllm({"prepare", "k/1.bin", "--out", "b.h5"}, dir.path());
  EXPECT_EQ(bytes.exit_code, 1);
  const std::int32_t first_big = *std::find_if(a.begin(), a.end(), [](std::int32_t id) { return id >= 256; });
  EXPECT_EQ(bytes.err.substr(0, bytes.err.find(" at position")),
            "cllm: error: k/1.bin: token id " + std::to_string(first_big));
  EXPECT_FALSE(std::filesystem::exists(dir / "b.h5"));
}

// Thousands of inputs with long names: the sources' attributes pass HDF5's
// 64 KiB limit of the original file format, and the dataset still holds them.
TEST(PrepareInputs, ThousandsOfSourcesAreRecorded) {
  test::TempDir dir;
  const std::string folder = std::string(120, 'f');
  for (int i = 0; i < 1100; ++i) write(dir / folder / ("part-" + std::to_string(100000 + i) + ".txt"), "a b c\n");
  const auto r = test::run_cllm({"prepare", folder, "--out", "many.h5"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const hid_t file = H5Fopen((dir / "many.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t attr = H5Aopen(file, "sources", H5P_DEFAULT);
  const hid_t type = H5Aget_type(attr);
  EXPECT_GT(H5Tget_size(type), 65536u * 2);
  H5Tclose(type);
  H5Aclose(attr);
  H5Fclose(file);
  EXPECT_EQ(hdf5_read((dir / "many.h5").string(), "train/tokens").size() +
                hdf5_read((dir / "many.h5").string(), "val/tokens").size(),
            1100u * 6);
}

// A FIFO is refused at once, not read (it would block until a writer came).
TEST(PrepareInputs, AFifoIsRefusedWithoutWaiting) {
  test::TempDir dir;
  ASSERT_EQ(mkfifo((dir / "fifo").c_str(), 0600), 0);
  const auto r = test::run_cllm({"prepare", "fifo", "--out", "f.h5"}, dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "cllm: error: fifo: not a regular file\n");
}

// --val-split documents: every document whole on one side, chosen by its
// content: about val_fraction of them, the same ones whatever the order.
TEST(PrepareInputs, DocumentsSplitKeepsEachDocumentWholeOnOneSide) {
  test::TempDir dir;
  std::string lines;
  for (int i = 0; i < 2000; ++i) lines += "{\"text\": \"document " + std::to_string(i) + " of many\"}\n";
  write(dir / "d.jsonl", lines);
  PrepareConfig spec;
  spec.inputs = {(dir / "d.jsonl").string()};
  spec.jsonl_field = "text";
  spec.val_split = "documents";
  spec.val_fraction = 0.1;
  spec.out = (dir / "d.h5").string();
  prepare_dataset(spec);
  const auto text_of = [](const std::vector<std::int32_t>& ids) { return std::string(ids.begin(), ids.end()); };
  const std::string train = text_of(read_split(spec.out, Split::train));
  const std::string val = text_of(read_split(spec.out, Split::val));
  std::size_t in_val = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string doc = "document " + std::to_string(i) + " of many";
    const bool t = train.find(doc + "d") != std::string::npos || train.ends_with(doc);
    const bool v = val.find(doc + "d") != std::string::npos || val.ends_with(doc);
    ASSERT_NE(t, v) << doc << " is on both sides or neither";
    EXPECT_EQ(v, in_validation(doc, 0.1)) << doc;
    in_val += v;
  }
  EXPECT_GT(in_val, 140u);  // 200 expected
  EXPECT_LT(in_val, 260u);
}

// The shares of ranks, and the pieces that ranks on one node take, join to
// the files, in order, and each cut falls where its rule allows: after a line
// end, before a spaced word, anywhere; a .gz file and an empty one go whole
// to one share.
TEST(CorpusShares, PartsJoinToTheFilesAndCutOnlyWhereAllowed) {
  test::TempDir dir;
  const std::string text = file_bytes(kText).substr(0, 400000);
  std::string lines;
  for (int i = 0; i < 3000; ++i) lines += "{\"text\": \"record " + std::to_string(i) + " of many\"}\n";
  std::vector<std::string> files;
  const auto add = [&](const std::string& name, const std::string& bytes) {
    write(dir / name, bytes);
    files.push_back((dir / name).string());
  };
  add("a.txt", text.substr(0, 250000));
  add("empty.txt", "");
  add("b.txt", text.substr(250000, 7000));
  gzip(dir / "c.txt.gz", text.substr(257000, 100000));
  files.push_back((dir / "c.txt.gz").string());
  add("d.txt", text.substr(257000));
  add("e.jsonl", lines);
  for (const CutRule rule : {CutRule::anywhere, CutRule::encoding, CutRule::line}) {
    for (const int ranks : {1, 2, 3, 5, 16, 64, -2, -3}) {  // negative: pieces_to_take by so many ranks
      SCOPED_TRACE(std::to_string(static_cast<int>(rule)) + " rule, " + std::to_string(ranks) + " ranks");
      const auto shares = ranks > 0 ? share_corpus(files, ranks, rule) : pieces_to_take(files, -ranks, 4u << 20, rule);
      if (ranks > 0) {
        ASSERT_EQ(shares.size(), static_cast<std::size_t>(ranks));
      }
      // Pieces to take of this 0.5 MB corpus shrink to 64 KiB: many of them.
      if (ranks < 0) {
        EXPECT_GT(shares.size(), 6u);
      }
      std::uint32_t file = 0;
      std::uint64_t at = 0;  // in file
      for (const auto& share : shares) {
        for (const CorpusPart& part : share) {
          if (part.file != file) {  // the last file was done
            EXPECT_EQ(at, std::filesystem::file_size(files[file]));
            EXPECT_EQ(part.file, file + 1);
            file = part.file;
            at = 0;
          }
          ASSERT_EQ(part.begin, at) << "a gap or overlap in " << files[file];
          EXPECT_TRUE(part.end > part.begin || std::filesystem::file_size(files[file]) == 0);
          at = part.end;
          if (part.begin == 0) continue;
          const std::string bytes = file_bytes(files[file]);
          EXPECT_FALSE(files[file].ends_with(".gz")) << "a .gz file was cut";
          if (rule == CutRule::line) {
            EXPECT_EQ(bytes[part.begin - 1], '\n');
          }
          if (rule == CutRule::encoding) {
            EXPECT_EQ(first_encoding_cut(bytes, part.begin), part.begin);
          }
        }
      }
      EXPECT_EQ(file, files.size() - 1);
      EXPECT_EQ(at, std::filesystem::file_size(files.back()));
    }
  }
}

// mpirun -np N cllm prepare: the dataset of one rank, token for token, and
// the same sources and hashes, for 2 to 4 ranks of 1 or 2 threads, text cut
// between ranks inside files (BPE and bytes), whole .gz and empty files,
// JSON Lines with broken lines (the same first one named), both splits.
TEST(PrepareRanks, AnyRanksAndThreadsGiveTheOneRankDataset) {
  test::TempDir dir;
  const std::string text = file_bytes(kText).substr(0, 600000);
  write(dir / "t/a.txt", text.substr(0, 300000));
  write(dir / "t/b.txt", "");
  gzip(dir / "t/c.txt.gz", text.substr(300000, 100000));
  write(dir / "t/d.txt", text.substr(400000));
  write(dir / "k/1.bin", test::llmc_bytes(1, std::vector<std::uint64_t>(70000, 464)));
  write(dir / "k/2.txt", text.substr(0, 200000));
  write(dir / "k/3.npy", test::npy_of("<u2", std::vector<std::int64_t>(50000, 50256)));
  std::string lines;
  for (int i = 0; i < 4000; ++i)
    lines += i == 2500 ? "{\"text\": broken}\n" : "{\"text\": \"record " + std::to_string(i) + " of a few words\"}\n";
  write(dir / "j/e.jsonl", lines);
  struct Case {
    std::vector<std::string> options;
    std::vector<std::pair<int, int>> layouts;  // ranks, threads
  };
  const std::vector<Case> cases = {
      {{"t", "--tokenizer", "gpt2-bpe"}, {{2, 1}, {3, 2}}},
      {{"t", "--val-split", "documents", "--val-fraction", "0.4"}, {{2, 2}, {4, 1}}},
      {{"j", "--jsonl", "text", "--tokenizer", "gpt2-bpe", "--val-split", "documents"}, {{3, 1}}},
      {{"k", "--tokenizer", "gpt2-bpe"}, {{3, 1}}},
  };
  const auto attribute = [](const std::string& h5, const char* name) {
    const hid_t file = H5Fopen(h5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
    const hid_t type = H5Aget_type(attr);
    std::string value(H5Tget_size(type), '\0');
    H5Aread(attr, type, value.data());
    H5Tclose(type);
    H5Aclose(attr);
    H5Fclose(file);
    return value;
  };
  int n = 0;
  for (const Case& c : cases) {
    std::vector<std::string> args = {"prepare"};
    args.insert(args.end(), c.options.begin(), c.options.end());
    args.insert(args.end(), {"--vocab-dir", kVocab, "--out"});
    const auto run = [&](int ranks, int threads, const std::string& out) {
      setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
      std::vector<std::string> full = args;
      full.push_back(out);
      const auto r = test::run_cllm_mpi(ranks, full, dir.path());
      unsetenv("OMP_NUM_THREADS");
      return r;
    };
    const std::string one = "one" + std::to_string(n) + ".h5";
    const auto single = run(1, 1, one);
    ASSERT_EQ(single.exit_code, 0) << single.err;
    for (const auto& [ranks, threads] : c.layouts) {
      SCOPED_TRACE(test::join(args) + " on " + std::to_string(ranks) + " x " + std::to_string(threads));
      const std::string many = "many" + std::to_string(n++) + ".h5";
      const auto r = run(ranks, threads, many);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      for (const char* split : {"train/tokens", "val/tokens"})
        EXPECT_TRUE(hdf5_read((dir / one).string(), split) == hdf5_read((dir / many).string(), split)) << split;
      EXPECT_FALSE(hdf5_read((dir / many).string(), "val/tokens").empty());
      // Its checksum's blocks were hashed by all the ranks.
      EXPECT_EQ(verify_file_checksum(dir / many), FileChecksum::verified);
      // Chunks are written in order, whoever filtered them, and HDF5 keeps
      // no times: the very same file.
      EXPECT_TRUE(file_bytes((dir / one).string()) == file_bytes((dir / many).string())) << "the files differ";
      for (const char* name : {"sources", "sources_sha256"})
        EXPECT_EQ(attribute((dir / one).string(), name), attribute((dir / many).string(), name)) << name;
      // The summary and the skip warning, word for word (but the seconds).
      const auto without_time = [](std::string out) { return out.substr(0, out.rfind(" in ")); };
      EXPECT_EQ(without_time(r.out), without_time(single.out).replace(single.out.find(one), one.size(), many));
      const auto warning = [](const std::string& err) {
        return err.substr(std::min(err.size(), err.find("prepare: warning")));
      };
      EXPECT_EQ(warning(r.err), warning(single.err));
      for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
        EXPECT_NE(entry.path().filename().string()[0], '.') << entry.path() << " was left behind";
    }
  }
}

// --out in a folder the ranks do not share (a node's own /tmp): each rank
// mounts a folder of its own there, in a mount namespace of its own. Every
// rank exits 1, one line says why, and no folder keeps a dataset, a
// temporary or a spool.
TEST(PrepareRanks, AnOutFolderTheRanksDoNotShareIsOneErrorAndLeavesNothing) {
  if (geteuid() != 0 || std::system("unshare -m true 2>/dev/null") != 0)
    GTEST_SKIP() << "needs root, for a mount namespace a rank";
  test::TempDir dir;
  write(dir / "in/a.txt", file_bytes(kText).substr(0, 300000));
  for (const std::string tokenizer : {"byte", "gpt2-bpe"}) {  // the dataset's hash, the spools
    SCOPED_TRACE(tokenizer);
    for (const char* folder : {"out", "rank0", "rank1"}) std::filesystem::create_directories(dir / folder);
    const std::string rank = "mount --bind " + (dir / "rank").string() + "$OMPI_COMM_WORLD_RANK " +
                             (dir / "out").string() + " && exec " + test::cllm_binary() + " prepare " +
                             (dir / "in/a.txt").string() + " --out " + (dir / "out/d.h5").string() +
                             " --tokenizer " + tokenizer + " --vocab-dir " + kVocab;
    const auto r = test::run_program(CLLM_MPIEXEC,
                                     {"-n", "2", "--oversubscribe", "--bind-to", "none", "--mca",
                                      "odls_base_sigkill_timeout", "0", "-x", "ASAN_OPTIONS", "unshare", "-m",
                                      "--propagation", "private", "sh", "-c", rank},
                                     dir.path());
    EXPECT_EQ(r.exit_code, 1) << r.err;
    std::size_t errors = 0;
    for (std::size_t at = r.err.find("cllm: error:"); at != std::string::npos; at = r.err.find("cllm: error:", at + 1))
      ++errors;
    EXPECT_EQ(errors, 1u) << r.err;
    EXPECT_NE(r.err.find("--out must be in a folder every rank shares"), std::string::npos) << r.err;
    for (const char* folder : {"out", "rank0", "rank1"})
      EXPECT_TRUE(std::filesystem::is_empty(dir / folder)) << folder << " keeps a file";
  }
}

}  // namespace
}  // namespace cllm
