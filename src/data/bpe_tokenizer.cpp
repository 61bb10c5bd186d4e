#include "cllm/data/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "cllm/base/read_file.h"

namespace cllm {

namespace fs = std::filesystem;

namespace {

// GPT-2's pre-tokenisation (encoder.py): English contractions, then letters,
// digits and other symbols, each with at most one leading space, then
// whitespace. "\s+(?!\S)" leaves the last space of a run to the next word.
// GPT-2 wrote the pattern with \s and \S:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Python's regex module, which GPT-2 used, and tiktoken read \s as Unicode's
// White_Space, but PCRE2's \s also takes U+180E MONGOLIAN VOWEL SEPARATOR, so
// the same pattern is spelt here with \p{White_Space} to give GPT-2's pieces.
constexpr std::string_view kSplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+)"
    R"(|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+)";

// GPT-2's bytes_to_unicode spells every byte as a printable character, so that
// tokens in encoder.json and vocab.bpe hold no whitespace or control bytes:
// printable bytes stand for themselves, the other 68 become U+0100..U+0143 in
// byte order. This is the inverse: character -> byte, -1 for the rest.
using CharToByte = std::array<int, 0x144>;

CharToByte char_to_byte() {
  CharToByte table;
  table.fill(-1);
  int next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[static_cast<std::size_t>(printable ? b : next++)] = b;
  }
  return table;
}

// The bytes a token string of encoder.json or vocab.bpe stands for; nullopt
// when it is not spelt in GPT-2's alphabet. That alphabet lies below U+0800,
// so one- and two-byte UTF-8 sequences are all there is to decode.
std::optional<std::string> token_bytes(std::string_view chars, const CharToByte& to_byte) {
  std::string bytes;
  for (std::size_t i = 0; i < chars.size();) {
    const auto lead = static_cast<unsigned char>(chars[i]);
    std::size_t c = lead;
    if (lead >= 0x80) {
      const auto trail = i + 1 < chars.size() ? static_cast<unsigned char>(chars[i + 1]) : 0;
      if ((lead & 0xE0) != 0xC0 || (trail & 0xC0) != 0x80) return std::nullopt;
      c = (static_cast<std::size_t>(lead & 0x1F) << 6) | (trail & 0x3F);
      ++i;
    }
    ++i;
    if (c >= to_byte.size() || to_byte[c] < 0) return std::nullopt;
    bytes += static_cast<char>(to_byte[c]);
  }
  return bytes;
}


std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32 |
         static_cast<std::uint32_t>(right);
}

std::string pcre2_message(int code) {
  std::array<PCRE2_UCHAR, 256> text{};
  pcre2_get_error_message(code, text.data(), text.size());
  return reinterpret_cast<const char*>(text.data());
}

struct FreeMatchData {
  void operator()(pcre2_match_data* match) const { pcre2_match_data_free(match); }
};
using MatchData = std::unique_ptr<pcre2_match_data, FreeMatchData>;

// Length of the valid UTF-8 character at text[at]; 0 when the bytes there are
// not one: a stray continuation byte, an overlong form, a surrogate, a code
// point past U+10FFFF, or a character cut short (Unicode's table 3-7).
std::size_t utf8_length(std::string_view text, std::size_t at) {
  const auto byte = [&](std::size_t i) -> unsigned {
    return at + i < text.size() ? static_cast<unsigned char>(text[at + i]) : 0;
  };
  const auto follows = [&](std::size_t i, unsigned low = 0x80, unsigned high = 0xBF) {
    return byte(i) >= low && byte(i) <= high;
  };
  const unsigned lead = byte(0);
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return follows(1) ? 2 : 0;
  if (lead >= 0xE0 && lead <= 0xEF) {
    const bool ok = follows(1, lead == 0xE0 ? 0xA0 : 0x80, lead == 0xED ? 0x9F : 0xBF);
    return ok && follows(2) ? 3 : 0;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    const bool ok = follows(1, lead == 0xF0 ? 0x90 : 0x80, lead == 0xF4 ? 0x8F : 0xBF);
    return ok && follows(2) && follows(3) ? 4 : 0;
  }
  return 0;
}

// End of the run that starts at `at` of valid UTF-8 characters (valid) or of
// bytes that start none (!valid).
std::size_t utf8_run_end(std::string_view text, std::size_t at, bool valid) {
  while (at < text.size()) {
    const std::size_t length = utf8_length(text, at);
    if ((length > 0) != valid) break;
    at += valid ? length : 1;
  }
  return at;
}

