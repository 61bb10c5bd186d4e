// GPT-2's BPE tokenizer: the reference token ids of tests/data/gpt2_test_vectors.json,
// round trips, <|endoftext|>, invalid UTF-8, thread safety and file errors; and
// prepare's parallel encoding, with it and with the byte-level tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cllm/data/bpe_tokenizer.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/tokenizer.h"
#include "support/process.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<std::int32_t>;

const fs::path kSource = CLLM_SOURCE_DIR;
const fs::path kBpeFolder = kSource / "data" / "gpt2-bpe";

struct Case {
  std::string text;
  Ids ids;
};

std::vector<Case> test_vectors() {
  const auto json =
      nlohmann::json::parse(test::read_file(kSource / "tests/data/gpt2_test_vectors.json"));
  std::vector<Case> cases;
  for (const auto& c : json.at("cases"))
    cases.push_back({c.at("text").get<std::string>(), c.at("ids").get<Ids>()});
  return cases;
}

std::string austen_prefix(std::size_t bytes) {
  std::string text = test::read_file(kSource / "data/austen.txt");
  text.resize(std::min(text.size(), bytes));
  return text;
}

Ids concat(const std::vector<Ids>& parts) {
  Ids all;
  for (const Ids& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

// The message of the std::runtime_error that f throws; "" when it throws none.
template <typename F>
std::string runtime_error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

class Bpe : public ::testing::Test {
 protected:
  // Reading the 50,257 tokens and 50,000 merges once serves every test.
  static void SetUpTestSuite() { tok_ = std::make_unique<Gpt2BpeTokenizer>(kBpeFolder); }
  static void TearDownTestSuite() { tok_.reset(); }
  void SetUp() override { ASSERT_TRUE(tok_) << "could not read " << kBpeFolder; }
  static const Gpt2BpeTokenizer& tok() { return *tok_; }

 private:
  static inline std::unique_ptr<Gpt2BpeTokenizer> tok_;
};

TEST_F(Bpe, EveryTestVectorGivesTheReferenceIds) {
  const std::vector<Case> cases = test_vectors();
  ASSERT_EQ(cases.size(), 28u);
  for (const Case& c : cases) EXPECT_EQ(tok().encode(c.text), c.ids) << "text: " << c.text;
}

TEST_F(Bpe, DecodeInvertsEncodeOnEveryTestVector) {
  for (const Case& c : test_vectors()) {
    EXPECT_EQ(tok().decode(c.ids), c.text);
    EXPECT_EQ(tok().decode(tok().encode(c.text)), c.text);
  }
}

// Runs of one pair overlap: GPT-2 merges them from the left. Ids from OpenAI's
// encoder.py.
TEST_F(Bpe, RepeatedPairsMergeFromTheLeft) {
  EXPECT_EQ(tok().encode("aaaaaaaaa"), (Ids{24794, 24794, 64}));
  EXPECT_EQ(tok().encode("1111111"), (Ids{26259, 16243}));
  EXPECT_EQ(tok().encode("!!!!!!!!!!!"), (Ids{34635, 10185}));
  EXPECT_EQ(tok().encode("abababababa"), (Ids{397, 397, 397, 397, 15498}));
  EXPECT_EQ(tok().encode("x=====y"), (Ids{87, 1421, 28, 88}));
  EXPECT_EQ(tok().encode("\n\n\n\n\n"), (Ids{628, 628, 198}));
}

// U+180E MONGOLIAN VOWEL SEPARATOR has not been White_Space since Unicode 6.3:
// for GPT-2 " \u180E" is a symbol with its leading space, not a whitespace
// run (PCRE2's \s would say so). Ids from OpenAI's encoder.py run with
// Python's regex module 2022.10.31.
TEST_F(Bpe, MongolianVowelSeparatorIsNotWhitespace) {
  EXPECT_EQ(tok().encode("b \u180E1"), (Ids{65, 28053, 254, 236, 16}));
}

TEST_F(Bpe, AustenRoundTrips) {
  const std::string text = austen_prefix(200 * 1024);
  const Ids ids = tok().encode(text);
  EXPECT_EQ(tok().decode(ids), text);
  // English prose is about four bytes a token in GPT-2's vocabulary.
  EXPECT_GT(ids.size(), text.size() / 6);
  EXPECT_LT(ids.size(), text.size() / 3);
}

TEST_F(Bpe, EndOfTextInTextIsOrdinaryText) {
  const Ids ids = tok().encode("<|endoftext|>");
  EXPECT_EQ(ids, (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  for (const std::int32_t id : tok().encode("a<|endoftext|>b <|endoftext|>"))
    EXPECT_NE(id, Gpt2BpeTokenizer::kEndOfText);
}

TEST_F(Bpe, EndOfTextIdDecodesToItsString) {
  EXPECT_EQ(Gpt2BpeTokenizer::kEndOfText, 50256);
  EXPECT_EQ(tok().decode(Ids{Gpt2BpeTokenizer::kEndOfText}), "<|endoftext|>");
  EXPECT_EQ(tok().decode(Ids{15496, Gpt2BpeTokenizer::kEndOfText, 995}),
            "Hello<|endoftext|> world");
}

TEST_F(Bpe, DecodeRejectsIdsOutOfRange) {
  for (const std::int32_t bad : {-1, Gpt2BpeTokenizer::kVocabSize, 1 << 30}) {
    try {
      tok().decode(Ids{15496, bad});
      ADD_FAILURE() << "no exception for id " << bad;
    } catch (const std::out_of_range& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(tok().decode(Ids{Gpt2BpeTokenizer::kVocabSize - 1, 0}), "<|endoftext|>!");
}

// Bytes that are not UTF-8 form pieces of their own, one per run; the valid
// text around them is split and merged as if each run were the end or the
// start of the text.
TEST_F(Bpe, InvalidUtf8IsKeptAsBytes) {
  EXPECT_EQ(tok().encode("\xff"), (Ids{187}));  // the one-byte token of 0xFF
  EXPECT_EQ(tok().encode("Hello\xff world"),
            concat({tok().encode("Hello"), tok().encode("\xff"), tok().encode(" world")}));
  EXPECT_EQ(tok().encode("a  \x80\x80z"),
            concat({tok().encode("a  "), tok().encode("\x80\x80"), tok().encode("z")}));
  const std::vector<std::string> texts = {
      "\xff\xfe",
      "caf\xc3",                          // cut inside a two-byte character
      "\xe6\x97\xa5\xe6\x9c",             // cut inside a three-byte character
      "x \xed\xa0\x80 y",                 // an encoded UTF-16 surrogate
      "\xc0\xaf/",                        // an overlong encoding of '/'
      "tab\t\x80\x80  \xf5\x80\x80\x80",  // stray continuation bytes, lead byte > U+10FFFF
      std::string("nul\0byte\xff", 9),    // NUL is UTF-8, but C strings would end there
  };
  for (const std::string& text : texts) {
    Ids ids;
    ASSERT_NO_THROW(ids = tok().encode(text));
    EXPECT_EQ(tok().decode(ids), text);
  }
}

TEST_F(Bpe, ConcurrentEncodesAgree) {
  const std::string text = austen_prefix(64 * 1024);
  const Ids expected = tok().encode(text);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (Ids& ids : got) threads.emplace_back([&] { ids = tok().encode(text); });
  for (std::thread& t : threads) t.join();
  for (const Ids& ids : got) EXPECT_EQ(ids, expected);
}

// ---------------------------------------------------------------- file errors

TEST(BpeFiles, MissingFolderNamesTheFile) {
  test::TempDir tmp;
  const fs::path folder = tmp / "no-such-folder";
  const std::string message = runtime_error_of([&] { Gpt2BpeTokenizer tok(folder); });
  EXPECT_EQ(message.rfind((folder / "encoder.json").string() + ": ", 0), 0u) << message;
}

// A copy of the vocabulary with one of its files replaced by `contents`.
fs::path broken_copy(const test::TempDir& tmp, const std::string& file,
                     const std::string& contents) {
  for (const char* name : {"encoder.json", "vocab.bpe"})
    fs::copy_file(kBpeFolder / name, tmp / name);
  std::ofstream(tmp / file, std::ios::binary | std::ios::trunc) << contents;
  return tmp.path();
}

TEST(BpeFiles, CorruptEncoderJsonNamesTheFile) {
  const std::vector<std::string> corrupt = {
      "",                      // empty
      R"({"!": 0, "\"": 1)",   // truncated
      R"({"!": 0, "\"": 1})",  // too few tokens
      R"(["!", "\""])",        // not an object
  };
  for (const std::string& contents : corrupt) {
    test::TempDir tmp;
    const fs::path folder = broken_copy(tmp, "encoder.json", contents);
    const std::string message = runtime_error_of([&] { Gpt2BpeTokenizer tok(folder); });
    EXPECT_EQ(message.rfind((folder / "encoder.json").string() + ": ", 0), 0u)
        << "contents " << contents << ": " << message;
  }
}

TEST(BpeFiles, CorruptVocabBpeNamesTheFile) {
  const std::string vocab = test::read_file(kBpeFolder / "vocab.bpe");
  const std::vector<std::string> corrupt = {
      vocab.substr(0, vocab.size() / 2),      // truncated: too few merges
      "#version: 0.2\nĠ t\nnot-a-token x\n",  // a token not in encoder.json
      "#version: 0.2\nĠ t h\n",               // three tokens
      "Ġ t\n",                                // no header
  };
  for (const std::string& contents : corrupt) {
    test::TempDir tmp;
    const fs::path folder = broken_copy(tmp, "vocab.bpe", contents);
    const std::string message = runtime_error_of([&] { Gpt2BpeTokenizer tok(folder); });
    EXPECT_EQ(message.rfind((folder / "vocab.bpe").string() + ": ", 0), 0u) << message;
  }
}

// ---------------------------------------------------------------- parallel encoding

bool is_letter(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

std::string joined(const std::vector<std::string_view>& pieces) {
  std::string text;
  for (const std::string_view piece : pieces) text += piece;
  return text;
}

TEST(SplitForEncoding, PiecesMakeTheTextAndEachCutFallsBeforeASpacedWord) {
  const std::string text = austen_prefix(256 * 1024);
  for (const std::size_t piece_bytes : {std::size_t{1}, std::size_t{100}, std::size_t{4096},
                                        std::size_t{1} << 20}) {
    const auto pieces = split_for_encoding(text, piece_bytes);
    ASSERT_FALSE(pieces.empty());
    EXPECT_EQ(joined(pieces), text) << "piece_bytes " << piece_bytes;
    for (std::size_t i = 0; i + 1 < pieces.size(); ++i) {
      const std::string_view piece = pieces[i], next = pieces[i + 1];
      EXPECT_GE(piece.size(), piece_bytes);
      ASSERT_GE(next.size(), 2u);
      EXPECT_TRUE(is_letter(piece.back()) && next[0] == ' ' && is_letter(next[1]))
          << "piece_bytes " << piece_bytes << ", cut " << i << ": ..." << piece.back() << "|"
          << next.substr(0, 2) << "...";
    }
    if (piece_bytes > text.size()) {
      EXPECT_EQ(pieces.size(), 1u);
    }
  }
  EXPECT_TRUE(split_for_encoding("", 16).empty());
  // No letter, space, letter anywhere: no cut.
  EXPECT_EQ(split_for_encoding("1 2 3 4 5 6 7 8 9 a  b", 2).size(), 1u);
  EXPECT_EQ(split_for_encoding("ab cd ef", 1),
            (std::vector<std::string_view>{"ab", " cd", " ef"}));
}

// Encoding the pieces gives the ids of encoding the whole, with either
// tokenizer; so does encode_in_parallel on a text of several of its pieces.
class ParallelEncode : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Tokenizer> tok() const {
    return make_tokenizer(tokenizer_spec(GetParam(), kBpeFolder));
  }
};

TEST_P(ParallelEncode, PiecesEncodeAsTheWhole) {
  const auto tok = this->tok();
  // Contractions, digits, punctuation and runs of spaces around the cuts.
  const std::string text = austen_prefix(64 * 1024) +
                           "It's 12 o'clock;  they'll say   I'd   go.\n\nA b\tc d  e";
  const Ids whole = tok->encode(text);
  for (const std::size_t piece_bytes : {std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
    std::vector<Ids> parts;
    for (const std::string_view piece : split_for_encoding(text, piece_bytes))
      parts.push_back(tok->encode(piece));
    EXPECT_EQ(concat(parts), whole) << GetParam() << ", piece_bytes " << piece_bytes;
  }
}

// One thread's memory of the words it met, kept from piece to piece (as
// encode_each keeps it), changes no id; nor does forgetting them when there
// are too many (80,000 numbers, none repeated).
TEST_P(ParallelEncode, AMemoryKeptFromPieceToPieceGivesTheSameIds) {
  const auto tok = this->tok();
  std::string numbers;
  for (int i = 0; i < 80000; ++i) numbers += " a" + std::to_string(i * 7919);
  for (const std::string& text : {austen_prefix(256 * 1024), numbers}) {
    const Ids whole = tok->encode(text);
    const auto memory = tok->new_memory();
    EXPECT_EQ(memory == nullptr, GetParam() == "byte");
    std::vector<Ids> parts;
    for (const std::string_view piece : split_for_encoding(text, 4096)) parts.push_back(tok->encode(piece, memory.get()));
    EXPECT_EQ(concat(parts), whole) << GetParam();
  }
}

TEST_P(ParallelEncode, EncodeInParallelGivesTheWholeTextsIds) {
  const auto tok = this->tok();
  const std::string text = test::read_file(kSource / "data/austen.txt");  // 4 pieces
  EXPECT_EQ(encode_in_parallel(*tok, text), tok->encode(text)) << GetParam();
  EXPECT_TRUE(encode_in_parallel(*tok, "").empty());
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ParallelEncode, ::testing::Values("byte", "gpt2-bpe"),
                         [](const auto& info) {
                           return std::string(info.param == "byte" ? "Byte" : "Gpt2Bpe");
                         });

}  // namespace
}  // namespace cllm
