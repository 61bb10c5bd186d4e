#include "cllm/data/parallel_encode.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <memory>

namespace cllm {

namespace {

// Pieces of a megabyte: a large corpus makes many of them to keep every
// thread busy, and each is long enough that the cuts cost nothing.
constexpr std::size_t kPieceBytes = std::size_t{1} << 20;

bool letter(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

// Between a letter and " letter": GPT-2's pre-tokenizer ends a piece there.
bool is_cut(std::string_view text, std::size_t at) {
  return at > 0 && at + 1 < text.size() && letter(text[at - 1]) && text[at] == ' ' && letter(text[at + 1]);
}

}  // namespace

std::vector<std::string_view> split_for_encoding(std::string_view text, std::size_t piece_bytes) {
  std::vector<std::string_view> pieces;
  std::size_t begin = 0;
  while (begin < text.size()) {
    const std::size_t cut = std::min(first_encoding_cut(text, begin + piece_bytes), text.size());
    pieces.push_back(text.substr(begin, cut - begin));
    begin = cut;
  }
  return pieces;
}

std::size_t first_encoding_cut(std::string_view text, std::size_t from) {
  for (std::size_t at = from; at < text.size(); ++at)
    if (is_cut(text, at)) return at;
  return std::string_view::npos;
}

std::size_t last_encoding_cut(std::string_view text) {
  for (std::size_t at = text.size(); at-- > 1;)
    if (is_cut(text, at)) return at;
  return 0;
}

std::vector<PieceIds> encode_each(const Tokenizer& tok, const std::vector<std::string_view>& texts,
                                  const std::function<void()>& beside) {
  struct Piece {
    std::size_t text;
    std::string_view bytes;
  };
  std::vector<Piece> pieces;
  for (std::size_t t = 0; t < texts.size(); ++t)
    for (const std::string_view piece : split_for_encoding(texts[t], kPieceBytes)) pieces.push_back({t, piece});
  std::vector<std::vector<std::int32_t>> ids(pieces.size());
  const auto n = static_cast<std::int64_t>(pieces.size());
  // Each thread's memory of the words it has met, over the pieces it takes.
  std::vector<std::unique_ptr<Tokenizer::Memory>> memories(static_cast<std::size_t>(omp_get_max_threads()));
  // An exception may not leave an OpenMP region (it would terminate): the
  // first one (out of memory, say) is kept and thrown after it.
  std::exception_ptr failure;
  const auto keep = [&] {
#pragma omp critical(cllm_encode_each)
    if (!failure) failure = std::current_exception();
  };
#pragma omp parallel
  {
#pragma omp master  // no barrier: the others start encoding at once
    try {
      if (beside) beside();
    } catch (...) {
      keep();
    }
#pragma omp for schedule(dynamic, 1) nowait
    for (std::int64_t i = 0; i < n; ++i) {
      try {
        auto& memory = memories.at(static_cast<std::size_t>(omp_get_thread_num()));
        if (!memory) memory = tok.new_memory();
        ids[i] = tok.encode(pieces[i].bytes, memory.get());
      } catch (...) {
        keep();
      }
    }
    // Forgotten here, each on its own thread: a thread's words are many
    // small blocks, slow to free on one thread while the others wait.
    memories.at(static_cast<std::size_t>(omp_get_thread_num())).reset();
  }
  if (failure) std::rethrow_exception(failure);
  std::vector<PieceIds> each(texts.size());
  for (std::size_t i = 0; i < pieces.size(); ++i) each[pieces[i].text].push_back(std::move(ids[i]));
  return each;
}

std::vector<std::int32_t> encode_in_parallel(const Tokenizer& tok, std::string_view text) {
  PieceIds pieces = std::move(encode_each(tok, {text}).front());
  std::size_t count = 0;
  for (const auto& piece : pieces) count += piece.size();
  std::vector<std::int32_t> ids;
  ids.reserve(count);
  for (const auto& piece : pieces) ids.insert(ids.end(), piece.begin(), piece.end());
  return ids;
}

}  // namespace cllm
