#include "cllm/app/prepare.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "cllm/base/format.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/corpus_reader.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/sha256.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/dataset_file.h"
#include "on_rank_zero.h"

namespace cllm {

namespace {

// The output replaces its file: it must not be one of the inputs.
void check_not_an_input(const std::string& out, const std::vector<std::string>& inputs) {
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (input == out || std::filesystem::equivalent(input, out, ec))
      throw SettingError("{out} " + SettingError::literal(out) + " is also an input (" +
                         SettingError::literal(input) + "); it would be overwritten");
  }
}

}  // namespace

void PrepareConfig::validate() const {
  check_val_fraction(val_fraction);
  require_setting(val_split == "tail" || val_split == "documents",
                  "{val_split} must be tail or documents, not '" + SettingError::literal(val_split) + "'");
  check_not_an_input(out, inputs);
}

namespace {

// Seconds between progress lines on a terminal, and in a log.
constexpr double kTerminalSeconds = 0.5, kLogSeconds = 10.0;

std::string summary_line(const PrepareConfig& spec, const PrepareSummary& done) {
  return printf_string("prepare: %s: %zu bytes -> %zu train + %zu val tokens (%s, vocab %d) in %.2f s\n",
                spec.out.c_str(), done.bytes, done.train_tokens, done.val_tokens,
                done.tokenizer.c_str(), done.vocab_size, done.seconds);
}

}  // namespace

std::string progress_line(const PrepareProgress& p) {
  const double rate = p.seconds > 0 ? static_cast<double>(p.bytes_done) / p.seconds : 0;
  const double percent = p.bytes > 0 ? 100.0 * static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes) : 100;
  const double left = rate > 0 ? static_cast<double>(p.bytes - std::min(p.bytes, p.bytes_done)) / rate : -1;
  return printf_string("prepare: %.0f of %.0f MB (%.0f%%), %llu document%s, %.1f MB/s, %s %s",
                       static_cast<double>(p.bytes_done) / 1e6, static_cast<double>(p.bytes) / 1e6, percent,
                       static_cast<unsigned long long>(p.documents), p.documents == 1 ? "" : "s", rate / 1e6,
                       p.done ? "in" : "ETA", format_duration(p.done ? p.seconds : left).c_str());
}

std::string prepare_command(const PrepareConfig& spec, const Comm& comm) {
  const PrepareSummary done = on_rank_zero(comm, spec, [&] {
    const bool terminal = isatty(fileno(stderr));
    double shown = -1;
    return prepare_dataset(spec, [&](const PrepareProgress& p) {
      if (!p.done && shown >= 0 && p.seconds - shown < (terminal ? kTerminalSeconds : kLogSeconds)) return;
      shown = p.seconds;
      // On a terminal the line is rewritten in place (\r, erase to its end).
      std::string line = terminal ? "\r" : "";
      line.append(progress_line(p)).append(terminal ? "\033[K" : "").append(!terminal || p.done ? "\n" : "");
      std::fputs(line.c_str(), stderr);
      std::fflush(stderr);
    });
  });
  if (done.skipped_lines > 0)
    std::fprintf(stderr, "prepare: warning: skipped %llu JSON Lines that held no document; the first: %s\n",
                 static_cast<unsigned long long>(done.skipped_lines), done.first_skipped.c_str());
  return comm.is_root() ? summary_line(spec, done) : "";
}

