#include "cllm/app/prepare.h"

#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "cllm/base/format.h"
#include "cllm/base/out_of_memory.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/corpus_reader.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/sha256.h"
#include "cllm/data/token_file.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/dataset_file.h"
#include "cllm/data/corpus_shares.h"
#include "cllm/dist/collective.h"

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
  return printf_string("prepare: %s%.0f of %.0f MB (%.0f%%), %llu document%s, %.1f MB/s, %s %s",
                       p.ranks > 1 ? "rank 0's share: " : "", static_cast<double>(p.bytes_done) / 1e6,
                       static_cast<double>(p.bytes) / 1e6, percent,
                       static_cast<unsigned long long>(p.documents), p.documents == 1 ? "" : "s", rate / 1e6,
                       p.done ? "in" : "ETA", format_duration(p.done ? p.seconds : left).c_str());
}

std::string prepare_command(const PrepareConfig& spec, const Comm& comm) {
  // Blocks of megabytes come and go all run long. glibc's sliding mmap
  // threshold moves them onto the heap, whose fragments then grow with the
  // corpus: GPT-2 BPE of 2 GB peaked 17% above 200 MB's, 2% with a fixed one.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const bool terminal = isatty(fileno(stderr));
  double shown = -1;
  const PrepareSummary done = prepare_dataset(spec, comm, [&](const PrepareProgress& p) {
    if (!p.done && shown >= 0 && p.seconds - shown < (terminal ? kTerminalSeconds : kLogSeconds)) return;
    shown = p.seconds;
    // On a terminal the line is rewritten in place (\r, erase to its end).
    std::string line = terminal ? "\r" : "";
    line.append(progress_line(p)).append(terminal ? "\033[K" : "").append(!terminal || p.done ? "\n" : "");
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
  });
  if (done.skipped_lines > 0)
    std::fprintf(stderr, "prepare: warning: skipped %llu JSON Lines that held no document; the first: %s\n",
                 static_cast<unsigned long long>(done.skipped_lines), done.first_skipped.c_str());
  return comm.is_root() ? summary_line(spec, done) : "";
}

namespace {

// Plain data through MPI's byte collectives: what rank 0 plans, and what the
// ranks report back. Packed writes, Unpacked reads in the same order.
class Packed {
 public:
  const std::string& bytes() const { return bytes_; }
  Packed& put(std::uint64_t v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Packed& put(const std::string& text) {
    put(text.size());
    bytes_.append(text);
    return *this;
  }

 private:
  std::string bytes_;
};

class Unpacked {
 public:
  explicit Unpacked(std::string_view bytes) : bytes_(bytes) {}
  std::uint64_t number() {
    std::uint64_t v = 0;
    std::memcpy(&v, take(sizeof v).data(), sizeof v);
    return v;
  }
  std::string text() { return std::string(take(number())); }

 private:
  std::string_view take(std::size_t n) {
    if (n > bytes_.size()) throw std::logic_error("prepare: a packed message is short");
    const std::string_view taken = bytes_.substr(0, n);
    bytes_.remove_prefix(n);
    return taken;
  }
  std::string_view bytes_;
};

// Rank 0's plan: the input files and this rank's parts of them.
struct Plan {
  std::vector<std::string> files;
  std::vector<CorpusPart> parts;
};

Plan plan_on_rank_zero(const PrepareConfig& spec, bool cut_anywhere, const Comm& comm) {
  Packed packed;
  collectively(comm, [&] {
    if (!comm.is_root()) return;
    const std::vector<std::string> files = expand_inputs(spec.inputs);
    check_not_an_input(spec.out, files);
    const CutRule rule = !spec.jsonl_field.empty() ? CutRule::line
                         : cut_anywhere           ? CutRule::anywhere
                                                  : CutRule::encoding;
    packed.put(files.size());
    for (const std::string& file : files) packed.put(file);
    for (const auto& share : share_corpus(files, comm.size(), rule)) {
      packed.put(share.size());
      for (const CorpusPart& part : share) packed.put(part.file).put(part.begin).put(part.end);
    }
  });
  std::string bytes = packed.bytes();
  std::uint64_t size = bytes.size();
  comm.broadcast_value(size, Collective::prepare);
  bytes.resize(size);
  comm.broadcast(std::as_writable_bytes(std::span(bytes.data(), bytes.size())), Collective::prepare);
  Unpacked in(bytes);
  Plan plan;
  plan.files.resize(in.number());
  for (std::string& file : plan.files) file = in.text();
  for (int r = 0; r < comm.size(); ++r) {
    const std::uint64_t parts = in.number();
    for (std::uint64_t i = 0; i < parts; ++i) {
      CorpusPart part;
      part.file = static_cast<std::uint32_t>(in.number());
      part.begin = in.number();
      part.end = in.number();
      if (r == comm.rank()) plan.parts.push_back(part);
    }
  }
  return plan;
}

// One rank's share of prepare: its parts of the inputs, read, tokenized (on
// all threads, a block at a time) and spooled, each document's tokens to its
// split's spool.
class ShareTokenizer {
 public:
  ShareTokenizer(const PrepareConfig& spec, const TokenizerSpec& tokenizer, int rank)
      : spec_(spec),
        eot_(tokenizer.eot_token),
        vocab_size_(tokenizer.vocab_size),
        tok_(make_tokenizer(tokenizer)),
        bytes_are_ids_(tokenizer.name == "byte"),
        by_documents_(spec.val_split == "documents"),
        block_bytes_(spec.block_bytes > 0 ? spec.block_bytes
                                          : std::max<std::size_t>(16, 8 * omp_get_max_threads()) << 20),
        train_(spec.out, "train.r" + std::to_string(rank), token_element_size(tokenizer.vocab_size)) {
    if (by_documents_) val_.emplace(spec.out, "val.r" + std::to_string(rank), train_.element_size());
  }
  bool bytes_are_ids() const { return bytes_are_ids_; }

