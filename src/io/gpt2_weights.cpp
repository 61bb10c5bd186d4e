#include "cllm/io/gpt2_weights.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cllm/base/format.h"
#include "cllm/base/read_file.h"
#include "cllm/io/durable_file.h"
#include "cllm/io/mapped_file.h"
#include "cllm/io/safetensors.h"
#include "cllm/kernels/matmul.h"

namespace cllm {
namespace {

constexpr std::string_view kPrefix = "transformer.";
constexpr std::int32_t kLlmcMagic = 20240326;
constexpr int kLlmcHeaderInts = 256;

std::string_view without_prefix(std::string_view name) {
  return name.starts_with(kPrefix) ? name.substr(kPrefix.size()) : name;
}

// Hugging Face's GPT-2 keeps these four as Conv1D, weight (in, out); cllm's
// (and nanoGPT's, and llm.c's) are (out, in).
bool is_conv1d_weight(std::string_view name) {
  for (const char* suffix : {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"})
    if (name.ends_with(suffix)) return true;
  return false;
}

// h.<i>.attn.bias and h.<i>.attn.masked_bias: causal-mask buffers, not weights.
bool is_mask_buffer(std::string_view name) {
  return name.starts_with("h.") && (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias"));
}

// out (rows x cols) = in^T, in being (cols x rows).
void transpose(std::span<const float> in, std::size_t rows, std::size_t cols, std::span<float> out) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) out[r * cols + c] = in[c * rows + r];
}

void require_finite(std::span<const float> values, const std::string& name) {
  for (const float v : values)
    if (!std::isfinite(v)) throw std::runtime_error("tensor '" + name + "' holds NaN or infinity");
}

// ---- config.json

const nlohmann::json* field(const nlohmann::json& config, const char* name) {
  const auto it = config.find(name);
  return it == config.end() || it->is_null() ? nullptr : &*it;
}

int positive_int(const nlohmann::json& config, const char* name, int fallback) {
  const nlohmann::json* v = field(config, name);
  if (!v) return fallback;
  if (!v->is_number_integer() || *v < 1 || *v > std::numeric_limits<std::int32_t>::max())
    throw std::runtime_error(std::string(name) + " is " + v->dump() + ", not a positive integer");
  return v->get<int>();
}

void require_flag(const nlohmann::json& config, const char* name, bool expected, const char* why) {
  const nlohmann::json* v = field(config, name);
  if (!v) return;
  if (!v->is_boolean() || v->get<bool>() != expected)
    throw std::runtime_error(std::string(name) + " is " + v->dump() + ": " + why);
}

}  // namespace

ModelConfig read_hf_config(const std::filesystem::path& file) {
  const std::string text = read_file(file, "config file");
  try {
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(std::string("not JSON (") + e.what() + ")");
    }
    if (!config.is_object()) throw std::runtime_error("not a JSON object");
    if (const auto* v = field(config, "model_type"); v && *v != "gpt2")
      throw std::runtime_error("model_type is " + v->dump() + ", not \"gpt2\"");
    if (const auto* v = field(config, "architectures")) {
      const bool gpt2 = v->is_array() && std::any_of(v->begin(), v->end(), [](const nlohmann::json& a) {
                          return a == "GPT2LMHeadModel" || a == "GPT2Model";
                        });
      if (!gpt2) throw std::runtime_error("architectures is " + v->dump() + ", not GPT2LMHeadModel");
    }
    // GPT2Config's defaults: save_pretrained writes only what differs.
    ModelConfig m;
    m.vocab_size = positive_int(config, "vocab_size", 50257);
    m.seq_len = positive_int(config, "n_positions", 1024);
    m.n_layer = positive_int(config, "n_layer", 12);
    m.n_head = positive_int(config, "n_head", 12);
    m.n_embd = positive_int(config, "n_embd", 768);
    if (field(config, "n_ctx") && positive_int(config, "n_ctx", 0) != m.seq_len)
      throw std::runtime_error("n_ctx differs from n_positions");
    if (field(config, "n_inner") && positive_int(config, "n_inner", 0) != 4 * m.n_embd)
      throw std::runtime_error("n_inner is not 4 x n_embd, the MLP width cllm's model has");
    if (const auto* v = field(config, "activation_function");
        v && *v != "gelu_new" && *v != "gelu_pytorch_tanh")
      throw std::runtime_error("activation_function is " + v->dump() +
                               ": cllm's model computes GELU's tanh approximation (gelu_new)");
    if (const auto* v = field(config, "layer_norm_epsilon");
        v && (!v->is_number() || std::abs(v->get<double>() - 1e-5) > 1e-12))
      throw std::runtime_error("layer_norm_epsilon is " + v->dump() + ": cllm's LayerNorm uses 1e-5");
    require_flag(config, "tie_word_embeddings", true, "cllm's output head is the token embedding");
    require_flag(config, "scale_attn_weights", true, "cllm's attention scales by 1/sqrt(head size)");
    require_flag(config, "scale_attn_by_inverse_layer_idx", false,
                 "cllm's attention does not scale by the layer's index");
    require_flag(config, "add_cross_attention", false, "cllm's model has no cross-attention");
    try {
      m.validate();
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string("model shape: ") + e.what());
    }
    return m;
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(naming_file(file, e.what()));
  }
}