// Calls f on each of GPT-2's pieces of `text`, which is valid UTF-8, in order.
// Every character is a letter, a digit, whitespace or something else, so the
// pattern matches at every piece's start and the pieces tile the text.
template <typename F>
void for_each_piece(const pcre2_code* pattern, pcre2_match_data* match, std::string_view text,
                    F&& f) {
  for (std::size_t at = 0; at < text.size();) {
    // Unless told not to, PCRE2 checks the UTF-8 from `at` to the end of the
    // text at each call, which is quadratic in all; encode checks it once.
    const int rc = pcre2_match(pattern, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), at,
                               PCRE2_NO_UTF_CHECK, match, nullptr);
    if (rc < 0)
      throw std::runtime_error("GPT-2 tokenizer: PCRE2 match failed: " + pcre2_message(rc));
    const std::size_t end = pcre2_get_ovector_pointer(match)[1];
    f(text.substr(at, end - at));
    at = end;
  }
}

}  // namespace

void Gpt2BpeTokenizer::FreeRegex::operator()(pcre2_real_code_8* code) const {
  pcre2_code_free(code);
}

auto Gpt2BpeTokenizer::read_files(const fs::path& folder) -> Files {
  Files f{(folder / "encoder.json").string(), (folder / "vocab.bpe").string(), {}, {}};
  f.encoder_json = read_file(f.encoder_name);  // first: a missing folder names encoder.json
  f.vocab_bpe = read_file(f.vocab_name);
  return f;
}

Gpt2BpeTokenizer::Gpt2BpeTokenizer(const fs::path& folder) : Gpt2BpeTokenizer(read_files(folder)) {}

Gpt2BpeTokenizer::Gpt2BpeTokenizer(const Files& f)
    : Gpt2BpeTokenizer(f.encoder_json, f.vocab_bpe, f.encoder_name, f.vocab_name) {}

Gpt2BpeTokenizer::Gpt2BpeTokenizer(std::string_view encoder_json, std::string_view vocab_bpe,
                                   const std::string& encoder_name,
                                   const std::string& vocab_name) {
  const TokenIds ids = read_encoder(encoder_json, encoder_name);
  read_merges(vocab_bpe, vocab_name, ids);

  int error = 0;
  PCRE2_SIZE error_offset = 0;
  split_pattern_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kSplitPattern.data()),
                                     kSplitPattern.size(), PCRE2_UTF | PCRE2_UCP, &error,
                                     &error_offset, nullptr));
  if (!split_pattern_)
    throw std::runtime_error("GPT-2 tokenizer: split pattern: " + pcre2_message(error));
  // JIT halves the time of encode. Where PCRE2 has no JIT this fails, and
  // pcre2_match interprets the pattern, with the same matches.
  pcre2_jit_compile(split_pattern_.get(), PCRE2_JIT_COMPLETE);
}

namespace {

// encoder.json's pairs, read as the parser meets them (SAX), without a JSON
// document: nlohmann frees a large document through a vector it allocates,
// so a document built when memory runs short ended the process
// (std::terminate from a destructor) instead of failing with a message.
struct EncoderPairs final : nlohmann::json_sax<nlohmann::json> {
  std::vector<std::pair<std::string, std::int64_t>> pairs;  // id -1: not an integer
  std::string problem;                                       // why reading stopped
  int depth = 0;
  std::string key_;

  bool start_object(std::size_t) override { return ++depth == 1 || not_flat(); }
  bool end_object() override { return --depth, true; }
  bool start_array(std::size_t) override { return depth == 1 ? value(-1) : not_flat(); }
  bool end_array() override { return true; }
  bool key(string_t& key) override { return key_ = std::move(key), true; }
  bool number_integer(number_integer_t id) override { return value(id); }
  bool number_unsigned(number_unsigned_t id) override {
    return value(id > static_cast<number_unsigned_t>(INT64_MAX) ? -1 : static_cast<std::int64_t>(id));
  }
  bool number_float(number_float_t, const string_t&) override { return value(-1); }
  bool string(string_t&) override { return value(-1); }
  bool binary(binary_t&) override { return value(-1); }
  bool boolean(bool) override { return value(-1); }
  bool null() override { return value(-1); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    problem = std::string("not valid JSON: ") + e.what();
    return false;
  }

 private:
  bool value(std::int64_t id) {
    if (depth != 1) return not_flat();
    pairs.emplace_back(std::move(key_), id);
    return true;
  }
  bool not_flat() {
    problem = "expected a JSON object of " + std::to_string(Gpt2BpeTokenizer::kVocabSize) + " tokens";
    return false;
  }
};

}  // namespace

