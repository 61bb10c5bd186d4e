// `cllm prepare` as a library call: text files tokenized (in order, on all
// cores) into an HDF5 token dataset (dataset_file.h) with a validation tail.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/dist/comm.h"

namespace cllm {

struct PrepareConfig {
  std::vector<std::string> inputs;  // files, folders or glob patterns, in order (expand_inputs)
  std::string out = "data/austen.h5";
  std::string tokenizer = "byte";   // or "gpt2-bpe"
  std::string vocab_dir = "data/gpt2-bpe";  // gpt2-bpe's encoder.json and vocab.bpe
  double val_fraction = 0.1;        // share of the tokens held out for validation
  // tail: the last val_fraction of the tokens; documents: whole documents,
  // chosen by content (in_validation), about val_fraction of them.
  std::string val_split = "tail";
  std::string jsonl_field;  // non-empty: the inputs are JSON Lines, a document in this field
  // Text read and tokenized at a time (0: 8 MiB a thread, at least 16 MiB);
  // tests make it small to cut Austen into many blocks.
  std::size_t block_bytes = 0;

  // Throws SettingError naming the setting: val_fraction outside [0, 0.5],
  // or out among the inputs (the same file under another name included:
  // the dataset would replace it).
  void validate() const;
};

// How far prepare_dataset has got, over all inputs.
struct PrepareProgress {
  std::uint64_t bytes_done = 0, bytes = 0;  // of the inputs, tokenized (byte-level text: written) / in all
  std::uint64_t documents = 0;              // done
  double seconds = 0;                       // since it began
  bool done = false;                        // the last report: the dataset written
  int ranks = 1;  // more: these are rank 0's share of the inputs
};

// "prepare: 120 of 2,000 MB (6%), 3 documents, 95.2 MB/s, ETA 20s": one line
// of a progress report, without a line end.
std::string progress_line(const PrepareProgress& p);

struct PrepareSummary {
  std::size_t bytes = 0;  // of all inputs (decompressed)
  std::uint64_t documents = 0;
  std::uint64_t skipped_lines = 0;  // JSONL lines that held no document
  std::string first_skipped;        // "FILE:LINE: why"
  std::size_t train_tokens = 0, val_tokens = 0;
  std::string tokenizer;  // its name
  int vocab_size = 0;
  double seconds = 0;     // wall time
};

// Validates spec, tokenizes the inputs' documents in order (each followed
// by the end-of-text token where the tokenizer has one), holds out
// validation tokens as val_split says and writes the dataset to spec.out
// atomically. Collective: each rank of comm tokenizes a share of the inputs
// (share_corpus) and filters shares of the chunks, a round at a time, and
// rank 0 writes the file as they come; the dataset is the same for any
// number of ranks and threads. Memory stays bounded: the tokens wait in
// spools beside spec.out, a folder every rank must see. progress, when
// given, is called on rank 0 after each block (a few MB), after each round
// of chunks and once more when the dataset is written. Returns the summary
// on rank 0. Throws CollectiveFailure on every rank, naming the file at
// fault where it failed.
PrepareSummary prepare_dataset(const PrepareConfig& spec, const Comm& comm,
                               const std::function<void(const PrepareProgress&)>& progress = {});
// The same on one process.
inline PrepareSummary prepare_dataset(const PrepareConfig& spec) { return prepare_dataset(spec, Comm()); }

// cllm prepare under mpirun: prepare_dataset on every rank, with rank 0's
// progress on stderr: one line updated in place on a terminal, else a line
// every 10 seconds (a batch job's log). Returns what rank 0 prints
// ("prepare: OUT: BYTES bytes -> N train + M val tokens ...", "" elsewhere).
std::string prepare_command(const PrepareConfig& spec, const Comm& comm);

}  // namespace cllm
