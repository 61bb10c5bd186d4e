#include "cllm/data/corpus_shares.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
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

std::vector<std::vector<CorpusPart>> share_corpus(const std::vector<std::string>& files, int ranks,
                                                  CutRule rule) {
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
  const auto n = static_cast<std::uint64_t>(ranks);
  // Share r's nominal bytes of the joined files: [border(r), border(r + 1)).
  const auto border = [&](std::uint64_t r) {
    return total / n * r + total % n * r / n;  // total * r / n without overflow
  };
  // The share a byte of the joined files falls in (the last for the end).
  const auto share_of = [&](std::uint64_t byte) {
    std::uint64_t r = 0;
    while (r + 1 < n && border(r + 1) <= byte) ++r;
    return r;
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
    for (; r + 1 < n && border(r + 1) < offset + size; ++r) {
      const std::uint64_t at = border(r + 1) - offset;
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

}  // namespace cllm
