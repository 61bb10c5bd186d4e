#include "cllm/app/prepare.h"

#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "cllm/base/format.h"
#include "cllm/base/out_of_memory.h"
#include "cllm/base/read_file.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/corpus_reader.h"
#include "cllm/data/parallel_encode.h"
#include "cllm/data/sha256.h"
#include "cllm/data/token_file.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/durable_file.h"
#include "cllm/io/file_checksum.h"
#include "cllm/data/corpus_shares.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/node_counters.h"

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
  // Each round of chunks (ChunkRounds) frees megabytes at the heap's top:
  // trimmed at once, they cost page faults again the next round.
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
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
  Packed() = default;
  explicit Packed(std::string room) : bytes_(std::move(room)) { bytes_.clear(); }  // its capacity kept
  const std::string& bytes() const& { return bytes_; }
  std::string bytes() && { return std::move(bytes_); }
  Packed& put(std::uint64_t v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Packed& put(std::string_view text) {
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
  std::string text() { return std::string(view()); }
  std::string_view view() { return take(number()); }  // valid while the bytes are

 private:
  std::string_view take(std::size_t n) {
    if (n > bytes_.size()) throw std::logic_error("prepare: a packed message is short");
    const std::string_view taken = bytes_.substr(0, n);
    bytes_.remove_prefix(n);
    return taken;
  }
  std::string_view bytes_;
};

// Rank 0's text, on every rank.
void broadcast_text(const Comm& comm, std::string& text) {
  std::uint64_t size = text.size();
  comm.broadcast_value(size, Collective::prepare);
  text.resize(size);
  comm.broadcast(std::as_writable_bytes(std::span(text.data(), text.size())), Collective::prepare);
}

// Every rank's text, in rank order, on every rank.
std::vector<std::string> all_texts(const Comm& comm, const std::string& mine) {
  const std::vector<std::string> texts = comm.gather_text(mine, Collective::prepare);
  Packed packed;
  for (const std::string& text : texts) packed.put(text);
  std::string bytes = packed.bytes();
  broadcast_text(comm, bytes);
  Unpacked in(bytes);
  std::vector<std::string> all(static_cast<std::size_t>(comm.size()));
  for (std::string& text : all) text = in.text();
  return all;
}

// Rank 0's plan: the input files, and the corpus in shares, in order. On one
// node the ranks take the next share from a counter they share when free
// (pieces_to_take), so a core slowed by a neighbour holds no rank up; else
// rank r tokenizes share r.
struct Plan {
  std::vector<std::string> files;
  std::vector<std::vector<CorpusPart>> shares;
  bool taken = false;
  std::uint64_t bytes(std::uint64_t share) const {
    std::uint64_t n = 0;
    for (const CorpusPart& part : shares.at(share)) n += part.end - part.begin;
    return n;
  }
};

// The smallest share to take: 4 MiB is a quarter of a second of GPT-2 BPE on a core.
constexpr std::uint64_t kLeastShareBytes = 4u << 20;

Plan plan_on_rank_zero(const PrepareConfig& spec, bool cut_anywhere, const Comm& comm) {
  Packed packed;
  // Byte-level text is not tokenized: its chunk rounds are where the work is.
  const bool taken = comm.size() > 1 && comm.on_one_node() && !cut_anywhere;
  collectively(comm, [&] {
    if (!comm.is_root()) return;
    const std::vector<std::string> files = expand_inputs(spec.inputs);
    check_not_an_input(spec.out, files);
    const CutRule rule = !spec.jsonl_field.empty() ? CutRule::line
                         : cut_anywhere           ? CutRule::anywhere
                                                  : CutRule::encoding;
    packed.put(files.size());
    for (const std::string& file : files) packed.put(file);
    const auto shares = taken ? pieces_to_take(files, comm.size(), kLeastShareBytes, rule)
                              : share_corpus(files, comm.size(), rule);
    packed.put(shares.size());
    for (const auto& share : shares) {
      packed.put(share.size());
      for (const CorpusPart& part : share) packed.put(part.file).put(part.begin).put(part.end);
    }
  });
  std::string bytes = packed.bytes();
  broadcast_text(comm, bytes);
  Unpacked in(bytes);
  Plan plan;
  plan.taken = taken;
  plan.files.resize(in.number());
  for (std::string& file : plan.files) file = in.text();
  plan.shares.resize(in.number());
  for (auto& share : plan.shares) {
    share.resize(in.number());
    for (CorpusPart& part : share) {
      part.file = static_cast<std::uint32_t>(in.number());
      part.begin = in.number();
      part.end = in.number();
    }
  }
  return plan;
}

// What a rank that cannot see another's files in --out's folder says.
constexpr const char* kSharedOut = "--out must be in a folder every rank shares";

// A stretch of one split's tokens as a rank made them: tokens [begin, end)
// of its spool of the split, or bytes [begin, end) of an input file that is
// byte-level text.
struct Segment {
  static constexpr std::uint64_t kSpool = ~std::uint64_t{0};
  std::uint64_t share = 0;      // of the plan: the dataset joins segments in share order
  std::uint64_t file = kSpool;  // else an index into the plan's files
  std::uint64_t begin = 0, end = 0;
};

// The SHA-256s of the files this rank starts and does not read whole
// (byte-level text, read where it lies; a file shared with other ranks):
// hashed a slice at a time beside the chunk rounds, whose shares follow each
// rank's speed, so that hashing a large file holds up no rank.
class FileHashes {
 public:
  void add(std::uint32_t index, const std::string& path) {
    std::error_code ec;
    left_ += std::filesystem::file_size(path, ec);
    pending_.push_back({index, path});
  }
  std::uint64_t bytes_left() const { return left_; }
  // Hashes about `bytes` more (all: ~0), in order.
  void hash(std::uint64_t bytes) {
    std::vector<char> block(1u << 20);
    while (next_ < pending_.size()) {
      const std::string& path = pending_[next_].path;
      if (!in_) {
        in_.emplace(path, std::ios::binary);
        if (!*in_) throw std::runtime_error(path + ": cannot open input file");
        sha_ = std::make_unique<Sha256>();
      }
      for (;;) {
        if (bytes == 0) return;
        in_->read(block.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(bytes, block.size())));
        const auto got = static_cast<std::size_t>(in_->gcount());
        if (in_->bad()) throw std::runtime_error(path + ": read error");
        sha_->update({block.data(), got});
        bytes -= got;
        left_ -= std::min<std::uint64_t>(left_, got);
        if (got == 0 || in_->eof()) break;
      }
      done.emplace_back(pending_[next_].index, sha_->hex());
      in_.reset();
      ++next_;
    }
  }

  std::vector<std::pair<std::uint32_t, std::string>> done;  // file index, sha256

 private:
  struct Pending {
    std::uint32_t index;
    std::string path;
  };
  std::vector<Pending> pending_;
  std::size_t next_ = 0;  // the file being hashed
  std::optional<std::ifstream> in_;
  std::unique_ptr<Sha256> sha_;  // Sha256 does not move
  std::uint64_t left_ = 0;
};

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
        block_bytes_(block_bytes(spec)),
        train_(spec.out, "train.r" + std::to_string(rank), token_element_size(tokenizer.vocab_size)) {
    if (by_documents_) val_.emplace(spec.out, "val.r" + std::to_string(rank), train_.element_size());
  }
  bool bytes_are_ids() const { return bytes_are_ids_; }

  // Reads part of file, of the plan's share `share`; progress(bytes of the
  // part read) after each block.
  void add(const std::string& file, std::uint32_t index, const CorpusPart& part, std::uint64_t share,
           const std::function<void(std::uint64_t)>& progress) {
    share_ = share;
    if (is_token_file(file)) return add_token_file(file, index, progress);
    if (bytes_are_ids_ && spec_.jsonl_field.empty() && !is_gzip(file))
      return add_text_bytes(file, index, part, progress);
    DocumentReader reader(file, spec_.jsonl_field, block_bytes_, bytes_are_ids_, part.begin, part.end);
    DocumentPiece piece;
    bool side = false;
    bool keyed = false;  // side is the current document's (a part may start inside one)
    while (reader.next(piece)) {
      if (piece.first || !keyed) side = by_documents_ && in_validation(reader.document_key(), spec_.val_fraction);
      keyed = true;
      batch_bytes_ += piece.text.size();
      batch_.push_back(std::move(piece));
      share_of_.push_back(share_);
      if (!spare_texts_.empty()) {
        piece.text = std::move(spare_texts_.back());
        spare_texts_.pop_back();
      }
      to_val_.push_back(side);
      if (batch_bytes_ >= block_bytes_) {
        flush([&] { reader.read_ahead(block_bytes_); });
        progress(reader.bytes_read());
      }
    }
    if (reader.hashes_file())
      sources.push_back({index, reader.sha256()});
    else if (part.begin == 0)
      hashes.add(index, file);  // the file goes on in another rank's share
    if (reader.skipped_lines() > 0 && skipped_lines == 0) {
      first_skipped = reader.first_skipped();
      first_skipped_share = share_;
    }
    skipped_lines += reader.skipped_lines();
  }

  // Ids made by another tool, copied as they are: the file is one document,
  // with no end-of-text token added (llm.c's shards hold their own).
  void add_token_file(const std::string& file, std::uint32_t index,
                      const std::function<void(std::uint64_t)>& progress) {
    drain();
    TokenFileReader reader(file, vocab_size_);
    const bool to_val = by_documents_ && in_validation(document_start(file), spec_.val_fraction);
    std::vector<std::int32_t> ids;
    while (reader.next(ids, block_bytes_ / sizeof(std::int32_t))) {
      spool(to_val, share_, [&](TokenSpool& spool) { spool.append(ids); });
      progress(reader.bytes_read());
    }
    ++documents;
    bytes += reader.bytes_read();
    sources.push_back({index, reader.sha256()});
  }

  // Tokenizes what is read and waiting and spools it. BPE's ids are spooled
  // a batch later, beside the next batch's encoding, as is read_ahead (the
  // next block's reading): the threads wait for neither.
  void flush(const std::function<void()>& read_ahead = {}) {
    std::vector<std::string_view> texts;
    for (const DocumentPiece& piece : batch_) texts.push_back(piece.text);
    if (bytes_are_ids_) {  // .gz and JSON Lines: no eot_ between documents
      for (std::size_t i = 0; i < texts.size(); ++i) {
        spool(to_val_[i], share_of_[i], [&](TokenSpool& spool) {
          spool.append_bytes({reinterpret_cast<const unsigned char*>(texts[i].data()), texts[i].size()});
        });
        if (batch_[i].last) ++documents;
        bytes += texts[i].size();
      }
      if (read_ahead) read_ahead();
    } else {
      Encoded batch;
      for (std::size_t i = 0; i < batch_.size(); ++i) {
        batch.last.push_back(batch_[i].last);
        batch.bytes.push_back(texts[i].size());
      }
      batch.to_val = std::move(to_val_);
      batch.share = std::move(share_of_);
      batch.ids = encode_each(*tok_, texts, [&] {
        spool_encoded(encoded_);
        if (read_ahead) read_ahead();
      });
      encoded_ = std::move(batch);
    }
    for (DocumentPiece& piece : batch_) spare_texts_.push_back(std::move(piece.text));
    batch_.clear();
    to_val_.clear();
    share_of_.clear();
    batch_bytes_ = 0;
  }

  // Everything read, in the spools.
  void drain() {
    flush();
    spool_encoded(encoded_);
  }


  // Byte-level plain text is its own ids: the part is read from the file
  // where its chunks are made, and here only for the file's hash.
  void add_text_bytes(const std::string& file, std::uint32_t index, const CorpusPart& part,
                      const std::function<void(std::uint64_t)>& progress) {
    drain();
    require_regular_file(file, "input file");
    const bool to_val = by_documents_ && in_validation(document_start(file), spec_.val_fraction);
    if (part.end > part.begin) segments_[to_val].push_back({share_, index, part.begin, part.end});
    std::error_code ec;
    if (part.end >= std::filesystem::file_size(file, ec)) ++documents;  // the part ends the document
    bytes += part.end - part.begin;
    direct_bytes += part.end - part.begin;
    if (part.begin == 0) hashes.add(index, file);
    progress(part.end - part.begin);  // read, but done only as its chunks are written
  }

  const TokenSpool& train() const { return train_; }
  const TokenSpool* val() const { return val_ ? &*val_ : nullptr; }

  // What rank 0 needs of this share: the counts and the sources' hashes.
  std::string report() const {
    Packed packed;
    packed.put(bytes).put(documents).put(skipped_lines).put(first_skipped).put(first_skipped_share);
    packed.put(sources.size() + hashes.done.size());
    for (const auto& [file, sha] : sources) packed.put(file).put(sha);
    for (const auto& [file, sha] : hashes.done) packed.put(file).put(sha);
    return packed.bytes();
  }

  // Where each split's tokens of this share are, in order, for every rank.
  std::string segments() const {
    Packed packed;
    for (const auto& split : segments_) {
      packed.put(split.size());
      for (const Segment& s : split) packed.put(s.share).put(s.file).put(s.begin).put(s.end);
    }
    return packed.bytes();
  }

  std::uint64_t bytes = 0, documents = 0, skipped_lines = 0;
  std::uint64_t direct_bytes = 0;  // of them, byte-level text read where it lies
  FileHashes hashes;               // of the files this share starts and does not read whole
  std::string first_skipped;
  std::uint64_t first_skipped_share = 0;  // the share first_skipped is in
  std::vector<std::pair<std::uint32_t, std::string>> sources;  // file index, sha256

  // The text read at once: 16 MiB, or 8 MiB a thread on more than 2.
  static std::size_t block_bytes(const PrepareConfig& spec) {
    return spec.block_bytes > 0 ? spec.block_bytes
                                : std::max<std::size_t>(16, 8 * omp_get_max_threads()) << 20;
  }

 private:
  const PrepareConfig& spec_;
  std::int64_t eot_;
  int vocab_size_;
  std::unique_ptr<Tokenizer> tok_;
  bool bytes_are_ids_, by_documents_;
  std::size_t block_bytes_;
  TokenSpool train_;
  std::optional<TokenSpool> val_;
  // A batch tokenized, to spool: each piece's ids, side, whether it ends its
  // document, and its bytes of text.
  struct Encoded {
    std::vector<PieceIds> ids;
    std::vector<std::uint64_t> share;
    std::vector<char> to_val, last;
    std::vector<std::size_t> bytes;
  };
  Encoded encoded_;  // BPE's last batch, not yet spooled

  void spool_encoded(Encoded& batch) {
    for (std::size_t i = 0; i < batch.ids.size(); ++i) {
      spool(batch.to_val[i], batch.share[i], [&](TokenSpool& spool) {
        for (const auto& piece : batch.ids[i]) spool.append(piece);
        if (batch.last[i] && eot_ >= 0) {  // between documents
          const auto eot = static_cast<std::int32_t>(eot_);
          spool.append({&eot, 1});
        }
      });
      if (batch.last[i]) ++documents;
      bytes += batch.bytes[i];
    }
    batch = Encoded();
  }

  // The pieces read and not yet tokenized, each with its document's side
  // and its share of the plan.
  std::vector<DocumentPiece> batch_;
  std::vector<char> to_val_;
  std::vector<std::uint64_t> share_of_;
  std::uint64_t share_ = 0;  // of what add() reads
  std::size_t batch_bytes_ = 0;
  // The texts of the last batch, kept to be read into: a fresh block's
  // pages would each fault on one thread, and their unmapping stall the rest.
  std::vector<std::string> spare_texts_;
  // Each split's tokens of this share, in order (Segment).
  std::vector<Segment> segments_[2];

  // Appends to a split's spool through add(spool), noting where they went.
  template <typename Add>
  void spool(bool to_val, std::uint64_t share, Add add) {
    TokenSpool& into = to_val ? *val_ : train_;
    const std::uint64_t before = into.size();
    add(into);
    std::vector<Segment>& split = segments_[to_val];
    if (into.size() == before) return;
    if (!split.empty() && split.back().share == share && split.back().file == Segment::kSpool &&
        split.back().end == before)
      split.back().end = into.size();
    else
      split.push_back({share, Segment::kSpool, before, into.size()});
  }
};

}  // namespace