PrepareSummary prepare_dataset(const PrepareConfig& spec,
                               const std::function<void(const PrepareProgress&)>& progress) {
  spec.validate();
  const double t0 = omp_get_wtime();
  const TokenizerSpec tokenizer = tokenizer_spec(spec.tokenizer, spec.vocab_dir);
  const auto tok = make_tokenizer(tokenizer);
  const bool bytes_are_ids = tokenizer.name == "byte";  // nothing to encode
  const std::vector<std::string> files = expand_inputs(spec.inputs);
  check_not_an_input(spec.out, files);
  // Blocks of a few pieces a thread (encode_each): the text and tokens of
  // one block at a time are in memory, on their way to a spool.
  const std::size_t block_bytes =
      spec.block_bytes > 0 ? spec.block_bytes : std::max<std::size_t>(16, 8 * omp_get_max_threads()) << 20;
  const bool by_documents = spec.val_split == "documents";
  TokenSpool train(spec.out, "train", tokenizer.vocab_size);
  std::optional<TokenSpool> val;
  if (by_documents) val.emplace(spec.out, "val", tokenizer.vocab_size);

  PrepareSummary summary;
  PrepareProgress at;
  for (const std::string& file : files) {
    std::error_code ec;
    at.bytes += std::filesystem::file_size(file, ec);  // 0 where it fails: the reader says why
  }
  // The pieces read and not yet tokenized, each with its document's side.
  std::vector<DocumentPiece> batch;
  std::vector<char> to_val;
  std::size_t batch_bytes = 0;
  const auto flush = [&] {
    std::vector<std::string_view> texts;
    for (const DocumentPiece& piece : batch) texts.push_back(piece.text);
    std::vector<std::vector<std::int32_t>> ids;
    if (!bytes_are_ids) ids = encode_each(*tok, texts);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      TokenSpool& spool = to_val[i] ? *val : train;
      if (bytes_are_ids)
        spool.append_bytes({reinterpret_cast<const unsigned char*>(texts[i].data()), texts[i].size()});
      else
        spool.append(ids[i]);
      if (batch[i].last) {
        ++summary.documents;
        if (tokenizer.eot_token >= 0) {  // between documents
          const auto eot = static_cast<std::int32_t>(tokenizer.eot_token);
          spool.append({&eot, 1});
        }
      }
      summary.bytes += texts[i].size();
    }
    batch.clear();
    to_val.clear();
    batch_bytes = 0;
  };
  std::vector<DatasetSource> sources;
  std::uint64_t stored_before = 0;  // bytes of the files done
  for (const std::string& file : files) {
    DocumentReader reader(file, spec.jsonl_field, block_bytes, bytes_are_ids);
    DocumentPiece piece;
    bool side = false;
    while (reader.next(piece)) {
      if (piece.first) side = by_documents && in_validation(piece.text, spec.val_fraction);
      batch_bytes += piece.text.size();
      batch.push_back(std::move(piece));
      to_val.push_back(side);
      if (batch_bytes >= block_bytes) {
        flush();
        at.bytes_done = stored_before + reader.bytes_read();
        at.documents = summary.documents;
        at.seconds = omp_get_wtime() - t0;
        if (progress) progress(at);
      }
    }
    stored_before += reader.bytes_read();
    sources.push_back({file, reader.sha256()});
    if (reader.skipped_lines() > 0 && summary.skipped_lines == 0) summary.first_skipped = reader.first_skipped();
    summary.skipped_lines += reader.skipped_lines();
  }
  flush();
  at = {stored_before, std::max(at.bytes, stored_before), summary.documents, omp_get_wtime() - t0, true};
  if (progress) progress(at);

  SpoolRange train_range{&train, 0, train.size()}, val_range{&train, train.size(), train.size()};
  if (by_documents) {
    val_range = {&*val, 0, val->size()};
  } else {
    const auto n_val = static_cast<std::uint64_t>(static_cast<double>(train.size()) * spec.val_fraction);
    train_range.end = val_range.begin = train.size() - n_val;
  }
  write_token_dataset(spec.out, train_range, val_range, tokenizer, sources, spec.val_fraction);
  summary.train_tokens = train_range.size();
  summary.val_tokens = val_range.size();
  summary.tokenizer = tokenizer.name;
  summary.vocab_size = tokenizer.vocab_size;
  summary.seconds = omp_get_wtime() - t0;
  return summary;
}

}  // namespace cllm