  // Reads part of file; progress(bytes of the part read) after each block.
  void add(const std::string& file, std::uint32_t index, const CorpusPart& part,
           const std::function<void(std::uint64_t)>& progress) {
    if (is_token_file(file)) return add_token_file(file, index, progress);
    DocumentReader reader(file, spec_.jsonl_field, block_bytes_, bytes_are_ids_, part.begin, part.end);
    DocumentPiece piece;
    bool side = false;
    bool keyed = false;  // side is the current document's (a part may start inside one)
    while (reader.next(piece)) {
      if (piece.first || !keyed) side = by_documents_ && in_validation(reader.document_key(), spec_.val_fraction);
      keyed = true;
      batch_bytes_ += piece.text.size();
      batch_.push_back(std::move(piece));
      to_val_.push_back(side);
      if (batch_bytes_ >= block_bytes_) {
        flush();
        progress(reader.bytes_read());
      }
    }
    if (part.begin == 0) sources.push_back({index, reader.sha256()});
    if (reader.skipped_lines() > 0 && skipped_lines == 0) first_skipped = reader.first_skipped();
    skipped_lines += reader.skipped_lines();
  }

  // Ids made by another tool, copied as they are: the file is one document,
  // with no end-of-text token added (llm.c's shards hold their own).
  void add_token_file(const std::string& file, std::uint32_t index,
                      const std::function<void(std::uint64_t)>& progress) {
    flush();
    TokenFileReader reader(file, vocab_size_);
    TokenSpool& spool = by_documents_ && in_validation(document_start(file), spec_.val_fraction) ? *val_ : train_;
    std::vector<std::int32_t> ids;
    while (reader.next(ids, block_bytes_ / sizeof(std::int32_t))) {
      spool.append(ids);
      progress(reader.bytes_read());
    }
    ++documents;
    bytes += reader.bytes_read();
    sources.push_back({index, reader.sha256()});
  }

  // Tokenizes and spools what is read and waiting.
  void flush() {
    std::vector<std::string_view> texts;
    for (const DocumentPiece& piece : batch_) texts.push_back(piece.text);
    std::vector<std::vector<std::int32_t>> ids;
    if (!bytes_are_ids_) ids = encode_each(*tok_, texts);
    for (std::size_t i = 0; i < batch_.size(); ++i) {
      TokenSpool& spool = to_val_[i] ? *val_ : train_;
      if (bytes_are_ids_)
        spool.append_bytes({reinterpret_cast<const unsigned char*>(texts[i].data()), texts[i].size()});
      else
        spool.append(ids[i]);
      if (batch_[i].last) {
        ++documents;
        if (eot_ >= 0) {  // between documents
          const auto eot = static_cast<std::int32_t>(eot_);
          spool.append({&eot, 1});
        }
      }
      bytes += texts[i].size();
    }
    batch_.clear();
    to_val_.clear();
    batch_bytes_ = 0;
  }

  const TokenSpool& train() const { return train_; }
  const TokenSpool* val() const { return val_ ? &*val_ : nullptr; }