namespace {

// Rank 0's progress reports on its share. Bytes are done once tokenized into
// a spool, or, for byte-level text read where it lies, once the chunk rounds
// have written their share of the chunks.
struct ProgressReports {
  std::function<void(const PrepareProgress&)> report;
  double t0 = 0;
  bool root = false;
  PrepareProgress at;
  void operator()() {
    at.seconds = omp_get_wtime() - t0;
    if (report && root) report(at);
  }
};

// Every rank's shares of the tokens, in its spools: share `rank`, or, taken
// (plan.taken), the next share from counter 0 of `taking` while any is left;
// counters 1 and 2 then add up every rank's bytes and documents done, so
// that rank 0's progress is the whole corpus's.
ShareTokenizer tokenize_share(const PrepareConfig& spec, const TokenizerSpec& tokenizer, const Plan& plan,
                              const Comm& comm, const NodeCounters* taking, ProgressReports& progress) {
  std::optional<ShareTokenizer> share;
  PrepareProgress& at = progress.at;
  at.ranks = taking ? 1 : comm.size();
  if (taking)
    for (std::uint64_t s = 0; s < plan.shares.size(); ++s) at.bytes += plan.bytes(s);
  else
    at.bytes = plan.bytes(static_cast<std::uint64_t>(comm.rank()));
  // The threads first: libgomp exits when it cannot make one, where a
  // block or the vocabulary that cannot be had is std::bad_alloc, named below.
  int threads = 0;
#pragma omp parallel
#pragma omp single
  threads = omp_get_num_threads();
  (void)threads;
  collectively(comm, [&] {
    std::uint64_t before = 0;                   // bytes of the parts done
    std::uint64_t added_bytes = 0, added_documents = 0;  // to taking's counters
    const auto report = [&](std::uint64_t bytes) {
      at.bytes_done = bytes;
      at.documents = share->documents;
      if (taking) {
        at.bytes_done = taking->fetch_add(1, bytes - added_bytes) + bytes - added_bytes;
        at.documents = taking->fetch_add(2, share->documents - added_documents) + share->documents - added_documents;
        added_bytes = bytes;
        added_documents = share->documents;
      }
      progress();
    };
    // Named if even the share's vocabulary and spools cannot be had.
    const std::string* file = plan.files.size() == 1 ? &plan.files[0] : nullptr;
    try {
      share.emplace(spec, tokenizer, comm.rank());
      const auto tokenize = [&](std::uint64_t s) {
        for (const CorpusPart& part : plan.shares.at(s)) {
          file = &plan.files[part.file];
          share->add(*file, part.file, part, s, [&](std::uint64_t read) { report(before + read - share->direct_bytes); });
          before += part.end - part.begin;
        }
      };
      if (taking)
        for (std::uint64_t s = taking->fetch_add(0, 1); s < plan.shares.size(); s = taking->fetch_add(0, 1)) tokenize(s);
      else
        tokenize(static_cast<std::uint64_t>(comm.rank()));
      share->drain();
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("out of memory: cannot tokenize " + (file ? *file : std::string("the corpus")) +
                        " in blocks of " + format_bytes(ShareTokenizer::block_bytes(spec)) + " on " +
                        std::to_string(omp_get_max_threads()) +
                        " threads: give the process more memory, or fewer threads (OMP_NUM_THREADS)");
    }
    report(before - share->direct_bytes);
  });
  return std::move(*share);
}

// The dataset's two splits as token streams over every rank's segments,
// joined in the order of the plan's shares (the tail held out for val_split
// tail), with the spools and input files they read.
class JoinedSplits {
 public:
  JoinedSplits(const PrepareConfig& spec, const Plan& plan, const ShareTokenizer& share,
               const std::vector<std::string>& segments, int rank) {
    const std::size_t element = share.train().element_size();
    const auto source_of = [&](int r, int split, const Segment& s) -> const TokenBytes* {
      if (s.file != Segment::kSpool) return &inputs_.try_emplace(s.file, plan.files.at(s.file)).first->second;
      if (r == rank) return split == 0 ? &share.train() : share.val();
      auto at = others_.find({r, split});
      if (at == others_.end()) {
        const std::string name = (split == 0 ? "train.r" : "val.r") + std::to_string(r);
        try {
          at = others_.emplace(std::pair(r, split), TokenSpool::open(spec.out, name, element)).first;
        } catch (const std::exception& e) {
          throw std::runtime_error(e.what() + std::string(": ") + kSharedOut);
        }
      }
      return &at->second;
    };
    // Each share is one rank's, its segments in order: a stable sort by share.
    std::vector<std::pair<std::uint64_t, SpoolRange>> pieces[2];
    for (std::size_t r = 0; r < segments.size(); ++r) {
      Unpacked in(segments[r]);
      for (int split = 0; split < 2; ++split)
        for (std::uint64_t i = in.number(); i > 0; --i) {
          Segment s;
          s.share = in.number();
          s.file = in.number();
          s.begin = in.number();
          s.end = in.number();
          pieces[split].push_back({s.share, {source_of(static_cast<int>(r), split, s), s.begin, s.end}});
        }
    }
    for (int split = 0; split < 2; ++split) {
      std::ranges::stable_sort(pieces[split], {}, &std::pair<std::uint64_t, SpoolRange>::first);
      std::vector<SpoolRange> ranges;
      for (const auto& piece : pieces[split]) ranges.push_back(piece.second);
      splits[split] = TokenStream(ranges);
    }
    if (spec.val_split == "tail") {
      const std::uint64_t all = splits[0].size();
      const auto n_val = static_cast<std::uint64_t>(static_cast<double>(all) * spec.val_fraction);
      splits[1] = splits[0].slice(all - n_val, all);
      splits[0] = splits[0].slice(0, all - n_val);
    }
  }
  JoinedSplits(const JoinedSplits&) = delete;
  JoinedSplits& operator=(const JoinedSplits&) = delete;

