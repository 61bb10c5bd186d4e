#include "cllm/app/model_transfer.h"

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "cllm/base/format.h"
#include "cllm/base/out_of_memory.h"
#include "cllm/base/read_file.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/gpt2_weights.h"
#include "on_rank_zero.h"

namespace cllm {

void ImportConfig::validate() const {
  require_setting(!source.empty(), "{source}: give a Hugging Face folder or an llm.c model file");
  require_setting(!out.empty(), "{out}: give the checkpoint file to write");
  std::error_code ec;
  require_setting(!std::filesystem::is_directory(out, ec),
                  "{out} " + SettingError::literal(out) + " is a folder; give a checkpoint file");
}

std::string import_command(const ImportConfig& spec, const Comm& comm) {
  const ImportSummary done = on_rank_zero(comm, spec, [&] { return import_model(spec); });
  if (!comm.is_root()) return "";
  return printf_string("import: %s -> %s: %s model, %d layers, %d heads, %d wide, %d positions, vocabulary %d "
                       "(%.2f s)\n",
                       spec.source.c_str(), spec.out.c_str(), done.format.c_str(), done.model.n_layer,
                       done.model.n_head, done.model.n_embd, done.model.seq_len, done.model.vocab_size,
                       done.seconds);
}

std::string export_command(const ExportConfig& spec, const Comm& comm) {
  on_rank_zero(comm, spec, [&] { return export_model(spec), true; });
  if (!comm.is_root()) return "";
  return "export: " + spec.checkpoint + " -> " + spec.out + " (" + spec.format + ")\n";
}

ImportSummary import_model(const ImportConfig& spec) {
  spec.validate();
  const auto start = std::chrono::steady_clock::now();
  ImportSummary summary;
  std::unique_ptr<Model> model;
  TokenizerSpec tokenizer;
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(spec.source, ec)) {
      summary.format = "Hugging Face";
      model = read_hf_gpt2(spec.source);
    } else if (!std::filesystem::exists(spec.source, ec)) {
      throw std::runtime_error(spec.source + ": no such folder or file");
    } else if (is_llmc_model_file(spec.source)) {
      summary.format = "llm.c";
      model = read_llmc_gpt2(spec.source);
    } else {
      throw std::runtime_error(spec.source + ": neither a Hugging Face folder (config.json, "
                               "model.safetensors) nor an llm.c model file (magic 20240326)");
    }
    summary.model = model->config();
    tokenizer = tokenizer_spec("gpt2-bpe", spec.vocab_dir);
    if (summary.model.vocab_size < tokenizer.vocab_size)
      throw std::runtime_error(spec.source + ": a vocabulary of " + std::to_string(summary.model.vocab_size) +
                               " tokens, fewer than GPT-2 BPE's " + std::to_string(tokenizer.vocab_size));
  } catch (const OutOfMemory&) {
    throw;
  } catch (const std::runtime_error& e) {
    // A source cllm cannot import (malformed, hostile, or a model it computes
    // otherwise) fails as a bad argument does, exit 2: nothing was written,
    // and only another source will do.
    throw std::invalid_argument(e.what());
  }

  // No optimizer state: a run starts from these weights with its own AdamW.
  const RunSettings settings = {
      {"seed", std::int64_t{0}},
      {"imported_from", summary.format + " " + std::filesystem::absolute(spec.source).string()}};
  write_checkpoint(spec.out, *model, nullptr, TrainingState{}, tokenizer, settings);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

void ExportConfig::validate() const {
  require_setting(!checkpoint.empty(), "{checkpoint}: give the checkpoint to export");
  require_setting(!out.empty(), "{out}: give the folder (hf) or file (llmc) to write");
  require_setting(format == "hf" || format == "llmc",
                  "{format}: '" + SettingError::literal(format) + "' is not hf or llmc");
}

void export_model(const ExportConfig& spec) {
  spec.validate();
  const CheckpointReader checkpoint(spec.checkpoint);
  const std::unique_ptr<Model> model = checkpoint.read_model();
  if (spec.format == "hf")
    write_hf_gpt2(spec.out, *model, checkpoint.header().tokenizer);
  else
    write_llmc_gpt2(spec.out, *model);
}

}  // namespace cllm