std::unique_ptr<Model> read_hf_gpt2(const std::filesystem::path& folder) {
  const ModelConfig config = read_hf_config(folder / "config.json");
  const std::filesystem::path path = folder / "model.safetensors";
  const SafetensorsFile file = SafetensorsFile::read(path);
  // The file must hold the model (2 bytes or more a weight) before a model
  // of config.json's size is allocated.
  std::size_t file_bytes = 0;
  for (const SafetensorsTensor& t : file.tensors()) file_bytes += t.end - t.begin;
  if (const std::size_t n = gpt_parameter_layout(config).numel(); 2 * n > file_bytes)
    throw std::runtime_error(naming_file(path, "holds " + std::to_string(file_bytes) + " bytes of tensors, "
                                         "too few for the " + std::to_string(n) +
                                         " parameters config.json describes"));
  auto model = std::make_unique<Model>(config);
  try {
    std::map<std::string, const SafetensorsTensor*, std::less<>> by_name;  // names without the prefix
    const SafetensorsTensor* lm_head = nullptr;
    for (const SafetensorsTensor& t : file.tensors()) {
      const std::string name(without_prefix(t.name));
      if (is_mask_buffer(name)) continue;
      if (name == "lm_head.weight") {
        lm_head = &t;
        continue;
      }
      if (!by_name.emplace(name, &t).second)
        throw std::runtime_error("tensor '" + name + "' appears with and without the transformer. prefix");
    }
    std::vector<float> scratch;
    for (const TensorSpec& spec : model->layout().tensors()) {
      const std::string_view name = without_prefix(spec.name);
      const auto it = by_name.find(name);
      if (it == by_name.end()) throw std::runtime_error("tensor '" + std::string(name) + "' is missing");
      const SafetensorsTensor& t = *it->second;
      const bool conv1d = is_conv1d_weight(name);
      std::vector<std::int64_t> expected = spec.shape;
      if (conv1d) std::reverse(expected.begin(), expected.end());
      if (t.shape != expected)
        throw std::runtime_error("tensor '" + std::string(name) + "' has shape " + shape_string(t.shape) +
                                 ", not " + shape_string(expected) + " as config.json makes it");
      std::span<float> out = model->tensor(spec.name);
      if (conv1d) {
        scratch.resize(out.size());
        file.read_floats(t, scratch);
        transpose(scratch, static_cast<std::size_t>(spec.shape[0]), static_cast<std::size_t>(spec.shape[1]), out);
      } else {
        file.read_floats(t, out);
      }
      require_finite(out, std::string(name));
      by_name.erase(it);
    }
    if (!by_name.empty())
      throw std::runtime_error("tensor '" + by_name.begin()->first + "' is not part of GPT-2's model");
    if (lm_head) {
      const std::span<const float> wte = model->tensor("transformer.wte.weight");
      if (lm_head->shape != std::vector<std::int64_t>{config.vocab_size, config.n_embd} ||
          !std::ranges::equal(file.to_floats(*lm_head), wte))
        throw std::runtime_error("lm_head.weight differs from wte.weight: an untied output head, "
                                 "which cllm's model does not have");
    }
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(naming_file(path, e.what()));
  }
  return model;
}