  TokenStream splits[2];  // train, val

 private:
  std::map<std::pair<int, int>, TokenSpool> others_;  // the other ranks' spools, by (rank, split)
  std::map<std::uint64_t, FileTokens> inputs_;        // byte-level text files, by index
};

// Chunks filtered a round at a time and written by rank 0's main thread
// while the next round is filtered: nothing waits in a spool. On one node
// every thread of every rank takes the round's chunks one at a time from a
// counter they share (NodeCounters), so rank 0's writing, a rank's hashing
// or a core slowed by a neighbour costs no one a wait. Across nodes each
// rank filters a share in proportion to its speed so far.
class ChunkRounds {
  // A rank's chunks of a round that begins at chunk `begin`: filtered[c -
  // begin] is chunk c's filter_token_chunk, empty where another rank took c.
  struct Taken {
    std::uint64_t begin = 0;
    std::vector<std::vector<unsigned char>> filtered;
    std::uint64_t count() const {
      return static_cast<std::uint64_t>(std::ranges::count_if(filtered, [](const auto& c) { return !c.empty(); }));
    }
  };
  struct Round {
    Taken own;                             // rank 0's
    std::vector<std::string_view> others;  // every rank's, packed (rank 0's empty): views of received_
  };

 public:
  ChunkRounds(const TokenStream (&splits)[2], const Comm& comm)
      : splits_(splits), comm_(comm), weights_(static_cast<std::size_t>(comm.size()), 1.0) {
    first_val_ = token_chunks(splits[0].size());
    chunks_ = first_val_ + token_chunks(splits[1].size());
    std::uint64_t threads = 0;
    for (const std::uint64_t t : comm.all_gather(static_cast<std::uint64_t>(omp_get_max_threads()),
                                                 Collective::prepare))
      threads += t;
    const std::uint64_t most = kMaxRoundBytes / (token_chunk_tokens() * splits[0].element_size());
    const std::uint64_t per_thread =
        comm.size() > 1 ? std::clamp(chunks_ / kRounds / threads, kChunksPerThread, kMostChunksPerThread)
                        : kChunksPerThread;
    round_ = std::clamp<std::uint64_t>(per_thread * threads, 1, most);
    // A round's counter, and the next round's, set while this one runs.
    if (comm.size() > 1 && comm.on_one_node()) counters_.emplace(comm, 2, Collective::prepare);
  }

