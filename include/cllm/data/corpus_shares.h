// A corpus split over ranks: each rank tokenizes a contiguous share of the
// inputs' bytes, and the shares, joined in rank order, are the corpus. Files
// are cut between ranks only where tokenizing the two sides gives the ids of
// the whole, so the dataset does not depend on the number of ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

// A rank's part of an input file: its stored bytes [begin, end).
struct CorpusPart {
  std::uint32_t file = 0;  // an index into the files
  std::uint64_t begin = 0, end = 0;
};

// Where a file may be cut: anywhere (byte-level text), where
// first_encoding_cut says (text for other tokenizers), after a line end
// (JSON Lines); a .gz or token file (token_file.h) never.
enum class CutRule { anywhere, encoding, line };

// The files' parts for each of `ranks` shares of about equal stored bytes,
// in order: a file is split at the shares' nominal borders, each moved on
// to the next place rule allows (reading the file there). A .gz or token
// file goes whole to the share its first byte falls in. An empty file is a part of
// its own. Throws std::runtime_error naming a file it cannot read.
std::vector<std::vector<CorpusPart>> share_corpus(const std::vector<std::string>& files, int ranks,
                                                  CutRule rule);

// The same cut into pieces for ranks that each take the next one when free
// (one node, a shared counter): pieces of a 2 x ranks-th of what is left,
// down to least_bytes (a 16 x ranks-th of a small corpus, at least 64 KiB),
// so that the last ones taken even out where the ranks end.
std::vector<std::vector<CorpusPart>> pieces_to_take(const std::vector<std::string>& files, int ranks,
                                                    std::uint64_t least_bytes, CutRule rule);

}  // namespace cllm
