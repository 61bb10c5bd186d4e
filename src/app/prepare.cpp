#include "cllm/app/prepare.h"

#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "cllm/base/format.h"
#include "cllm/base/read_file.h"
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
  std::vector<std::int32_t> tokens;
  std::vector<DatasetSource> sources;
  PrepareSummary summary;
  for (const std::string& input : spec.inputs) {
    const std::string text = read_file(input, "input file");
    summary.bytes += text.size();
    sources.push_back({input, sha256_hex(text)});
    const auto ids = encode_in_parallel(*tok, text, [&](std::size_t done, double seconds) {
      if (progress) progress({input, done, text.size(), seconds});
    });
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    // Documents are separated by the end-of-text token where there is one.
    if (tokenizer.eot_token >= 0) tokens.push_back(static_cast<std::int32_t>(tokenizer.eot_token));
  }
  const auto n_val =
      static_cast<std::size_t>(static_cast<double>(tokens.size()) * spec.val_fraction);
  const std::vector<std::int32_t> val(tokens.end() - static_cast<std::ptrdiff_t>(n_val),
                                      tokens.end());
  tokens.resize(tokens.size() - n_val);
  write_token_dataset(spec.out, tokens, val, tokenizer, sources, spec.val_fraction);
  summary.train_tokens = tokens.size();
  summary.val_tokens = val.size();
  summary.tokenizer = tokenizer.name;
  summary.vocab_size = tokenizer.vocab_size;
  summary.seconds = omp_get_wtime() - t0;
  return summary;
}

}  // namespace cllm