  // Collective; out is rank 0's, null elsewhere. Beside the rounds, this
  // rank hashes its files a slice a round; after each round, written(share
  // of the chunks written).
  void run(TokenDatasetWriter* out, const std::string& dataset, FileHashes& hashes,
           const std::function<void(double)>& written_share) {
    Round written;  // the round before's chunks, on rank 0
    for (std::uint64_t begin = 0, round = 0;; begin += round_, ++round) {
      const std::uint64_t end = std::min(chunks_, begin + round_);
      const std::uint64_t rounds_left = (chunks_ - std::min(chunks_, begin) + round_ - 1) / round_ + 1;
      const std::uint64_t hash_bytes = (hashes.bytes_left() + rounds_left - 1) / rounds_left;
      Taken mine;
      double busy = 0;
      collectively(comm_, [&] {
        const double t0 = omp_get_wtime();
        mine = filter(begin, end, round, [&] {
          if (out) write(written, *out);
          hashes.hash(begin >= chunks_ ? ~std::uint64_t{0} : hash_bytes);
        }, dataset);
        busy = omp_get_wtime() - t0;
      });
      const std::uint64_t done = std::min(begin, chunks_);  // the last round's begin is past the end
      written_share(chunks_ == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(chunks_));
      if (begin >= chunks_) return;
      // Rank 0 keeps its own chunks as they are; the others' come packed.
      if (!comm_.is_root()) pack(mine, sent_);
      written.others = comm_.gather_text(comm_.is_root() ? std::string_view() : sent_, received_, Collective::prepare);
      if (!counters_)
        reweigh(comm_.all_gather(busy, Collective::prepare), comm_.all_gather(mine.count(), Collective::prepare));
      if (out) written.own = std::move(mine);
    }
  }