auto Gpt2BpeTokenizer::read_encoder(std::string_view text, const std::string& name)
    -> TokenIds {
  const auto fail = [&](const std::string& why) { throw std::runtime_error(name + ": " + why); };
  EncoderPairs encoder;
  if (!nlohmann::json::sax_parse(text, &encoder)) fail(encoder.problem);
  if (encoder.pairs.size() != kVocabSize)
    fail("expected a JSON object of " + std::to_string(kVocabSize) + " tokens");

  const CharToByte to_byte = char_to_byte();
  TokenIds ids;
  token_bytes_.assign(kVocabSize, {});
  std::vector<bool> seen(kVocabSize);
  for (auto& [key, id] : encoder.pairs) {
    const std::string token = "token " + nlohmann::json(key).dump();
    if (id < 0 || id >= kVocabSize || seen[static_cast<std::size_t>(id)])
      fail(token + " has a bad or repeated id" + (id < 0 ? std::string() : " " + std::to_string(id)));
    std::optional<std::string> bytes = token_bytes(key, to_byte);
    if (!bytes) fail(token + " is not spelt in GPT-2's byte alphabet");
    seen[static_cast<std::size_t>(id)] = true;
    ids.emplace(*bytes, static_cast<std::int32_t>(id));
    token_bytes_[static_cast<std::size_t>(id)] = std::move(*bytes);
  }
  // Size and unique ids in range: every id in [0, kVocabSize) is now spelt.
  for (int b = 0; b < 256; ++b) {
    const auto it = ids.find(std::string(1, static_cast<char>(b)));
    if (it == ids.end()) fail("no token for the byte " + std::to_string(b));
    byte_ids_[static_cast<std::size_t>(b)] = it->second;
  }
  if (token_bytes_[kEndOfText] != "<|endoftext|>")
    fail("id " + std::to_string(kEndOfText) + " is not <|endoftext|>");
  return ids;
}

void Gpt2BpeTokenizer::read_merges(std::string_view text, const std::string& name,
                                   const TokenIds& ids) {
  const CharToByte to_byte = char_to_byte();
  std::size_t line_no = 0;
  const auto fail = [&](const std::string& why) {
    throw std::runtime_error(name + ": line " + std::to_string(line_no) + ": " + why);
  };
  const auto id_of = [&](const std::optional<std::string>& bytes) {
    const auto it = bytes ? ids.find(*bytes) : ids.end();
    return it == ids.end() ? -1 : it->second;
  };

  // A token is "made" once it is a byte or a merge has produced it. Merges
  // that only join made tokens and make new ones are what merge_pairs needs.
  std::vector<bool> made(kVocabSize);
  for (const std::int32_t id : byte_ids_) made[static_cast<std::size_t>(id)] = true;
  std::int32_t rank = 0;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t eol = std::min(text.find('\n', at), text.size());
    const std::string_view line = std::string_view(text).substr(at, eol - at);
    at = eol + 1;
    ++line_no;
    if (line_no == 1) {
      if (!line.starts_with("#version")) fail("expected the header line '#version: 0.2'");
      continue;
    }
    // "left right": two tokens whose concatenation is a token; the line's
    // place in the file is the merge's rank.
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos)
      fail("expected two tokens separated by one space");
    const auto left = token_bytes(line.substr(0, space), to_byte);
    const auto right = token_bytes(line.substr(space + 1), to_byte);
    const std::int32_t left_id = id_of(left), right_id = id_of(right);
    const std::int32_t merged_id = left && right ? id_of(*left + *right) : -1;
    const std::string merge = "merge \"" + std::string(line) + "\" ";
    if (left_id < 0 || right_id < 0 || merged_id < 0)
      fail(merge + "uses or makes a token not in encoder.json");
    if (!made[static_cast<std::size_t>(left_id)] || !made[static_cast<std::size_t>(right_id)])
      fail(merge + "uses a token that no earlier merge makes");
    if (made[static_cast<std::size_t>(merged_id)]) fail(merge + "makes a token made before");
    made[static_cast<std::size_t>(merged_id)] = true;
    merges_.emplace(pair_key(left_id, right_id), Merge{rank++, merged_id});
  }
  // 256 byte tokens, one per merge, and <|endoftext|>.
  if (rank != kVocabSize - 257)
    throw std::runtime_error(name + ": expected " + std::to_string(kVocabSize - 257) +
                             " merges, found " + std::to_string(rank));
}

