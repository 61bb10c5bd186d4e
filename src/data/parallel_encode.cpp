#include "cllm/data/parallel_encode.h"

#include <omp.h>

#include <algorithm>

namespace cllm {

namespace {

// Pieces of a megabyte: a large corpus makes many of them to keep every
// thread busy, and each is long enough that the cuts cost nothing.
constexpr std::size_t kPieceBytes = std::size_t{1} << 20;
// Seconds between progress reports.
constexpr double kProgressInterval = 5.0;

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
    std::size_t cut = std::min(begin + piece_bytes, text.size());
    while (cut < text.size() && !is_cut(text, cut)) ++cut;
    pieces.push_back(text.substr(begin, cut - begin));
    begin = cut;
  }
  return pieces;
}

std::size_t last_encoding_cut(std::string_view text) {
  for (std::size_t at = text.size(); at-- > 1;)
    if (is_cut(text, at)) return at;
  return 0;
}

std::vector<std::int32_t> encode_in_parallel(const Tokenizer& tok, std::string_view text,
                                             const EncodeProgress& progress) {
  const auto pieces = split_for_encoding(text, kPieceBytes);
  const auto n = static_cast<std::int64_t>(pieces.size());
  std::vector<std::vector<std::int32_t>> ids(pieces.size());
  const double t0 = omp_get_wtime();
  double reported = t0;
  std::size_t bytes_done = 0;
  // Rounds of a few pieces per thread, so that the calling thread reports
  // progress between them (the callback need not be thread-safe).
  const std::int64_t round = 4 * omp_get_max_threads();
  for (std::int64_t r0 = 0; r0 < n; r0 += round) {
    const std::int64_t r1 = std::min(n, r0 + round);
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t i = r0; i < r1; ++i) ids[i] = tok.encode(pieces[i]);
    for (std::int64_t i = r0; i < r1; ++i) bytes_done += pieces[i].size();
    if (omp_get_wtime() - reported > kProgressInterval && r1 < n) {
      reported = omp_get_wtime();
      if (progress) progress(bytes_done, reported - t0);
    }
  }
  std::vector<std::int32_t> all;
  for (const auto& piece : ids) all.insert(all.end(), piece.begin(), piece.end());
  return all;
}

}  // namespace cllm