void write_hf_gpt2(const std::filesystem::path& folder, const Model& model,
                   const TokenizerSpec& tokenizer) {
  std::filesystem::create_directories(folder);
  const ModelConfig& m = model.config();
  const bool bpe = tokenizer.name == "gpt2-bpe";
  nlohmann::ordered_json config = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"vocab_size", m.vocab_size},
      {"n_positions", m.seq_len},
      {"n_ctx", m.seq_len},
      {"n_embd", m.n_embd},
      {"n_layer", m.n_layer},
      {"n_head", m.n_head},
      {"n_inner", nullptr},
      {"activation_function", "gelu_new"},
      {"layer_norm_epsilon", 1e-5},
      {"initializer_range", 0.02},
      {"resid_pdrop", 0.0},  // cllm trains without dropout
      {"embd_pdrop", 0.0},
      {"attn_pdrop", 0.0},
      {"scale_attn_weights", true},
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"tie_word_embeddings", true},
      {"use_cache", true},
      {"torch_dtype", "float32"}};
  nlohmann::ordered_json generation = {{"_from_model_config", true}};
  if (bpe) {
    for (auto* j : {&config, &generation}) {
      (*j)["bos_token_id"] = tokenizer.eot_token;
      (*j)["eos_token_id"] = tokenizer.eot_token;
    }
  }
  const auto write_text = [&](const char* name, const std::string& text) {
    write_durably(folder / name, {reinterpret_cast<const unsigned char*>(text.data()), text.size()});
  };
  write_text("config.json", config.dump(2) + "\n");
  write_text("generation_config.json", generation.dump(2) + "\n");
  if (bpe) {
    write_text("vocab.json", tokenizer.encoder_json);
    write_text("merges.txt", tokenizer.vocab_bpe);
  }

  std::vector<SafetensorsEntry> entries;
  for (const TensorSpec& spec : model.layout().tensors()) {
    std::vector<std::int64_t> shape = spec.shape;
    if (is_conv1d_weight(spec.name)) std::reverse(shape.begin(), shape.end());
    entries.push_back({spec.name, shape});
  }
  SafetensorsWriter out(folder / "model.safetensors", entries, {{"format", "pt"}});
  std::vector<float> scratch;
  for (const TensorSpec& spec : model.layout().tensors()) {
    const std::span<const float> values = model.tensor(spec.name);
    if (!is_conv1d_weight(spec.name)) {
      out.write(values);
      continue;
    }
    scratch.resize(values.size());  // (in, out) = values^T
    transpose(values, static_cast<std::size_t>(spec.shape[1]), static_cast<std::size_t>(spec.shape[0]), scratch);
    out.write(scratch);
  }
  out.commit();
}

// ---- llm.c

namespace {

// llm.c's tensors, each for every layer at once, in file order: the name
// after "transformer.h.<l>." (or the whole name, for the non-block ones).
constexpr std::array<const char*, 16> kLlmcOrder = {
    "transformer.wte.weight", "transformer.wpe.weight", "ln_1.weight", "ln_1.bias",
    "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias", "transformer.ln_f.weight", "transformer.ln_f.bias"};

bool per_block(std::string_view kind) { return !kind.starts_with(kPrefix); }

std::string block_name(int l, std::string_view kind) {
  return "transformer.h." + std::to_string(l) + "." + std::string(kind);
}

int padded_vocab(int vocab) { return (vocab + 127) / 128 * 128; }

}  // namespace

bool is_llmc_model_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::int32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), sizeof magic) && magic == kLlmcMagic;
}