 private:
  // Chunks a thread filters in a round, and a round's most tokens in bytes:
  // rank 0 holds two rounds of filtered chunks, at most 2 x 64 MiB. With
  // other ranks a round waits on collectives, so a long corpus has longer
  // rounds, up to 1,024 chunks a thread, as long as there are kRounds of
  // them for shares by speed to settle: 2 ranks x 1 thread ran 2 GB of bytes
  // 0.4-0.9 s (of 11) faster with 1,024 than with 256, and 200 MB of BPE
  // (3,170 chunks) 0.6-1.2 s slower in two rounds than in six.
  static constexpr std::uint64_t kChunksPerThread = 256, kMostChunksPerThread = 1024, kRounds = 64,
                                 kMaxRoundBytes = 64u << 20;

  // Across nodes, this rank's chunks of [begin, end), by the weights.
  std::pair<std::uint64_t, std::uint64_t> share(std::uint64_t begin, std::uint64_t end) const {
    if (begin >= end) return {end, end};
    double total = 0, before = 0;
    for (const double w : weights_) total += w;
    for (int r = 0; r < comm_.rank(); ++r) before += weights_[static_cast<std::size_t>(r)];
    const auto at = [&](double w) {
      return begin + static_cast<std::uint64_t>(static_cast<double>(end - begin) * w / total + 0.5);
    };
    return {at(before), comm_.rank() + 1 == comm_.size() ? end : at(before + weights_[static_cast<std::size_t>(comm_.rank())])};
  }

