#include "cllm/data/text_dataset.h"

#include <algorithm>
#include <stdexcept>

#include "cllm/base/read_file.h"
#include "cllm/data/sha256.h"

namespace cllm {

std::vector<std::int32_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<std::int32_t> ids(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<std::int32_t>& tokens) const {
  std::string s(tokens.size(), '\0');
  for (std::size_t i = 0; i < tokens.size(); ++i) s[i] = static_cast<char>(tokens[i] & 0xff);
  return s;
}

void TokenDataset::read_tokens(Split split, std::uint64_t start, std::size_t count,
                               std::int32_t* out) const {
  const std::vector<std::int32_t>& tokens = of(split);
  if (start + count > tokens.size())
    throw std::out_of_range(source + ": token window past the end of the split");
  std::copy_n(tokens.begin() + static_cast<std::ptrdiff_t>(start), count, out);
}

TokenDataset load_text_dataset(const std::filesystem::path& path, double val_fraction,
                               int seq_len) {
  const std::string name = path.string();
  const std::string text = read_file(path, "data file");

  TokenDataset d;
  d.vocab_size = ByteTokenizer::kVocabSize;
  d.source = name;
  std::vector<std::int32_t> all = ByteTokenizer{}.encode(text);
  const auto n_val = static_cast<std::size_t>(static_cast<double>(all.size()) * val_fraction);
  const std::size_t need = static_cast<std::size_t>(seq_len) + 1;
  if (all.size() - n_val < need || n_val < need)
    throw std::runtime_error(name + ": too short (" + std::to_string(all.size()) +
                             " tokens) for training and validation windows of --seq-len " +
                             std::to_string(seq_len) + " + 1 tokens");
  d.val.assign(all.end() - static_cast<std::ptrdiff_t>(n_val), all.end());
  all.resize(all.size() - n_val);
  d.train = std::move(all);
  d.contents_identity = "text of " + std::to_string(text.size()) + " bytes, sha256 " +
                        sha256_hex(text) + ", " + std::to_string(d.val.size()) + " held out";
  return d;
}

}  // namespace cllm
