// `cllm import` and `cllm export` as library calls: a GPT-2 model from
// Hugging Face's or llm.c's files into a cllm checkpoint at step 0, and a
// checkpoint's model back out (gpt2_weights.h has the formats).
#pragma once

#include <string>

#include "cllm/dist/comm.h"
#include "cllm/model/model_config.h"

namespace cllm {

struct ImportConfig {
  std::string source;  // a Hugging Face folder (config.json, model.safetensors) or an llm.c .bin
  std::string out;     // the checkpoint to write
  std::string vocab_dir = "data/gpt2-bpe";  // GPT-2 BPE's encoder.json and vocab.bpe

  // Throws SettingError naming the setting.
  void validate() const;
};

struct ImportSummary {
  std::string format;  // "Hugging Face" or "llm.c"
  ModelConfig model;
  double seconds = 0;
};

// Reads the source, checks it, writes the checkpoint (step 0, no optimizer
// state, the GPT-2 BPE tokenizer, "imported_from" recorded). A source it
// cannot import throws std::invalid_argument naming the file and the
// tensor or field at fault (the command's error, exit 2); writing the
// checkpoint throws std::runtime_error (exit 1), memory OutOfMemory.
ImportSummary import_model(const ImportConfig& spec);

// cllm import under mpirun: spec checked on every rank, the model imported
// on rank 0. Returns what rank 0 prints ("import: SOURCE -> OUT: llm.c
// model, 12 layers, ...", "" elsewhere); failures throw CollectiveFailure.
std::string import_command(const ImportConfig& spec, const Comm& comm);

struct ExportConfig {
  std::string checkpoint;
  std::string out;            // a folder (hf) or a file (llmc)
  std::string format = "hf";  // hf or llmc

  void validate() const;
};

// Writes the checkpoint's model in the chosen format. Throws
// std::runtime_error naming the file at fault.
void export_model(const ExportConfig& spec);

// cllm export, as import_command: rank 0 prints "export: CHECKPOINT -> OUT (hf)".
std::string export_command(const ExportConfig& spec, const Comm& comm);

}  // namespace cllm