  // The same on every rank: each rank's weight is its speed so far (chunks
  // a second busy), which settles where one round's noise would not.
  void reweigh(const std::vector<double>& busy, const std::vector<std::uint64_t>& chunks) {
    for (std::size_t r = 0; r < weights_.size(); ++r) {
      busy_[r] += busy[r];
      chunks_done_[r] += chunks[r];
    }
    for (std::size_t r = 0; r < weights_.size(); ++r)
      if (chunks_done_[r] == 0 || busy_[r] <= 0) return;  // too little to tell
    for (std::size_t r = 0; r < weights_.size(); ++r)
      weights_[r] = static_cast<double>(chunks_done_[r]) / busy_[r];
  }

  // Filters this rank's chunks of round `round`, [begin, end), on all
  // threads, each taking the next chunk when it is free; meanwhile one
  // thread does `beside`.
  Taken filter(std::uint64_t begin, std::uint64_t end, std::uint64_t round, const std::function<void()>& beside,
               const std::string& dataset) {
    Taken taken{begin, std::vector<std::vector<unsigned char>>(end - std::min(begin, end))};
    auto& filtered = taken.filtered;
    const std::size_t counter = round % 2;
    // Every rank is past the round before, the last to use the other counter.
    if (counters_ && comm_.is_root()) counters_->store(1 - counter, begin + round_);
    // Not a structured binding: clang 14 cannot capture one.
    const std::pair<std::uint64_t, std::uint64_t> range = counters_ ? std::pair(begin, end) : share(begin, end);
    const std::uint64_t last = range.second;
    std::atomic<std::uint64_t> next_of_share{range.first};
    const auto take = [&] { return counters_ ? counters_->fetch_add(counter, 1) : next_of_share.fetch_add(1); };
    std::exception_ptr failure;
    const auto keep = [&] {
#pragma omp critical(cllm_chunk_rounds)
      if (!failure) failure = std::current_exception();
    };
#pragma omp parallel
    {
#pragma omp master  // no barrier: it joins the taking when done; HDF5 stays on one thread
      try {
        beside();
      } catch (...) {
        keep();
      }
      for (std::uint64_t c = take(); c < last; c = take()) {
        try {
          const bool val = c >= first_val_;
          filtered[c - begin] = filter_token_chunk(splits_[val], val ? c - first_val_ : c);
        } catch (...) {
          keep();
        }
      }
    }
    try {
      if (failure) std::rethrow_exception(failure);
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("out of memory: cannot compress the token chunks of " + dataset + " on " +
                        std::to_string(omp_get_max_threads()) +
                        " threads: give the process more memory, or fewer threads (OMP_NUM_THREADS)");
    }
    return taken;
  }

