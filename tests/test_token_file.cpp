// Token files from other tools (src/data/token_file.cpp): llm.c's .bin
// shards and NumPy .npy arrays, written here byte by byte as those tools lay
// them out, read back as exactly their ids; and every malformed file
// refused in one line that starts with its path.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cllm/data/sha256.h"
#include "cllm/data/token_file.h"
#include "support/process.h"
#include "support/token_files.h"

namespace cllm {
namespace {

using test::llmc_bytes;
using test::npy_bytes;
using test::npy_dict;
using test::npy_of;
using test::put_le;

std::string write_file(const test::TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

struct ReadBack {
  std::vector<std::int32_t> ids;
  std::uint64_t tokens = 0, bytes_read = 0;
  std::string format, sha256;
};

ReadBack read_all(const std::string& path, int vocab, std::size_t max_tokens = 4096) {
  TokenFileReader reader(path, vocab);
  ReadBack back;
  back.tokens = reader.tokens();
  back.format = reader.format();
  std::vector<std::int32_t> block;
  while (reader.next(block, max_tokens)) {
    EXPECT_LE(block.size(), max_tokens);
    EXPECT_FALSE(block.empty());
    back.ids.insert(back.ids.end(), block.begin(), block.end());
  }
  EXPECT_TRUE(block.empty());
  EXPECT_FALSE(reader.next(block, max_tokens));  // and stays at the end
  back.bytes_read = reader.bytes_read();
  back.sha256 = reader.sha256();
  return back;
}

std::vector<std::int32_t> as_int32(const std::vector<std::int64_t>& ids) { return {ids.begin(), ids.end()}; }

// The error's message: the path, ": ", then what names the problem.
void expect_refused(const std::string& path, int vocab, const std::string& what) {
  SCOPED_TRACE(path);
  try {
    read_all(path, vocab);
    ADD_FAILURE() << "read without an error";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(what), std::string::npos) << "'" << message << "' does not say '" << what << "'";
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(TokenFile, KnowsTokenFilesByTheirExtension) {
  for (const char* yes : {"a.bin", "dir/shard_000001.bin", "A.BIN", "x.Npy", "/t/tokens.npy"})
    EXPECT_TRUE(is_token_file(yes)) << yes;
  for (const char* no : {"a.txt", "a.bin.gz", "a.npz", "bin", "npy", "a.jsonl", "dir.bin/a.txt", ""})
    EXPECT_FALSE(is_token_file(no)) << no;
}

TEST(TokenFile, LlmcUint16ShardReadsBack) {
  test::TempDir dir;
  std::vector<std::uint64_t> ids;
  std::vector<std::int32_t> expected;
  for (std::uint64_t i = 0; i < 3000; ++i) {
    ids.push_back(i * 7919 % 50257);
    expected.push_back(static_cast<std::int32_t>(ids.back()));
  }
  ids.push_back(50256);  // GPT-2's <|endoftext|>, the last id
  expected.push_back(50256);
  const std::string bytes = llmc_bytes(1, ids);
  const std::string path = write_file(dir, "fineweb_train_000001.bin", bytes);
  const ReadBack back = read_all(path, 50257);
  EXPECT_EQ(back.tokens, 3001u);
  EXPECT_EQ(back.ids, expected);
  EXPECT_EQ(back.format, "llm.c tokens, uint16");
  EXPECT_EQ(back.bytes_read, 1024u + 2 * 3001);
  EXPECT_EQ(back.sha256, sha256_hex(bytes));
}

TEST(TokenFile, LlmcUint32ShardReadsBack) {
  test::TempDir dir;
  // llama-3's vocabulary of 128,256: ids past uint16.
  const std::vector<std::uint64_t> ids = {128000, 0, 65535, 65536, 100000, 128255, 1, 128001};
  const std::string bytes = llmc_bytes(2, ids);
  const std::string path = write_file(dir, "llama3.bin", bytes);
  const ReadBack back = read_all(path, 128256);
  EXPECT_EQ(back.tokens, ids.size());
  EXPECT_EQ(back.ids, (std::vector<std::int32_t>{128000, 0, 65535, 65536, 100000, 128255, 1, 128001}));
  EXPECT_EQ(back.format, "llm.c tokens, uint32");
  EXPECT_EQ(back.bytes_read, bytes.size());
  EXPECT_EQ(back.sha256, sha256_hex(bytes));
}

TEST(TokenFile, EmptyFilesHoldNoTokens) {
  test::TempDir dir;
  const std::string bin = llmc_bytes(1, {});
  ReadBack back = read_all(write_file(dir, "empty.bin", bin), 256);
  EXPECT_EQ(back.tokens, 0u);
  EXPECT_TRUE(back.ids.empty());
  EXPECT_EQ(back.sha256, sha256_hex(bin));
  const std::string npy = npy_bytes(npy_dict("<u2", "(0,)"), "");
  back = read_all(write_file(dir, "empty.npy", npy), 256);
  EXPECT_EQ(back.tokens, 0u);
  EXPECT_TRUE(back.ids.empty());
  EXPECT_EQ(back.sha256, sha256_hex(npy));
}

TEST(TokenFile, NpyOfEveryIntegerDtypeReadsBack) {
  test::TempDir dir;
  struct Case {
    std::string descr;
    std::vector<std::int64_t> ids;
    int vocab;
  };
  const std::vector<Case> cases = {
      {"|u1", {0, 1, 200, 255, 7}, 256},
      {"|i1", {0, 1, 100, 127, 7}, 128},
      {"<u1", {3, 255}, 256},  // '<' on one byte means the same
      {"<u2", {0, 50256, 65535, 256, 1}, 65536},
      {"<i2", {0, 32767, 256, 1}, 50257},
      {"<u4", {0, 65536, 128255, 1}, 128256},
      {"<i4", {0, 70000, 2147483646, 5}, INT_MAX},
      {"<u8", {0, 65536, 2147483646, 9}, INT_MAX},
      {"<i8", {0, 65536, 2147483646, 9}, INT_MAX},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.descr);
    const std::string bytes = npy_of(c.descr, c.ids);
    const std::string path = write_file(dir, c.descr.substr(1) + ".npy", bytes);
    const ReadBack back = read_all(path, c.vocab);
    EXPECT_EQ(back.tokens, c.ids.size());
    EXPECT_EQ(back.ids, as_int32(c.ids));
    EXPECT_EQ(back.format, "NumPy " + c.descr);
    EXPECT_EQ(back.bytes_read, bytes.size());
    EXPECT_EQ(back.sha256, sha256_hex(bytes));
  }
}

TEST(TokenFile, NpyHeadersOfVersions2And3AndOtherSpellingsRead) {
  test::TempDir dir;
  const std::vector<std::int64_t> ids = {5, 4, 3, 2, 1, 0};
  std::string data;
  for (const std::int64_t id : ids) put_le(data, static_cast<std::uint64_t>(id), 2);
  // 2.0 and 3.0 (a uint32 header length); numpy 1.0's old 16-byte
  // alignment; double quotes, no trailing comma, other key order, Python
  // 2's 6L, a 1-D array in Fortran order (the same bytes).
  const std::vector<std::string> files = {
      npy_of("<u2", ids, 2),
      npy_of("<u2", ids, 3),
      std::string("\x93NUMPY\x01\x00\x46\x00", 10) + "{'descr': '<u2', 'fortran_order': False, 'shape': (6,), }" +
          std::string(12, ' ') + "\n" + data,
      npy_bytes("{\"shape\": (6,), \"descr\": \"<u2\", \"fortran_order\": False}", data),
      npy_bytes("{'descr':'<u2','fortran_order':False,'shape':( 6L , )}", data),
      npy_bytes(npy_dict("<u2", "(6,)", true), data),
  };
  for (std::size_t i = 0; i < files.size(); ++i) {
    SCOPED_TRACE(i);
    const ReadBack back = read_all(write_file(dir, std::to_string(i) + ".npy", files[i]), 50257);
    EXPECT_EQ(back.ids, as_int32(ids));
    EXPECT_EQ(back.sha256, sha256_hex(files[i]));
  }
}

// Files written by numpy.save itself, when Debian's python3 has numpy (as
// the Python tests of tests/CMakeLists.txt use); skipped otherwise.
TEST(TokenFile, FilesWrittenByNumpyReadBack) {
  test::TempDir dir;
  const std::string script = R"(
import sys
try:
    import numpy as np
except ImportError:
    sys.exit(77)
ids = (np.arange(5000) * 7919) % 50257
for dtype in ['<u2', '<i4', '<u4', '<i8', '<u8']:
    np.save(dtype[1:] + '.npy', ids.astype(dtype))
np.save('u1.npy', (ids % 256).astype('u1'))
np.save('i1.npy', (ids % 128).astype('i1'))
np.save('i2.npy', (ids % 32768).astype('<i2'))
with open('v2.npy', 'wb') as f:
    np.lib.format.write_array(f, ids.astype('<u2'), version=(2, 0))
)";
  const test::ProcessResult python = test::run_program("/usr/bin/python3", {"-c", script}, dir.path());
  if (python.exit_code != 0) GTEST_SKIP() << "no /usr/bin/python3 with numpy: " << python.err;
  const std::vector<std::pair<std::string, std::int64_t>> files = {
      {"u2", 50257}, {"i4", 50257}, {"u4", 50257}, {"i8", 50257}, {"u8", 50257},
      {"u1", 256},   {"i1", 128},   {"i2", 32768}, {"v2", 50257}};
  for (const auto& [name, modulus] : files) {
    SCOPED_TRACE(name);
    std::vector<std::int32_t> expected;
    for (std::int64_t i = 0; i < 5000; ++i) expected.push_back(static_cast<std::int32_t>(i * 7919 % 50257 % modulus));
    const std::string path = (dir / (name + ".npy")).string();
    std::ifstream in(path, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const ReadBack back = read_all(path, 50257, 999);
    EXPECT_EQ(back.ids, expected);
    EXPECT_EQ(back.sha256, sha256_hex(bytes));
  }
}

// Past the 1 MiB read buffer, in blocks of 7 and at once: the same ids.
TEST(TokenFile, SmallBlocksGiveTheSameIds) {
  test::TempDir dir;
  std::vector<std::uint64_t> ids;
  std::vector<std::int64_t> signed_ids;
  std::uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 700001; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ids.push_back(x % 50257);
    signed_ids.push_back(static_cast<std::int64_t>(x % 50257));
  }
  const std::string bin = write_file(dir, "big.bin", llmc_bytes(1, ids));
  const std::string npy = write_file(dir, "big.npy", npy_of("<i4", signed_ids));
  for (const std::string& path : {bin, npy}) {
    SCOPED_TRACE(path);
    const ReadBack whole = read_all(path, 50257, std::size_t{1} << 30);
    const ReadBack small = read_all(path, 50257, 7);
    EXPECT_EQ(whole.ids, as_int32(signed_ids));
    EXPECT_EQ(small.ids, whole.ids);
    EXPECT_EQ(small.sha256, whole.sha256);
  }
}

TEST(TokenFile, CountsBytesAsItReadsAndHashesOnlyAtTheEnd) {
  test::TempDir dir;
  const std::string path = write_file(dir, "t.bin", llmc_bytes(1, std::vector<std::uint64_t>(1000, 3)));
  TokenFileReader reader(path, 256);
  EXPECT_EQ(reader.tokens(), 1000u);
  EXPECT_EQ(reader.bytes_read(), 1024u);  // the header
  std::vector<std::int32_t> ids;
  ASSERT_TRUE(reader.next(ids, 10));
  EXPECT_EQ(ids, std::vector<std::int32_t>(10, 3));
  EXPECT_THROW(reader.sha256(), std::logic_error);
  while (reader.next(ids, 100)) {
  }
  EXPECT_EQ(reader.bytes_read(), 1024u + 2000);
  EXPECT_EQ(reader.sha256(), reader.sha256());
  EXPECT_THROW(reader.next(ids, 0), std::invalid_argument);
}

TEST(TokenFile, IdsOutsideTheVocabularyAreRefusedWithTheirPosition) {
  test::TempDir dir;
  // The first bad id, counted from 0 across blocks.
  const std::string bin = write_file(dir, "v.bin", llmc_bytes(1, {1, 2, 99, 100, 5}));
  try {
    read_all(bin, 100, 2);
    ADD_FAILURE() << "read without an error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), (bin + ": token id 100 at position 3 is outside the vocabulary of 100 tokens").c_str());
  }
  expect_refused(write_file(dir, "v32.bin", llmc_bytes(2, {0, 4294967295u})), INT_MAX,
                 "token id 4294967295 at position 1 is outside the vocabulary of 2147483647 tokens");
  expect_refused(write_file(dir, "neg.npy", npy_of("<i4", {0, 1, -1, 2})), 50257,
                 "token id -1 at position 2 is outside the vocabulary of 50257 tokens");
  expect_refused(write_file(dir, "neg1.npy", npy_of("|i1", {-128})), 50257, "token id -128 at position 0");
  expect_refused(write_file(dir, "neg2.npy", npy_of("<i2", {3, -32768})), 50257, "token id -32768 at position 1");
  expect_refused(write_file(dir, "neg8.npy", npy_of("<i8", {3, 3, INT64_MIN})), 50257,
                 "token id -9223372036854775808 at position 2");
  expect_refused(write_file(dir, "big8.npy", npy_of("<i8", {std::int64_t{1} << 40})), INT_MAX,
                 "token id 1099511627776 at position 0");
  expect_refused(write_file(dir, "bigu8.npy", npy_of("<u8", {-1})), INT_MAX,
                 "token id 18446744073709551615 at position 0");
  expect_refused(write_file(dir, "u1.npy", npy_of("|u1", {255})), 255, "token id 255 at position 0");
}

TEST(TokenFile, MalformedLlmcFilesAreRefused) {
  test::TempDir dir;
  expect_refused(write_file(dir, "magic.bin", llmc_bytes(1, {1, 2}, std::nullopt, 20240326)), 256,
                 "not an llm.c token file (magic 20240326, expected 20240520)");
  expect_refused(write_file(dir, "version.bin", llmc_bytes(3, {1, 2})), 256, "llm.c token file version 3");
  expect_refused(write_file(dir, "short.bin", std::string(1000, '\0')), 256, "not an llm.c token file (1000 bytes");
  expect_refused(write_file(dir, "empty.bin", ""), 256, "not an llm.c token file (0 bytes");
  std::string cut = llmc_bytes(1, {1, 2, 3, 4});
  cut.pop_back();
  expect_refused(write_file(dir, "cut.bin", cut), 256,
                 "llm.c token file is truncated: its header says 4 tokens of 2 bytes, the file holds 7 bytes");
  expect_refused(write_file(dir, "count.bin", llmc_bytes(2, {1, 2}, 3)), 256,
                 "truncated: its header says 3 tokens of 4 bytes, the file holds 8 bytes");
  expect_refused(write_file(dir, "extra.bin", llmc_bytes(1, {1, 2, 3}) + "xy"), 256,
                 "llm.c token file has 2 extra bytes after the 3 tokens of 2 bytes its header says");
  expect_refused(write_file(dir, "negative.bin", llmc_bytes(1, {}, -5)), 256, "header says -5 tokens");
  // A NumPy file named .bin is read as llm.c's.
  expect_refused(write_file(dir, "numpy.bin", npy_of("<u2", std::vector<std::int64_t>(600, 1))), 256,
                 "not an llm.c token file (magic");
}

TEST(TokenFile, MalformedNpyFilesAreRefused) {
  test::TempDir dir;
  const std::string two(4, '\0');  // two uint16 zeros
  const auto npy = [&](const std::string& name, const std::string& bytes, const std::string& what) {
    expect_refused(write_file(dir, name + ".npy", bytes), 50257, what);
  };
  npy("big_endian", npy_bytes(npy_dict(">u2", "(2,)"), two), "NumPy dtype '>u2' is big-endian");
  npy("big_endian4", npy_bytes(npy_dict(">i4", "(1,)"), two), "NumPy dtype '>i4' is big-endian");
  npy("no_order", npy_bytes(npy_dict("|u2", "(2,)"), two), "'|u2' does not say it is little-endian");
  npy("float", npy_bytes(npy_dict("<f4", "(1,)"), two), "NumPy dtype '<f4' is not an integer type");
  npy("half", npy_bytes(npy_dict("<f2", "(2,)"), two), "NumPy dtype '<f2' is not an integer type");
  npy("object", npy_bytes(npy_dict("|O", "(1,)"), std::string(8, '\0')), "NumPy dtype '|O' is not an integer type");
  npy("bool", npy_bytes(npy_dict("|b1", "(4,)"), two), "NumPy dtype '|b1' is not an integer type");
  npy("u16", npy_bytes(npy_dict("<u16", "(1,)"), two), "NumPy dtype '<u16' is not an integer type");
  npy("structured", npy_bytes("{'descr': [('a', '<u2')], 'fortran_order': False, 'shape': (2,), }", two),
      "'descr' is not a string");
  npy("2d", npy_bytes(npy_dict("<u2", "(1, 2)"), two), "NumPy array of shape (1, 2) is 2-dimensional");
  npy("2d_fortran", npy_bytes(npy_dict("<u2", "(2, 1)", true), two), "is 2-dimensional (Fortran order)");
  npy("3d", npy_bytes(npy_dict("|u1", "(1, 2, 2,)"), two), "is 3-dimensional");
  npy("0d", npy_bytes(npy_dict("<u2", "()"), two), "NumPy array of shape () is 0-dimensional");
  npy("truncated", npy_bytes(npy_dict("<u2", "(3,)"), two),
      "NumPy file is truncated: its shape says 3 tokens of 2 bytes, the file holds 4 bytes");
  npy("huge", npy_bytes(npy_dict("<u8", "(18446744073709551615,)"), two), "NumPy file is truncated");
  npy("extra", npy_bytes(npy_dict("<u2", "(1,)"), two), "NumPy file has 2 extra bytes after the 1 tokens");
  // Headers that do not parse, or parse to something else.
  npy("not_numpy", "PK\x03\x04 a zip file, as .npz is", "not a NumPy file (it does not start with \\x93NUMPY)");
  npy("tiny", "\x93NUMPY", "not a NumPy file (6 bytes");
  npy("version4", "\x93NUMPY\x04" + std::string(20, '\0'), "NumPy format version 4.0 is not supported");
  npy("version0", "\x93NUMPY" + std::string(20, '\0'), "NumPy format version 0.0 is not supported");
  npy("header_past_end", std::string("\x93NUMPY\x01\x00\xff\x00{}", 12), "NumPy file is truncated inside its header");
  npy("header_len_cut", std::string("\x93NUMPY\x02\x00\x01\x00", 10), "NumPy file is truncated inside its header");
  npy("header_too_long", std::string("\x93NUMPY\x02\x00\x00\x00\x00\x01", 12), "NumPy header of 16777216 bytes");
  npy("no_brace", npy_bytes("'descr': '<u2'", two), "NumPy header does not parse: expected '{' at byte 0");
  npy("no_close", npy_bytes("{'descr': '<u2', 'fortran_order': False, 'shape': (2,)", two),
      "NumPy header does not parse");
  npy("one_paren", npy_bytes(npy_dict("<u2", "(2)"), two), "NumPy header does not parse: expected ','");
  npy("open_tuple", npy_bytes(npy_dict("<u2", "(2,"), two), "NumPy header does not parse");
  npy("negative_dim", npy_bytes(npy_dict("<u2", "(-2,)"), two), "expected a whole number");
  npy("dim_overflow", npy_bytes(npy_dict("<u2", "(99999999999999999999,)"), two), "a dimension too large");
  npy("bad_bool", npy_bytes("{'descr': '<u2', 'fortran_order': false, 'shape': (2,), }", two),
      "expected True or False");
  npy("open_string", npy_bytes("{'descr: '<u2'}", two), "NumPy header does not parse");
  npy("escape", npy_bytes("{'descr': '<u\\2', 'fortran_order': False, 'shape': (2,), }", two),
      "a string with an escape");
  npy("after", npy_bytes("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), } x", two),
      "text after the closing '}'");
  npy("unknown_key", npy_bytes("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), 'x': 1}", two),
      "a key 'x' besides");
  npy("twice", npy_bytes("{'descr': '<u2', 'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", two),
      "its header has 'descr' twice");
  npy("no_shape", npy_bytes("{'descr': '<u2', 'fortran_order': False}", two), "its header has no 'shape'");
  npy("no_descr", npy_bytes("{'fortran_order': False, 'shape': (2,)}", two), "its header has no 'descr'");
  npy("empty_dict", npy_bytes("{}", two), "its header has no 'descr'");
  npy("empty_header", std::string("\x93NUMPY\x01\x00\x00\x00", 10) + two, "NumPy header does not parse");
}

TEST(TokenFile, WhatIsNotAFileIsRefused) {
  test::TempDir dir;
  const std::string missing = (dir / "missing.bin").string();
  try {
    TokenFileReader reader(missing, 256);
    ADD_FAILURE() << "opened a missing file";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), (missing + ": no such input file").c_str());
  }
  const std::string folder = (dir / "folder.npy").string();
  std::filesystem::create_directory(folder);
  try {
    TokenFileReader reader(folder, 256);
    ADD_FAILURE() << "opened a folder";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), (folder + ": not a regular file").c_str());
  }
}

}  // namespace
}  // namespace cllm
