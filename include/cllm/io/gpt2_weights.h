// GPT-2 weights in the files other tools use: Hugging Face's GPT2LMHeadModel
// folder (config.json + model.safetensors, as save_pretrained writes it) and
// llm.c's model file (gpt2_124M.bin). cllm's model is GPT-2's exactly (tanh
// GELU, LayerNorm epsilon 1e-5, tied head, 1/sqrt(head size) attention);
// a file of anything else is refused, naming the field or tensor.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "cllm/data/tokenizer_spec.h"
#include "cllm/model/model.h"

namespace cllm {

// The model a Hugging Face folder holds. Tensor names with or without the
// "transformer." prefix; Conv1D weights, stored (in, out), are transposed;
// the causal-mask buffers (attn.bias, attn.masked_bias) are skipped; a
// lm_head.weight must equal wte. F32, BF16 and F16 tensors.
std::unique_ptr<Model> read_hf_gpt2(const std::filesystem::path& folder);

// config.json's GPT-2 fields as cllm's model shape; throws
// std::runtime_error "PATH: FIELD ..." for a field cllm does not compute the
// same way.
ModelConfig read_hf_config(const std::filesystem::path& file);

// Writes config.json, model.safetensors (F32, "transformer." names, no
// lm_head: it is wte), generation_config.json and, for GPT-2 BPE,
// vocab.json and merges.txt into folder (created if absent).
void write_hf_gpt2(const std::filesystem::path& folder, const Model& model,
                   const TokenizerSpec& tokenizer);

// llm.c's model file: a header of 256 int32 (magic 20240326, version 3 for
// fp32 or 5 for bf16, max T, V, L, NH, C, padded V), then every tensor of a
// kind for all layers together; the vocabulary's padding rows are dropped.
std::unique_ptr<Model> read_llmc_gpt2(const std::filesystem::path& file);

// Version 3 (fp32), the vocabulary padded to a multiple of 128 with zeros.
void write_llmc_gpt2(const std::filesystem::path& file, const Model& model);

// llm.c's header magic: read_llmc_gpt2 takes a file that starts with it.
bool is_llmc_model_file(const std::filesystem::path& file);

}  // namespace cllm
