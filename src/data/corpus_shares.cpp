#include "cllm/data/corpus_shares.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string_view>

#include "cllm/base/read_file.h"
#include "cllm/data/corpus_reader.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/token_file.h"

namespace cllm {

namespace {

// The first place at or after `at` (0 < at < size) where rule lets the file
// be cut, or its size if none.
std::uint64_t next_cut(const std::string& path, std::uint64_t at, std::uint64_t size, CutRule rule) {
  if (rule == CutRule::anywhere) return at;
  std::ifstream in(path, std::ios::binary);
  // text holds the file's bytes from base on; a cut at p needs p - 1 and p + 1.
  std::uint64_t base = at - 1;
  in.seekg(static_cast<std::streamoff>(base));
  std::string text;
  std::vector<char> block(1u << 20);
  for (;;) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    if (in.bad()) throw std::runtime_error(path + ": read error");
    const auto got = static_cast<std::size_t>(in.gcount());
    text.append(block.data(), got);
    const std::size_t found = rule == CutRule::line ? text.find('\n') : first_encoding_cut(text, 1);
    if (found != std::string::npos) return base + found + (rule == CutRule::line ? 1 : 0);
    if (got == 0) return size;
    // Keep what a cut at the next block's start needs.
    const std::size_t keep = std::min<std::size_t>(text.size(), 2);
    base += text.size() - keep;
    text.erase(0, text.size() - keep);
  }
}

}  // namespace

namespace {

// The files cut into shares whose nominal bytes of the joined files are
// [borders[i], borders[i + 1]) (borders from 0 to the total), each border
// moved on to the next place rule allows.
std::vector<std::vector<CorpusPart>> cut_corpus(
    const std::vector<std::string>& files, CutRule rule,
    const std::function<std::vector<std::uint64_t>(std::uint64_t total)>& borders_of) {
  std::vector<std::uint64_t> sizes;
  std::uint64_t total = 0;
  for (const std::string& file : files) {
    require_regular_file(file, "input file");
    std::error_code ec;
    const std::uint64_t size = std::filesystem::file_size(file, ec);
    if (ec) throw std::runtime_error(file + ": cannot read its size: " + ec.message());
    sizes.push_back(size);
    total += size;
  }
  const std::vector<std::uint64_t> border = borders_of(total);
  const std::uint64_t n = border.size() - 1;
  // The share a byte of the joined files falls in (the last for the end).
  const auto share_of = [&](std::uint64_t byte) {
    return static_cast<std::uint64_t>(std::upper_bound(border.begin() + 1, border.end() - 1, byte) - border.begin() - 1);
  };
  std::vector<std::vector<CorpusPart>> shares(n);
  std::uint64_t offset = 0;  // of the file in the joined files
  for (std::uint32_t f = 0; f < files.size(); offset += sizes[f], ++f) {
    const std::uint64_t size = sizes[f];
    std::uint64_t r = share_of(offset), begin = 0;
    if (size == 0 || is_gzip(files[f]) || is_token_file(files[f])) {
      shares[r].push_back({f, 0, size});
      continue;
    }
    // The shares whose nominal start falls inside the file each begin at a cut.
    for (; r + 1 < n && border[r + 1] < offset + size; ++r) {
      const std::uint64_t at = border[r + 1] - offset;
      if (at <= begin) continue;  // an earlier cut went past this border
      const std::uint64_t cut = next_cut(files[f], at, size, rule);
      if (cut > begin) shares[r].push_back({f, begin, cut});
      begin = cut;
      if (begin >= size) break;
    }
    if (begin < size) shares[r].push_back({f, begin, size});
  }
  return shares;
}

}  // namespace

std::vector<std::vector<CorpusPart>> share_corpus(const std::vector<std::string>& files, int ranks,
                                                  CutRule rule) {
  return cut_corpus(files, rule, [&](std::uint64_t total) {
    const auto n = static_cast<std::uint64_t>(ranks);
    std::vector<std::uint64_t> borders;
    for (std::uint64_t r = 0; r <= n; ++r) borders.push_back(total / n * r + total % n * r / n);  // no overflow
    return borders;
  });
}

std::vector<std::vector<CorpusPart>> pieces_to_take(const std::vector<std::string>& files, int ranks,
                                                    std::uint64_t least_bytes, CutRule rule) {
  return cut_corpus(files, rule, [&](std::uint64_t total) {
    const auto n = static_cast<std::uint64_t>(ranks);
    const std::uint64_t floor = std::min<std::uint64_t>(least_bytes, 64u << 10);
    const std::uint64_t least = std::clamp<std::uint64_t>(total / (16 * n), floor, least_bytes);
    std::vector<std::uint64_t> borders{0};
    for (std::uint64_t at = 0;;) {
      const std::uint64_t left = total - at;
      const std::uint64_t step = std::max(least, left / (2 * n));
      if (step >= left) break;
      borders.push_back(at += step);
    }
    borders.push_back(total);
    return borders;
  });
}

}  // namespace cllm