std::unique_ptr<Model> read_llmc_gpt2(const std::filesystem::path& path) {
  const MappedFile mapped(path, "llm.c model file");
  const std::string_view bytes = mapped.bytes();
  try {
    if (bytes.size() < kLlmcHeaderInts * 4) throw std::runtime_error("shorter than llm.c's 1024-byte header");
    std::array<std::int32_t, kLlmcHeaderInts> header;
    std::memcpy(header.data(), bytes.data(), sizeof header);
    if (header[0] != kLlmcMagic) throw std::runtime_error("no llm.c model magic 20240326");
    const int version = header[1];
    if (version != 3 && version != 5)
      throw std::runtime_error("version " + std::to_string(version) + " is not 3 (fp32) or 5 (bf16)");
    const char* names[] = {"max_seq_len", "vocab_size", "num_layers", "num_heads", "channels", "padded_vocab_size"};
    for (int i = 2; i < 8; ++i)
      if (header[i] < 1) throw std::runtime_error(std::string(names[i - 2]) + " is " + std::to_string(header[i]));
    ModelConfig m;
    m.seq_len = header[2];
    m.vocab_size = header[3];
    m.n_layer = header[4];
    m.n_head = header[5];
    m.n_embd = header[6];
    const int padded = header[7];
    if (padded < m.vocab_size) throw std::runtime_error("padded_vocab_size is smaller than vocab_size");
    try {
      m.validate();
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string("model shape: ") + e.what());
    }
    const std::size_t element = version == 3 ? 4 : 2;
    // The padded model's elements (every count fits: validate() bounds the shape).
    const std::size_t padding = static_cast<std::size_t>(padded - m.vocab_size) * m.n_embd;
    const std::size_t numel = gpt_parameter_layout(m).numel() + padding;
    if (bytes.size() != kLlmcHeaderInts * 4 + numel * element)
      throw std::runtime_error("has " + std::to_string(bytes.size()) + " bytes; its header makes " +
                               std::to_string(kLlmcHeaderInts * 4 + numel * element));
    auto model = std::make_unique<Model>(m);
    const char* at = bytes.data() + kLlmcHeaderInts * 4;
    const auto take = [&](std::span<float> out, const std::string& name) {
      if (version == 3) {
        std::memcpy(out.data(), at, out.size_bytes());
      } else {
        for (std::size_t i = 0; i < out.size(); ++i) {
          std::uint16_t h;
          std::memcpy(&h, at + 2 * i, 2);
          out[i] = kernels::from_bf16(h);
        }
      }
      const std::size_t begin = static_cast<std::size_t>(at - bytes.data());
      at += out.size() * element;
      mapped.release(begin, static_cast<std::size_t>(at - bytes.data()));
      require_finite(out, name);
    };
    for (const char* kind : kLlmcOrder) {
      if (!per_block(kind)) {
        take(model->tensor(kind), kind);
        if (std::string_view(kind) == "transformer.wte.weight") at += padding * element;  // padded rows
        continue;
      }
      for (int l = 0; l < m.n_layer; ++l) take(model->tensor(block_name(l, kind)), block_name(l, kind));
    }
    return model;
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(naming_file(path, e.what()));
  }
}

void write_llmc_gpt2(const std::filesystem::path& path, const Model& model) {
  const ModelConfig& m = model.config();
  std::array<std::int32_t, kLlmcHeaderInts> header{};
  header[0] = kLlmcMagic;
  header[1] = 3;
  header[2] = m.seq_len;
  header[3] = m.vocab_size;
  header[4] = m.n_layer;
  header[5] = m.n_head;
  header[6] = m.n_embd;
  header[7] = padded_vocab(m.vocab_size);
  DurableWriter out(path);
  out.write({reinterpret_cast<const unsigned char*>(header.data()), sizeof header});
  for (const char* kind : kLlmcOrder) {
    if (!per_block(kind)) {
      out.write(model.tensor(kind));
      if (std::string_view(kind) == "transformer.wte.weight")
        out.write(std::vector<float>(static_cast<std::size_t>(header[7] - m.vocab_size) * m.n_embd, 0.0f));
      continue;
    }
    for (int l = 0; l < m.n_layer; ++l) out.write(model.tensor(block_name(l, kind)));
  }
  out.commit();
}

}  // namespace cllm