  // For rank 0: how many chunks, then each one's number and bytes.
  static void pack(const Taken& taken, std::string& into) {
    Packed packed(std::move(into));
    packed.put(taken.count());
    for (std::size_t i = 0; i < taken.filtered.size(); ++i)
      if (!taken.filtered[i].empty())
        packed.put(taken.begin + i).put({reinterpret_cast<const char*>(taken.filtered[i].data()), taken.filtered[i].size()});
    into = std::move(packed).bytes();
  }

  // In the chunks' order, whichever rank filtered them.
  void write(const Round& round, TokenDatasetWriter& out) const {
    const std::uint64_t begin = round.own.begin;
    std::vector<std::span<const unsigned char>> chunks(round.own.filtered.size());
    for (std::size_t i = 0; i < chunks.size(); ++i) chunks[i] = round.own.filtered[i];
    for (std::size_t r = 1; r < round.others.size(); ++r) {
      Unpacked in(round.others[r]);
      for (std::uint64_t n = in.number(); n > 0; --n) {
        const std::uint64_t c = in.number();
        const std::string_view chunk = in.view();
        chunks.at(c - begin) = {reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size()};
      }
    }
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      if (chunks[i].empty()) throw std::logic_error("token chunk " + std::to_string(begin + i) + " filtered by no rank");
      const std::uint64_t c = begin + i;
      const bool val = c >= first_val_;
      out.write_chunk(val, val ? c - first_val_ : c, chunks[i]);
    }
  }

  const TokenStream (&splits_)[2];
  const Comm& comm_;
  std::optional<NodeCounters> counters_;  // on one node: the chunks' counters, by round % 2
  std::string sent_, received_;  // kept from round to round, with their room
  std::vector<double> weights_;  // across nodes: of the ranks' shares of a round
  std::vector<double> busy_ = std::vector<double>(weights_.size(), 0.0);            // seconds, each rank's
  std::vector<std::uint64_t> chunks_done_ = std::vector<std::uint64_t>(weights_.size(), 0);  // so far
  std::uint64_t first_val_ = 0, chunks_ = 0, round_ = 1;
};

