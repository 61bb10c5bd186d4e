// `cllm prepare` (text -> HDF5 token dataset) and `cllm generate` (text from
// a checkpoint).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "agreement.h"
#include "options.h"
#include "cllm/data/read_file.h"
#include "cllm/data/sha256.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/dataset_file.h"
#include "cllm/model/generate.h"
#include "cllm/model/model.h"
#include "subcommands.h"

namespace cllm {

namespace {

// Splits text into pieces of about piece_bytes that tokenize exactly as the
// whole does: each cut falls between a letter and " letter", where GPT-2's
// pre-tokenizer always ends one piece and starts the next (and bytes are
// bytes), so the pieces can be encoded on separate threads.
std::vector<std::string_view> split_for_encoding(std::string_view text, std::size_t piece_bytes) {
  const auto letter = [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
  };
  std::vector<std::string_view> pieces;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t cut = std::min(begin + piece_bytes, text.size());
    while (cut < text.size() &&
           !(cut + 1 < text.size() && letter(text[cut - 1]) && text[cut] == ' ' &&
             letter(text[cut + 1])))
      ++cut;
    pieces.push_back(text.substr(begin, cut - begin));
    begin = cut;
  }
  return pieces;
}

// Encodes text on all threads, a line of progress every few seconds.
std::vector<std::int32_t> encode_text(const Tokenizer& tok, std::string_view text,
                                      const std::string& name) {
  const auto pieces = split_for_encoding(text, std::size_t{1} << 20);
  const auto n = static_cast<std::int64_t>(pieces.size());
  std::vector<std::vector<std::int32_t>> ids(pieces.size());
  const double t0 = omp_get_wtime();
  double reported = t0;
  std::size_t bytes_done = 0;
  const std::int64_t round = 4 * omp_get_max_threads();
  for (std::int64_t r0 = 0; r0 < n; r0 += round) {
    const std::int64_t r1 = std::min(n, r0 + round);
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t i = r0; i < r1; ++i) ids[i] = tok.encode(pieces[i]);
    for (std::int64_t i = r0; i < r1; ++i) bytes_done += pieces[i].size();
    if (omp_get_wtime() - reported > 5.0 && r1 < n) {
      reported = omp_get_wtime();
      std::fprintf(stderr, "prepare: %s: %.0f of %.0f MB tokenized (%.0f s)\n", name.c_str(),
                   bytes_done / 1e6, text.size() / 1e6, reported - t0);
    }
  }
  std::vector<std::int32_t> all;
  for (const auto& piece : ids) all.insert(all.end(), piece.begin(), piece.end());
  return all;
}

}  // namespace

void add_prepare_options(CLI::App& app, PrepareCommand& c) {
  app.add_option("inputs", c.inputs, "Text files (UTF-8), in order")->required();
  app.add_option("--out", c.out, "HDF5 dataset to write (replaced atomically)")
      ->capture_default_str();
  app.add_option("--tokenizer", c.tokenizer, "byte (vocab 256) or gpt2-bpe (vocab 50257)")
      ->capture_default_str();
  app.add_option("--vocab-dir", c.vocab_dir,
                 "Folder with GPT-2's encoder.json and vocab.bpe (gpt2-bpe)")
      ->capture_default_str();
  app.add_option("--val-fraction", c.val_fraction, "Tail of the tokens held out for validation")
      ->capture_default_str()
      ->check(real_range(0.0, 0.5));
}

int run_prepare(PrepareCommand& c, const Comm& comm) {
  if (auto code = agree_on_setup(comm, [&] {
        // The output replaces its file: it must not be one of the inputs
        // (the same file under another name included).
        for (const std::string& input : c.inputs) {
          std::error_code ec;
          if (input == c.out || std::filesystem::equivalent(input, c.out, ec))
            throw std::invalid_argument("--out " + c.out + " is also an input (" + input +
                                        "); it would be overwritten");
        }
        if (!comm.is_root()) return;
        const double t0 = omp_get_wtime();
        const TokenizerSpec spec = tokenizer_spec(c.tokenizer, c.vocab_dir);
        const auto tok = make_tokenizer(spec);
        std::vector<std::int32_t> tokens;
        std::vector<DatasetSource> sources;
        std::size_t bytes = 0;
        for (const std::string& input : c.inputs) {
          const std::string text = read_file(input, "input file");
          bytes += text.size();
          sources.push_back({input, sha256_hex(text)});
          const auto ids = encode_text(*tok, text, input);
          tokens.insert(tokens.end(), ids.begin(), ids.end());
          // Documents are separated by the end-of-text token where there is one.
          if (spec.eot_token >= 0) tokens.push_back(static_cast<std::int32_t>(spec.eot_token));
        }
        const auto n_val = static_cast<std::size_t>(static_cast<double>(tokens.size()) *
                                                    c.val_fraction);
        const std::vector<std::int32_t> val(tokens.end() - static_cast<std::ptrdiff_t>(n_val),
                                            tokens.end());
        tokens.resize(tokens.size() - n_val);
        write_token_dataset(c.out, tokens, val, spec, sources, c.val_fraction);
        std::printf("prepare: %s: %zu bytes -> %zu train + %zu val tokens (%s, vocab %d) in "
                    "%.2f s\n",
                    c.out.c_str(), bytes, tokens.size(), val.size(), spec.name.c_str(),
                    spec.vocab_size, omp_get_wtime() - t0);
      }))
    return *code;
  return kExitOk;
}

void add_generate_options(CLI::App& app, GenerateCommand& c) {
  app.add_option("--checkpoint", c.checkpoint, "Checkpoint file (checkpoint-<step>.h5)")
      ->required();
  app.add_option("--prompt", c.prompt, "Text to continue")->capture_default_str();
  app.add_option("--tokens", c.tokens, "New tokens to generate")->capture_default_str();
  app.add_option("--temperature", c.temperature, "Sampling temperature (> 0)")
      ->capture_default_str();
  app.add_option("--top-k", c.top_k, "Sample among the k likeliest tokens (0: all)")
      ->capture_default_str();
  app.add_option("--seed", c.seed, "Sampling seed")->capture_default_str();
}

int run_generate(GenerateCommand& c, const Comm& comm) {
  if (auto code = agree_on_setup(comm, [&] {
        if (c.tokens < 0) throw std::invalid_argument("--tokens must not be negative");
        if (!(c.temperature > 0)) throw std::invalid_argument("--temperature must be positive");
        if (c.top_k < 0) throw std::invalid_argument("--top-k must not be negative");
        if (!comm.is_root()) return;
        const CheckpointReader checkpoint(c.checkpoint);
        const CheckpointContents& header = checkpoint.header();
        Model model = [&] {
          try {
            return Model(header.model);
          } catch (const std::exception& e) {  // out of memory: say for which checkpoint
            throw std::runtime_error(naming_file(c.checkpoint, e.what()));
          }
        }();
        checkpoint.read_into(model);
        const auto tok = make_tokenizer(header.tokenizer);
        std::vector<std::int32_t> prompt = tok->encode(c.prompt);
        if (prompt.empty())
          throw std::invalid_argument("--prompt: give at least one character of text");
        SamplingOptions so;
        so.tokens = c.tokens;
        so.temperature = c.temperature;
        so.top_k = c.top_k;
        so.seed = c.seed;
        const auto ids = generate(model, prompt, so);
        // Written by size, not with %s: byte-level text may hold NUL bytes.
        const std::string text = tok->decode(ids);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::printf("\n");
      }))
    return *code;
  return kExitOk;
}

}  // namespace cllm
