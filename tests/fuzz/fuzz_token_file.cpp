// libFuzzer driver: the input as a token file from another tool
// (TokenFileReader). Its first byte picks the format (bit 0: llm.c .bin or
// NumPy .npy), the vocabulary (bits 1-2) and the block size (bit 3); the
// rest is the file. std::runtime_error is a correct answer; a crash, a hang,
// a leak or a broken invariant is a finding.
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/data/sha256.h"
#include "cllm/data/token_file.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool npy = data[0] & 1;
  constexpr int kVocabs[] = {1, 256, 50257, INT_MAX};
  const int vocab = kVocabs[(data[0] >> 1) & 3];
  const std::size_t block = data[0] & 8 ? 7 : 4096;
  const std::filesystem::path& path =
      cllm::fuzz::write_input(npy ? "tokens.npy" : "tokens.bin", data + 1, size - 1);
  try {
    cllm::TokenFileReader reader(path.string(), vocab);
    std::vector<std::int32_t> ids;
    std::uint64_t count = 0;
    while (reader.next(ids, block)) {
      if (ids.empty() || ids.size() > block) cllm::fuzz::fail("a block of " + std::to_string(ids.size()) + " ids");
      for (const std::int32_t id : ids)
        if (id < 0 || id >= vocab) cllm::fuzz::fail("id " + std::to_string(id) + " outside the vocabulary");
      count += ids.size();
    }
    if (count != reader.tokens()) cllm::fuzz::fail("the ids read are not as many as the header says");
    if (reader.bytes_read() != size - 1) cllm::fuzz::fail("a file accepted without reading all its bytes");
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (reader.sha256() != cllm::sha256_hex(bytes)) cllm::fuzz::fail("sha256 is not the file's");
    if (reader.next(ids, block) || !ids.empty()) cllm::fuzz::fail("ids after the end");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
