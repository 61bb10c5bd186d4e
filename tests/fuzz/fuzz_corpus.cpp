// libFuzzer driver: the input as a corpus file for `cllm prepare`. Its first
// byte picks how it is read: as text in small blocks (the pieces must
// concatenate to the input exactly), as JSON Lines (every line is a record
// or a counted skip), or as a .gz file of either. std::runtime_error is a
// correct answer; a crash, a hang, a leak or a broken invariant is a finding.
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>

#include "cllm/data/corpus_reader.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 4;  // 0 text, 1 JSONL, 2 text .gz, 3 JSONL .gz
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string name = mode >= 2 ? "corpus.gz" : "corpus";
  const std::filesystem::path& path = cllm::fuzz::scratch_file(name);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  const bool jsonl = mode % 2 == 1;
  try {
    cllm::DocumentReader reader(path.string(), jsonl ? "text" : "", 64, data[0] & 4);
    cllm::DocumentPiece piece;
    std::string text;
    std::uint64_t records = 0;
    while (reader.next(piece)) {
      text += piece.text;
      if (jsonl && !(piece.first && piece.last)) cllm::fuzz::fail("a JSONL record is not a whole document");
      ++records;
    }
    if (mode == 0 && text != bytes) cllm::fuzz::fail("the text's pieces do not add up to the file");
    std::uint64_t lines = 0;
    for (const char c : bytes) lines += c == '\n';
    if (mode == 1 && records + reader.skipped_lines() > lines + 1)
      cllm::fuzz::fail("more records and skips than lines");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
