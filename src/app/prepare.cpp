#include "cllm/app/prepare.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "cllm/base/format.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/sha256.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/dataset_file.h"
#include "on_rank_zero.h"

namespace cllm {

void PrepareConfig::validate() const {
  check_val_fraction(val_fraction);
  // The output replaces its file: it must not be one of the inputs.
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (input == out || std::filesystem::equivalent(input, out, ec))
      throw SettingError("{out} " + SettingError::literal(out) + " is also an input (" +
                         SettingError::literal(input) + "); it would be overwritten");
  }
}

namespace {

// Seconds between progress reports.
constexpr double kProgressSeconds = 5.0;

// Calls each with the file's bytes in order, in blocks of about block_bytes,
// each cut where encoding the blocks gives the ids of the whole
// (last_encoding_cut; anywhere for bytes): done and size are bytes of the
// file. A block with no such place is cut at its end.
void read_in_blocks(const std::string& path, std::size_t block_bytes, bool cut_anywhere,
                    const std::function<void(std::string_view, std::size_t, std::size_t)>& each) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw std::runtime_error(path + ": no such input file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open input file");
  const std::size_t size = std::filesystem::file_size(path, ec);
  std::string block;  // the bytes carried from the last block, then new ones
  std::size_t done = 0;
  for (bool last = false; !last;) {
    const std::size_t carried = block.size();
    block.resize(carried + block_bytes);
    in.read(block.data() + carried, static_cast<std::streamsize>(block_bytes));
    if (in.bad()) throw std::runtime_error(path + ": read error");
    block.resize(carried + static_cast<std::size_t>(in.gcount()));
    last = !in;
    std::size_t cut = last || cut_anywhere ? block.size() : last_encoding_cut(block);
    if (cut == 0) cut = block.size();
    done += cut;
    each(std::string_view(block).substr(0, cut), done, size);
    block.erase(0, cut);
  }
}

std::string progress_line(const PrepareProgress& p) {
  return printf_string("prepare: %.*s: %.0f of %.0f MB tokenized (%.0f s)\n", static_cast<int>(p.input.size()),
                p.input.data(), p.bytes_done / 1e6, p.bytes / 1e6, p.seconds);
}

std::string summary_line(const PrepareConfig& spec, const PrepareSummary& done) {
  return printf_string("prepare: %s: %zu bytes -> %zu train + %zu val tokens (%s, vocab %d) in %.2f s\n",
                spec.out.c_str(), done.bytes, done.train_tokens, done.val_tokens,
                done.tokenizer.c_str(), done.vocab_size, done.seconds);
}

}  // namespace

std::string prepare_command(const PrepareConfig& spec, const Comm& comm) {
  const PrepareSummary done = on_rank_zero(comm, spec, [&] {
    return prepare_dataset(spec, [](const PrepareProgress& p) { std::fputs(progress_line(p).c_str(), stderr); });
  });
  return comm.is_root() ? summary_line(spec, done) : "";
}

PrepareSummary prepare_dataset(const PrepareConfig& spec,
                               const std::function<void(const PrepareProgress&)>& progress) {
  spec.validate();
  const double t0 = omp_get_wtime();
  const TokenizerSpec tokenizer = tokenizer_spec(spec.tokenizer, spec.vocab_dir);
  const auto tok = make_tokenizer(tokenizer);
  // Blocks of a few pieces a thread (encode_in_parallel): the tokens of one
  // block at a time are in memory, on their way to the spool.
  const std::size_t block_bytes =
      spec.block_bytes > 0 ? spec.block_bytes : std::max<std::size_t>(16, 8 * omp_get_max_threads()) << 20;
  TokenSpool tokens(spool_path(spec.out, "tokens"), tokenizer.vocab_size);
  std::vector<DatasetSource> sources;
  PrepareSummary summary;
  for (const std::string& input : spec.inputs) {
    Sha256 sha;
    double reported = omp_get_wtime();
    read_in_blocks(input, block_bytes, tokenizer.name == "byte",
                   [&](std::string_view block, std::size_t done, std::size_t size) {
                     sha.update(block);
                     tokens.append(encode_in_parallel(*tok, block));
                     summary.bytes += block.size();
                     if (progress && omp_get_wtime() - reported > kProgressSeconds && done < size) {
                       reported = omp_get_wtime();
                       progress({input, done, size, reported - t0});
                     }
                   });
    sources.push_back({input, sha.hex()});
    // Documents are separated by the end-of-text token where there is one.
    if (tokenizer.eot_token >= 0) {
      const auto eot = static_cast<std::int32_t>(tokenizer.eot_token);
      tokens.append({&eot, 1});
    }
  }
  const std::uint64_t n = tokens.size();
  const auto n_val = static_cast<std::uint64_t>(static_cast<double>(n) * spec.val_fraction);
  write_token_dataset(spec.out, {&tokens, 0, n - n_val}, {&tokens, n - n_val, n}, tokenizer, sources,
                      spec.val_fraction);
  summary.train_tokens = n - n_val;
  summary.val_tokens = n_val;
  summary.tokenizer = tokenizer.name;
  summary.vocab_size = tokenizer.vocab_size;
  summary.seconds = omp_get_wtime() - t0;
  return summary;
}

}  // namespace cllm