  // What rank 0 needs of this share: the counts and the sources' hashes.
  std::string report() const {
    Packed packed;
    packed.put(bytes).put(documents).put(skipped_lines).put(first_skipped).put(sources.size());
    for (const auto& [file, sha] : sources) packed.put(file).put(sha);
    return packed.bytes();
  }

  std::uint64_t bytes = 0, documents = 0, skipped_lines = 0;
  std::string first_skipped;
  std::vector<std::pair<std::uint32_t, std::string>> sources;  // file index, sha256

  std::size_t block_bytes() const { return block_bytes_; }

 private:
  const PrepareConfig& spec_;
  std::int64_t eot_;
  int vocab_size_;
  std::unique_ptr<Tokenizer> tok_;
  bool bytes_are_ids_, by_documents_;
  std::size_t block_bytes_;
  TokenSpool train_;
  std::optional<TokenSpool> val_;
  // The pieces read and not yet tokenized, each with its document's side.
  std::vector<DocumentPiece> batch_;
  std::vector<char> to_val_;
  std::size_t batch_bytes_ = 0;
};

}  // namespace

namespace {

// Every rank's share of the tokens, in its spools; rank 0 reports its own
// progress.
ShareTokenizer tokenize_share(const PrepareConfig& spec, const TokenizerSpec& tokenizer, const Plan& plan,
                              const Comm& comm, const std::function<void(const PrepareProgress&)>& progress,
                              double t0) {
  std::optional<ShareTokenizer> share;
  PrepareProgress at;
  at.ranks = comm.size();
  for (const CorpusPart& part : plan.parts) at.bytes += part.end - part.begin;
  const auto report_progress = [&] {
    at.documents = share->documents;
    at.seconds = omp_get_wtime() - t0;
    if (progress && comm.is_root()) progress(at);
  };
  collectively(comm, [&] {
    share.emplace(spec, tokenizer, comm.rank());
    std::uint64_t before = 0;  // bytes of the parts done
    const std::string* file = nullptr;
    try {
      for (const CorpusPart& part : plan.parts) {
        file = &plan.files[part.file];
        share->add(*file, part.file, part, [&](std::uint64_t read) {
          at.bytes_done = before + read;
          report_progress();
        });
        before += part.end - part.begin;
      }
      share->flush();
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("out of memory: cannot tokenize " + (file ? *file : std::string("the corpus")) +
                        " in blocks of " + format_bytes(share->block_bytes()) + " on " +
                        std::to_string(omp_get_max_threads()) +
                        " threads: give the process more memory, or fewer threads (OMP_NUM_THREADS)");
    }
    at.bytes_done = before;
    at.done = true;
    report_progress();
  });
  return std::move(*share);
}

// This rank's share of either split's chunks, filtered into a spool of its
// own; the splits are the ranks' spools joined in rank order.
struct ChunkShare {
  TokenSpool chunks;
  Packed sizes;  // per split: its tokens, this share's chunks, each one's size
};

ChunkShare filter_share(const PrepareConfig& spec, const ShareTokenizer& share, const Comm& comm) {
  const int rank = comm.rank(), ranks = comm.size();
  const bool by_documents = spec.val_split == "documents";
  const std::vector<std::uint64_t> train_sizes = comm.all_gather(share.train().size(), Collective::prepare);
  const std::vector<std::uint64_t> val_sizes =
      comm.all_gather(by_documents ? share.val()->size() : std::uint64_t{0}, Collective::prepare);
  const std::size_t element = share.train().element_size();
  std::vector<TokenSpool> others;  // the other ranks' spools, to read
  others.reserve(2 * static_cast<std::size_t>(ranks));
  const auto spool_of = [&](int r, const std::string& what, const TokenSpool* mine) -> const TokenSpool* {
    if (r == rank) return mine;
    return &others.emplace_back(TokenSpool::open(spec.out, what + ".r" + std::to_string(r), element));
  };
  std::optional<ChunkShare> mine;
  collectively(comm, [&] {
    std::vector<SpoolRange> train_pieces, val_pieces;
    for (int r = 0; r < ranks; ++r) {
      train_pieces.push_back({spool_of(r, "train", &share.train()), 0, train_sizes[r]});
      if (by_documents) val_pieces.push_back({spool_of(r, "val", share.val()), 0, val_sizes[r]});
    }
    TokenStream splits[2] = {TokenStream(train_pieces), TokenStream(val_pieces)};
    if (!by_documents) {  // the tail
      const std::uint64_t all = splits[0].size();
      const auto n_val = static_cast<std::uint64_t>(static_cast<double>(all) * spec.val_fraction);
      splits[1] = splits[0].slice(all - n_val, all);
      splits[0] = splits[0].slice(0, all - n_val);
    }
    mine.emplace(ChunkShare{TokenSpool(spec.out, "chunks.r" + std::to_string(rank), 1), {}});
    try {
      for (const TokenStream& split : splits) {
        const std::uint64_t n = token_chunks(split.size());
        const std::uint64_t first = n * rank / ranks, last = n * (rank + 1) / ranks;
        mine->sizes.put(split.size()).put(last - first);
        for (const std::uint64_t size : filter_token_chunks(split, first, last, mine->chunks)) mine->sizes.put(size);
      }
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("out of memory: cannot compress the token chunks of " + spec.out + " on " +
                        std::to_string(omp_get_max_threads()) +
                        " threads: give the process more memory, or fewer threads (OMP_NUM_THREADS)");
    }
  });
  return std::move(*mine);
}

// Rank 0 joins the ranks' reports and chunks into the dataset.
PrepareSummary write_dataset(const PrepareConfig& spec, const TokenizerSpec& tokenizer, const Plan& plan,
                             const std::vector<std::string>& reports, const std::vector<std::string>& filtered,
                             const TokenSpool& own_chunks, double t0) {
  PrepareSummary summary;
  std::vector<DatasetSource> sources(plan.files.size());
  for (std::size_t f = 0; f < plan.files.size(); ++f) sources[f].file = plan.files[f];
  for (const std::string& text : reports) {
    Unpacked report(text);
    summary.bytes += report.number();
    summary.documents += report.number();
    const std::uint64_t skipped = report.number();
    std::string first_skipped = report.text();
    if (skipped > 0 && summary.skipped_lines == 0) summary.first_skipped = std::move(first_skipped);
    summary.skipped_lines += skipped;
    for (std::uint64_t i = report.number(); i > 0; --i) {
      const std::uint64_t file = report.number();
      sources.at(file).sha256 = report.text();
    }
  }
  std::vector<TokenSpool> chunk_spools;  // the other ranks'
  chunk_spools.reserve(filtered.size());
  FilteredSplit splits[2];
  for (std::size_t r = 0; r < filtered.size(); ++r) {
    const TokenSpool* spool =
        r == 0 ? &own_chunks
               : &chunk_spools.emplace_back(TokenSpool::open(spec.out, "chunks.r" + std::to_string(r), 1));
    Unpacked sizes(filtered[r]);
    std::uint64_t offset = 0;
    for (FilteredSplit& split : splits) {
      split.tokens = sizes.number();
      for (std::uint64_t i = sizes.number(); i > 0; --i) {
        const std::uint64_t size = sizes.number();
        split.chunks.push_back({spool, offset, size});
        offset += size;
      }
    }
  }
  write_token_dataset(spec.out, splits[0], splits[1], tokenizer, sources, spec.val_fraction);
  summary.train_tokens = splits[0].tokens;
  summary.val_tokens = splits[1].tokens;
  summary.tokenizer = tokenizer.name;
  summary.vocab_size = tokenizer.vocab_size;
  summary.seconds = omp_get_wtime() - t0;
  return summary;
}

}  // namespace

PrepareSummary prepare_dataset(const PrepareConfig& spec, const Comm& comm,
                               const std::function<void(const PrepareProgress&)>& progress) {
  const double t0 = omp_get_wtime();
  TokenizerSpec tokenizer;
  collectively(comm, [&] {
    spec.validate();
    tokenizer = tokenizer_spec(spec.tokenizer, spec.vocab_dir);
  });
  const Plan plan = plan_on_rank_zero(spec, tokenizer.name == "byte", comm);
  const ShareTokenizer share = tokenize_share(spec, tokenizer, plan, comm, progress, t0);
  const std::vector<std::string> reports = comm.gather_text(share.report(), Collective::prepare);
  const ChunkShare chunks = filter_share(spec, share, comm);
  const std::vector<std::string> filtered = comm.gather_text(chunks.sizes.bytes(), Collective::prepare);
  PrepareSummary summary;
  // The spools stay until rank 0 is done: the agreement waits for it.
  collectively(comm, [&] {
    if (comm.is_root()) summary = write_dataset(spec, tokenizer, plan, reports, filtered, chunks.chunks, t0);
  });
  return summary;
}

}  // namespace cllm