std::vector<std::int32_t> Gpt2BpeTokenizer::encode(std::string_view text) const {
  WordIds words;  // per call, so that concurrent calls share nothing mutable
  return encode(text, words);
}

std::vector<std::int32_t> Gpt2BpeTokenizer::encode(std::string_view text, WordIds& words) const {
  // Forgotten all at once past 65,536 words, so that text that does not
  // repeat itself (numbers, hashes) holds a piece's words, not a batch's.
  if (words.size() > (1u << 16)) words = WordIds();
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 2);  // English is a token per 4 bytes or so; pages not met cost nothing
  const MatchData match(pcre2_match_data_create_from_pattern(split_pattern_.get(), nullptr));
  if (!match) throw std::bad_alloc();
  const auto add = [&](std::string_view piece) { encode_piece(piece, words, ids); };
  // The pattern is for UTF-8. Bytes that are not UTF-8 are kept rather than
  // refused or replaced: each run of them is a piece of its own, so decode
  // gives them back, and the valid text around them is split as usual.
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t valid_end = utf8_run_end(text, at, true);
    for_each_piece(split_pattern_.get(), match.get(), text.substr(at, valid_end - at), add);
    at = utf8_run_end(text, valid_end, false);
    if (at > valid_end) add(text.substr(valid_end, at - valid_end));
  }
  return ids;
}

void Gpt2BpeTokenizer::encode_piece(std::string_view piece, WordIds& words,
                                    std::vector<std::int32_t>& out) const {
  // Text repeats its words, and a word's tokens do not depend on where it is.
  auto [it, added] = words.try_emplace(piece);
  std::vector<std::int32_t>& word = it->second;
  if (added) {
    word.reserve(piece.size());
    for (const char c : piece) word.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    merge_pairs(word);
  }
  out.insert(out.end(), word.begin(), word.end());
}

// GPT-2's bpe() merges the adjacent pair of lowest rank, every occurrence of
// it from left to right, and repeats until no pair has a merge: quadratic in
// the piece's length, which is slow on long runs of letters or digits. Taking
// the pairs from a heap by (rank, position) makes the same merges in the same
// order: since a merge only joins tokens that merges of lower rank made
// (read_merges checks), no pair that a merge forms can come before the other
// occurrences of that merge's pair.
void Gpt2BpeTokenizer::merge_pairs(std::vector<std::int32_t>& word) const {
  const std::size_t n = word.size();
  if (n < 2) return;
  constexpr std::int32_t kGone = -1;  // a slot merged into the one on its left
  // The symbols as a list over the word's slots; n stands for none.
  std::vector<std::size_t> prev(n), next(n);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? n : i - 1;
    next[i] = i + 1;
  }
  struct Pair {
    std::int32_t rank;
    std::size_t left;  // slot of the left symbol
    std::int32_t left_id, right_id, merged_id;
  };
  const auto later = [](const Pair& a, const Pair& b) {
    return std::tie(a.rank, a.left) > std::tie(b.rank, b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(later)> heap(later);
  const auto push = [&](std::size_t left) {
    if (left >= n || next[left] >= n) return;
    const auto it = merges_.find(pair_key(word[left], word[next[left]]));
    if (it != merges_.end())
      heap.push({it->second.rank, left, word[left], word[next[left]], it->second.id});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i);

  while (!heap.empty()) {
    const Pair p = heap.top();
    heap.pop();
    // A slot's right neighbour only changes when the slot's own token does,
    // so a pair is still there exactly when both tokens are unchanged.
    const std::size_t right = next[p.left];
    if (right >= n || word[p.left] != p.left_id || word[right] != p.right_id) continue;
    word[p.left] = p.merged_id;
    word[right] = kGone;
    next[p.left] = next[right];
    if (next[right] < n) prev[next[right]] = p.left;
    push(prev[p.left]);
    push(p.left);
  }
  std::erase(word, kGone);
}

std::string Gpt2BpeTokenizer::decode(std::span<const std::int32_t> tokens) const {
  std::string text;
  for (const std::int32_t id : tokens) {
    if (id < 0 || id >= kVocabSize)
      throw std::out_of_range("GPT-2 token id " + std::to_string(id) + " is not in [0, " +
                              std::to_string(kVocabSize) + ")");
    text += token_bytes_[static_cast<std::size_t>(id)];
  }
  return text;
}

}  // namespace cllm