// Rank 0's summary of the ranks' reports, and the sources' hashes.
PrepareSummary summarize(const Plan& plan, const std::vector<std::string>& reports,
                         std::vector<DatasetSource>& sources) {
  PrepareSummary summary;
  std::uint64_t first_skipped_share = 0;
  sources.assign(plan.files.size(), {});
  for (std::size_t f = 0; f < plan.files.size(); ++f) sources[f].file = plan.files[f];
  for (const std::string& text : reports) {
    Unpacked report(text);
    summary.bytes += report.number();
    summary.documents += report.number();
    const std::uint64_t skipped = report.number();
    std::string first_skipped = report.text();
    const std::uint64_t share = report.number();
    if (skipped > 0 && (summary.skipped_lines == 0 || share < first_skipped_share)) {
      summary.first_skipped = std::move(first_skipped);  // the corpus's first, whichever rank read it
      first_skipped_share = share;
    }
    summary.skipped_lines += skipped;
    for (std::uint64_t i = report.number(); i > 0; --i) {
      const std::uint64_t file = report.number();
      sources.at(file).sha256 = report.text();
    }
  }
  return summary;
}

// The hashes of the blocks of the dataset's checksum (file_checksum.h),
// rank 0's: every rank reads back an even share of the file, which is in a
// folder they share (their spools are there too), so that tens of GB are
// read at all the ranks' speed, not at rank 0's alone.
std::vector<std::string> block_hashes_on_all_ranks(const Comm& comm, const std::filesystem::path& file,
                                                   std::uint64_t bytes) {
  const auto ranks = static_cast<std::uint64_t>(comm.size()), rank = static_cast<std::uint64_t>(comm.rank());
  const std::uint64_t blocks = checksum_blocks(bytes);
  std::string mine;
  collectively(comm, [&] {
    std::error_code ec;
    if (const std::uint64_t seen = std::filesystem::file_size(file, ec); ec || seen != bytes)
      throw std::runtime_error(file.string() + ": " + (ec ? ec.message() : std::to_string(seen) + " bytes") +
                               " here, " + std::to_string(bytes) + " bytes on rank 0: " + kSharedOut);
    for (const std::string& hash : file_block_hashes(file, blocks * rank / ranks, blocks * (rank + 1) / ranks))
      mine += hash;
  });
  std::vector<std::string> all;
  for (const std::string& part : comm.gather_text(mine, Collective::prepare))
    for (std::size_t at = 0; at < part.size(); at += kSha256HexChars) all.push_back(part.substr(at, kSha256HexChars));
  return all;
}

}  // namespace

PrepareSummary prepare_dataset(const PrepareConfig& spec, const Comm& comm,
                               const std::function<void(const PrepareProgress&)>& progress) {
  ProgressReports reports{progress, omp_get_wtime(), comm.is_root(), {}};
  TokenizerSpec tokenizer;
  collectively(comm, [&] {
    spec.validate();
    tokenizer = tokenizer_spec(spec.tokenizer, spec.vocab_dir);
  });
  const Plan plan = plan_on_rank_zero(spec, tokenizer.name == "byte", comm);
  std::optional<NodeCounters> taking;  // the next share, bytes and documents done
  if (plan.taken) taking.emplace(comm, 3, Collective::prepare);
  ShareTokenizer share = tokenize_share(spec, tokenizer, plan, comm, taking ? &*taking : nullptr, reports);
  taking.reset();
  const std::vector<std::string> segments = all_texts(comm, share.segments());
  // The spools stay until every rank is done with them.
  std::optional<JoinedSplits> joined;
  std::optional<TokenDatasetWriter> out;
  collectively(comm, [&] {
    joined.emplace(spec, plan, share, segments, comm.rank());
    if (comm.is_root())
      out.emplace(spec.out, joined->splits[0].size(), joined->splits[1].size(), tokenizer, spec.val_fraction);
  });
  const std::uint64_t spooled = reports.at.bytes_done;
  ChunkRounds(joined->splits, comm)
      .run(out ? &*out : nullptr, spec.out, share.hashes, [&](double written) {
        reports.at.bytes_done = spooled + static_cast<std::uint64_t>(static_cast<double>(share.direct_bytes) * written);
        reports();
      });
  const std::vector<std::string> shares = comm.gather_text(share.report(), Collective::prepare);
  PrepareSummary summary;
  std::uint64_t file_bytes = 0;
  collectively(comm, [&] {
    if (!out) return;
    std::vector<DatasetSource> sources;
    summary = summarize(plan, shares, sources);
    file_bytes = std::filesystem::file_size(out->close(sources));
  });
  comm.broadcast_value(file_bytes, Collective::prepare);
  const std::vector<std::string> hashes = block_hashes_on_all_ranks(comm, temporary_name(spec.out), file_bytes);
  collectively(comm, [&] {
    if (!out) return;
    out->commit_hashed(hashes);
    summary.train_tokens = joined->splits[0].size();
    summary.val_tokens = joined->splits[1].size();
    summary.tokenizer = tokenizer.name;
    summary.vocab_size = tokenizer.vocab_size;
    summary.seconds = omp_get_wtime() - reports.t0;
  });
  reports.at.bytes_done = reports.at.bytes;
  reports.at.done = true;
  reports();
  return summary;
}

}  // namespace cllm
