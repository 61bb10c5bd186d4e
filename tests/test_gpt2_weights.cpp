// GPT-2 weights in and out. tests/python/gpt2_files.py writes a random GPT-2
// in Hugging Face's layout (from the safetensors specification: transformers
// is not in Debian 12) and in llm.c's, with PyTorch's logits of it; cllm's
// forward pass of what it imports must give those logits, and what it
// exports must give them in PyTorch again.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cllm/app/model_transfer.h"
#include "cllm/base/read_file.h"
#include "cllm/data/sampler.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/gpt2_weights.h"
#include "cllm/io/safetensors.h"
#include "cllm/model/gpt.h"
#include "support/metrics.h"
#include "support/process.h"
#include "support/run_args.h"
#include "support/tensor_file.h"

namespace cllm {
namespace {

const std::string kPython = "/usr/bin/python3";
const std::string kScript = std::string(CLLM_SOURCE_DIR) + "/tests/python/gpt2_files.py";

bool have_torch() {
  test::TempDir dir;
  return test::run_program(kPython, {"-c", "import torch, numpy"}, dir.path()).exit_code == 0;
}

// gpt2_files.py make into dir; fails the test on an error.
void make_files(const test::TempDir& dir, const std::vector<std::string>& shape) {
  std::vector<std::string> args = {kScript, "make", dir.str()};
  args.insert(args.end(), shape.begin(), shape.end());
  const test::ProcessResult r = test::run_program(kPython, args, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// cllm's logits (T, V) of one window of T tokens.
std::vector<float> cllm_logits(const Model& model, const std::vector<std::int32_t>& tokens) {
  const ModelConfig& c = model.config();
  GptActivations acts(c, 1);
  gpt_forward(model, acts, tokens.data(), nullptr);
  std::vector<float> logits(static_cast<std::size_t>(c.seq_len) * c.vocab_size);
  gpt_logits(model, acts, 0, c.seq_len, logits.data());
  return logits;
}

std::vector<std::int32_t> reference_tokens(const test::TempDir& dir) {
  return test::read_tensor_file(dir / "reference.tns").at("tokens").i32;
}

// Largest |a - b| over b's elements (a reference of the first positions
// only is shorter than a window's logits).
double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_GE(a.size(), b.size());
  double worst = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::abs(double{a[i]} - double{b[i]}));
  return worst;
}

bool same_bits(const Model& a, const Model& b) {
  return a.params().size() == b.params().size() &&
         std::equal(a.params().begin(), a.params().end(), b.params().begin(),
                    [](float x, float y) { return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y); });
}

const std::vector<std::string> kSmall = {"--layers", "2", "--heads", "2", "--embd", "32",
                                         "--positions", "16", "--vocab", "97"};

class Gpt2Weights : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_torch()) GTEST_SKIP() << kPython << " cannot import torch and numpy";
  }
};

TEST_F(Gpt2Weights, HuggingFaceImportGivesPyTorchsLogitsAndExportRoundTripsBitwise) {
  test::TempDir dir;
  std::vector<std::string> shape = kSmall;
  shape.push_back("--lm-head");
  make_files(dir, shape);
  const auto model = read_hf_gpt2(dir / "hf");
  EXPECT_EQ(model->config().n_layer, 2);
  EXPECT_EQ(model->config().vocab_size, 97);
  const auto reference = test::read_tensor_file(dir / "reference.tns");
  const std::vector<float> ours = cllm_logits(*model, reference_tokens(dir));
  EXPECT_LT(max_difference(ours, reference.at("logits").f32), 1e-5);

  // Export: PyTorch reads the folder back, with HF's names and Conv1D layout.
  write_hf_gpt2(dir / "out", *model, TokenizerSpec{});
  const test::ProcessResult r = test::run_program(
      kPython, {kScript, "logits", (dir / "out").string(), (dir / "reference.tns").string(),
                (dir / "exported.tns").string()}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(max_difference(ours, test::read_tensor_file(dir / "exported.tns").at("logits").f32), 1e-5);
  EXPECT_TRUE(same_bits(*model, *read_hf_gpt2(dir / "out"))) << "import(export(x)) is not x";
}

TEST_F(Gpt2Weights, AModelOfGpt2124MsShapeGivesPyTorchsLogitsInAndOut) {
  test::TempDir dir;
  make_files(dir, {"--layers", "12", "--heads", "12", "--embd", "768", "--positions", "1024", "--vocab",
                   "50257", "--ref-positions", "16", "--no-llmc"});
  const auto model = read_hf_gpt2(dir / "hf");
  const auto reference = test::read_tensor_file(dir / "reference.tns");
  EXPECT_EQ(model->layout().numel(), 124439808u);
  const std::vector<float> ours = cllm_logits(*model, reference_tokens(dir));
  EXPECT_LT(max_difference(ours, reference.at("logits").f32), 1e-5);

  // And back: PyTorch's logits of the exported folder are cllm's.
  write_hf_gpt2(dir / "out", *model, TokenizerSpec{});
  const test::ProcessResult r = test::run_program(
      kPython, {kScript, "logits", (dir / "out").string(), (dir / "reference.tns").string(),
                (dir / "exported.tns").string(), "--positions", "16"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<float> theirs = test::read_tensor_file(dir / "exported.tns").at("logits").f32;
  EXPECT_EQ(theirs.size(), 16u * 50257u);
  EXPECT_LT(max_difference(ours, theirs), 1e-5);
}

TEST_F(Gpt2Weights, NamesWithoutThePrefixAndBf16AndF16TensorsImportAsWell) {
  for (const std::string dtype : {"BF16", "F16"}) {
    test::TempDir dir;
    std::vector<std::string> shape = kSmall;
    shape.insert(shape.end(), {"--no-prefix", "--dtype", dtype});
    make_files(dir, shape);
    const auto model = read_hf_gpt2(dir / "hf");
    const auto reference = test::read_tensor_file(dir / "reference.tns");
    EXPECT_LT(max_difference(cllm_logits(*model, reference_tokens(dir)), reference.at("logits").f32), 1e-5)
        << dtype;
  }
}

TEST_F(Gpt2Weights, LlmcFilesOfBothVersionsImportAndExportGivesTheSameBytes) {
  test::TempDir dir;
  make_files(dir, kSmall);
  const auto reference = test::read_tensor_file(dir / "reference.tns");
  const auto fp32 = read_llmc_gpt2(dir / "gpt2.bin");
  EXPECT_LT(max_difference(cllm_logits(*fp32, reference_tokens(dir)), reference.at("logits").f32), 1e-5);
  const auto bf16 = read_llmc_gpt2(dir / "gpt2_bf16.bin");
  EXPECT_LT(max_difference(cllm_logits(*bf16, reference_tokens(dir)), reference.at("logits_bf16").f32), 1e-5);

  write_llmc_gpt2(dir / "again.bin", *fp32);
  EXPECT_TRUE(read_file(dir / "again.bin") == read_file(dir / "gpt2.bin")) << "llm.c export differs from llm.c's file";
  EXPECT_TRUE(same_bits(*fp32, *read_hf_gpt2([&] {
    write_hf_gpt2(dir / "hf-out", *fp32, TokenizerSpec{});
    return dir / "hf-out";
  }())));
}

// ---- hostile inputs: one line naming the file and the field or tensor

std::string import_error(const std::filesystem::path& folder) {
  try {
    read_hf_gpt2(folder);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(Gpt2WeightsErrors, ConfigFieldsCllmDoesNotComputeTheSameWayAreRefusedByName) {
  test::TempDir dir;
  const std::string good = R"("model_type":"gpt2","n_layer":1,"n_head":2,"n_embd":8,"n_positions":4,"vocab_size":11)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{" + good + R"(,"activation_function":"relu"})", "activation_function is \"relu\""},
      {"{" + good + R"(,"layer_norm_epsilon":1e-6})", "layer_norm_epsilon is 1e-06"},
      {"{" + good + R"(,"tie_word_embeddings":false})", "tie_word_embeddings is false"},
      {"{" + good + R"(,"scale_attn_by_inverse_layer_idx":true})", "scale_attn_by_inverse_layer_idx is true"},
      {"{" + good + R"(,"scale_attn_weights":false})", "scale_attn_weights is false"},
      {"{" + good + R"(,"add_cross_attention":true})", "add_cross_attention is true"},
      {"{" + good + R"(,"n_inner":64})", "n_inner is not 4 x n_embd"},
      {R"({"model_type":"llama"})", "model_type is \"llama\""},
      {"{" + good + R"(,"architectures":["GPT2ForSequenceClassification"]})", "architectures is"},
      {R"({"model_type":"gpt2","n_layer":-3})", "n_layer is -3, not a positive integer"},
      {R"({"model_type":"gpt2","n_head":5,"n_embd":8})", "model shape: n_head (5) must divide n_embd (8)"},
      {"[1]", "not a JSON object"},
      {"{", "not JSON"},
  };
  for (const auto& [config, message] : cases) {
    write_text(dir / "config.json", config);
    const std::string got = import_error(dir.path());
    EXPECT_NE(got.find(message), std::string::npos) << "expected '" << message << "', got '" << got << "'";
    EXPECT_NE(got.find("config.json"), std::string::npos) << got;
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  }
}

// A one-layer model of 8 wide, 4 positions and 11 tokens, every tensor 0.5.
std::vector<SafetensorsEntry> tiny_entries(bool prefix) {
  const std::string p = prefix ? "transformer." : "";
  std::vector<SafetensorsEntry> e = {{p + "wte.weight", {11, 8}}, {p + "wpe.weight", {4, 8}}};
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
           {"ln_1.weight", {8}}, {"ln_1.bias", {8}}, {"attn.c_attn.weight", {8, 24}},
           {"attn.c_attn.bias", {24}}, {"attn.c_proj.weight", {8, 8}}, {"attn.c_proj.bias", {8}},
           {"ln_2.weight", {8}}, {"ln_2.bias", {8}}, {"mlp.c_fc.weight", {8, 32}},
           {"mlp.c_fc.bias", {32}}, {"mlp.c_proj.weight", {32, 8}}, {"mlp.c_proj.bias", {8}}})
    e.push_back({p + "h.0." + name, shape});
  e.push_back({p + "ln_f.weight", {8}});
  e.push_back({p + "ln_f.bias", {8}});
  return e;
}

// Every element of tensor `name` is value(name).
void write_tiny(const std::filesystem::path& folder, const std::vector<SafetensorsEntry>& entries,
                const std::function<float(const std::string&)>& value = [](const std::string&) { return 0.5f; }) {
  write_text(folder / "config.json",
             R"({"model_type":"gpt2","n_layer":1,"n_head":2,"n_embd":8,"n_positions":4,"vocab_size":11})");
  SafetensorsWriter out(folder / "model.safetensors", entries, {{"format", "pt"}});
  for (const SafetensorsEntry& e : entries) {
    std::size_t n = 1;
    for (const auto d : e.shape) n *= static_cast<std::size_t>(d);
    out.write(std::vector<float>(n, value(e.name)));
  }
  out.commit();
}

TEST(Gpt2WeightsErrors, TensorsThatAreNotGpt2sAreRefusedByName) {
  test::TempDir dir;
  write_tiny(dir.path(), tiny_entries(true));
  EXPECT_EQ(read_hf_gpt2(dir.path())->config().vocab_size, 11) << "the tiny model itself imports";

  auto missing = tiny_entries(false);
  missing.erase(missing.begin() + 5);  // h.0.attn.c_attn.bias
  write_tiny(dir.path(), missing);
  EXPECT_NE(import_error(dir.path()).find("tensor 'h.0.attn.c_attn.bias' is missing"), std::string::npos)
      << import_error(dir.path());

  auto transposed = tiny_entries(false);
  transposed[4].shape = {24, 8};  // c_attn.weight as (out, in): not HF's Conv1D layout
  write_tiny(dir.path(), transposed);
  EXPECT_NE(import_error(dir.path()).find("tensor 'h.0.attn.c_attn.weight' has shape [24, 8], not [8, 24]"),
            std::string::npos) << import_error(dir.path());

  auto extra = tiny_entries(false);
  extra.push_back({"score.weight", {2, 8}});
  write_tiny(dir.path(), extra);
  EXPECT_NE(import_error(dir.path()).find("tensor 'score.weight' is not part of GPT-2's model"), std::string::npos)
      << import_error(dir.path());

  auto both = tiny_entries(true);
  both.push_back({"wpe.weight", {4, 8}});
  write_tiny(dir.path(), both);
  EXPECT_NE(import_error(dir.path()).find("'wpe.weight' appears with and without"), std::string::npos)
      << import_error(dir.path());

  auto untied = tiny_entries(true);
  untied.push_back({"lm_head.weight", {11, 8}});
  write_tiny(dir.path(), untied);  // every value 0.5: lm_head equals wte
  EXPECT_NO_THROW(read_hf_gpt2(dir.path()));
  write_tiny(dir.path(), untied, [](const std::string& name) { return name == "lm_head.weight" ? 0.25f : 0.5f; });
  EXPECT_NE(import_error(dir.path()).find("lm_head.weight differs from wte.weight"), std::string::npos)
      << import_error(dir.path());

  write_tiny(dir.path(), tiny_entries(true), [](const std::string&) { return std::nanf(""); });
  EXPECT_NE(import_error(dir.path()).find("holds NaN or infinity"), std::string::npos) << import_error(dir.path());

  write_text(dir / "config.json",
             R"({"model_type":"gpt2","n_layer":48,"n_head":25,"n_embd":1600,"n_positions":1024,"vocab_size":50257})");
  EXPECT_NE(import_error(dir.path()).find("too few for the"), std::string::npos) << import_error(dir.path());
}

TEST(Gpt2WeightsErrors, LlmcFilesWithABadHeaderOrSizeAreRefused) {
  test::TempDir dir;
  const auto error = [&](const std::string& bytes) {
    write_text(dir / "m.bin", bytes);
    try {
      read_llmc_gpt2(dir / "m.bin");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  std::vector<std::int32_t> header(256, 0);
  header[0] = 20240326;
  header[1] = 3;
  const auto bytes = [&](std::size_t extra) {
    std::string s(reinterpret_cast<const char*>(header.data()), 1024);
    return s + std::string(extra, '\0');
  };
  EXPECT_NE(error("short").find("shorter than llm.c's 1024-byte header"), std::string::npos);
  header[1] = 4;
  EXPECT_NE(error(bytes(0)).find("version 4 is not 3 (fp32) or 5 (bf16)"), std::string::npos);
  header[1] = 3;
  EXPECT_NE(error(bytes(0)).find("max_seq_len is 0"), std::string::npos);
  // T 4, V 11, L 1, NH 2, C 8, Vp 10 < V
  for (const auto& [i, v] : std::vector<std::pair<int, int>>{{2, 4}, {3, 11}, {4, 1}, {5, 2}, {6, 8}, {7, 10}})
    header[i] = v;
  EXPECT_NE(error(bytes(0)).find("padded_vocab_size is smaller than vocab_size"), std::string::npos);
  header[7] = 128;
  EXPECT_NE(error(bytes(4)).find("has 1028 bytes"), std::string::npos) << error(bytes(4));
  EXPECT_EQ(error(bytes(0)).find('\n'), std::string::npos);
}


// The commands: import a GPT-2-vocabulary model, sample from it, export it
// back; each file's model is the same bits.
TEST_F(Gpt2Weights, ImportGenerateAndExportFromTheCommandLine) {
  test::TempDir dir;
  make_files(dir, {"--layers", "2", "--heads", "2", "--embd", "16", "--positions", "32", "--vocab", "50257"});
  const std::string vocab = std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe";
  test::ProcessResult r = test::run_cllm(
      {"import", (dir / "hf").string(), "--out", (dir / "imported.h5").string(), "--vocab-dir", vocab}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Hugging Face model, 2 layers, 2 heads, 16 wide, 32 positions, vocabulary 50257"),
            std::string::npos) << r.out;
  const CheckpointReader checkpoint(dir / "imported.h5");
  EXPECT_EQ(checkpoint.header().tokenizer.name, "gpt2-bpe");
  EXPECT_EQ(checkpoint.header().state.step, 0);
  const auto imported_from = checkpoint.settings({"imported_from"});
  ASSERT_EQ(imported_from.count("imported_from"), 1u);
  EXPECT_NE(std::get<std::string>(imported_from.at("imported_from")).find("Hugging Face /"), std::string::npos);
  Model model(checkpoint.header().model);
  checkpoint.read_into(model);
  EXPECT_TRUE(same_bits(model, *read_hf_gpt2(dir / "hf")));
  CheckpointMoments moments;
  EXPECT_THROW(checkpoint.read_into(model, &moments), std::runtime_error) << "no optimizer state to resume";

  r = test::run_cllm({"generate", "--checkpoint", (dir / "imported.h5").string(), "--prompt", "Hello",
                      "--tokens", "4"}, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;

  r = test::run_cllm({"export", "--checkpoint", (dir / "imported.h5").string(), "--out", (dir / "out").string()},
                     dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* file : {"config.json", "model.safetensors", "generation_config.json", "vocab.json", "merges.txt"})
    EXPECT_TRUE(std::filesystem::exists(dir / "out" / file)) << file;
  EXPECT_EQ(read_file(dir / "out" / "vocab.json"), read_file(vocab + "/encoder.json"));
  EXPECT_TRUE(same_bits(model, *read_hf_gpt2(dir / "out")));
  r = test::run_cllm({"export", "--checkpoint", (dir / "imported.h5").string(), "--out",
                      (dir / "again.bin").string(), "--format", "llmc"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(read_file(dir / "again.bin") == read_file(dir / "gpt2.bin"));

  // One line and exit 2 (the command must name another source or format):
  // not a model, a vocabulary too small for GPT-2 BPE, a format export does
  // not write.
  write_text(dir / "notes.txt", "hello");
  r = test::run_cllm({"import", (dir / "notes.txt").string(), "--out", (dir / "x.h5").string()}, dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("neither a Hugging Face folder"), std::string::npos) << r.err;
  test::TempDir small;
  make_files(small, kSmall);
  r = test::run_cllm({"import", (small / "hf").string(), "--out", (dir / "x.h5").string(), "--vocab-dir", vocab},
                     dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("a vocabulary of 97 tokens, fewer than GPT-2 BPE's 50257"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.h5"));
  // A hostile tensor: its offsets run past the file.
  const std::string header = R"({"wte.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,99]}})";
  std::string hostile(8, '\0');
  hostile[0] = static_cast<char>(header.size());
  write_text(small / "hf" / "model.safetensors", hostile + header + std::string(8, '\0'));
  r = test::run_cllm({"import", (small / "hf").string(), "--out", (dir / "x.h5").string(), "--vocab-dir", vocab},
                     dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.safetensors: safetensors: tensor 'wte.weight': data_offsets [0, 99]"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.h5"));
  r = test::run_cllm({"export", "--checkpoint", (dir / "imported.h5").string(), "--out", (dir / "y").string(),
                      "--format", "onnx"}, dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("onnx"), std::string::npos) << r.err;
  for (const std::string& err : {r.err}) EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}


double eval_loss(const std::filesystem::path& checkpoint, const std::filesystem::path& data,
                 const std::vector<std::string>& more, const test::TempDir& dir) {
  std::vector<std::string> args = {"eval", "--checkpoint", checkpoint.string(), "--data", data.string(), "--json"};
  args.insert(args.end(), more.begin(), more.end());
  const test::ProcessResult r = test::run_cllm(args, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out).at("loss").get<double>() : NAN;
}

// Fine-tuning as the README walks it: import, prepare Austen as GPT-2 BPE,
// 20 steps from the imported weights. The first step's loss is the
// imported model's on that step's windows as cllm eval scores them (each
// window put alone in a dataset of its own), and the run learns.
TEST_F(Gpt2Weights, FineTuningStartsFromTheImportedModelsLossOnItsWindowsAndLearns) {
  test::TempDir dir;
  make_files(dir, {"--layers", "2", "--heads", "2", "--embd", "16", "--positions", "32", "--vocab", "50257"});
  const std::string vocab = std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe";
  const auto cllm_ok = [&](const std::vector<std::string>& args) {
    const test::ProcessResult r = test::run_cllm(args, dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  const std::filesystem::path imported = dir / "imported.h5", data = dir / "austen.h5", run = dir / "run";
  cllm_ok({"import", (dir / "hf").string(), "--out", imported.string(), "--vocab-dir", vocab});
  cllm_ok({"prepare", std::string(CLLM_SOURCE_DIR) + "/data/austen.txt", "--tokenizer", "gpt2-bpe",
           "--vocab-dir", vocab, "--out", data.string()});
  constexpr int kSeed = 11, kMicro = 2, kGlobal = 4;
  cllm_ok({"train", "--data", data.string(), "--out", run.string(), "--init", imported.string(), "--steps", "20",
           "--lr", "3e-3", "--warmup", "0", "--micro-batch", std::to_string(kMicro), "--global-batch",
           std::to_string(kGlobal), "--threads", "2", "--seed", std::to_string(kSeed), "--log-every", "1",
           "--eval-every", "20", "--eval-batches", "2", "--sample-tokens", "0", "--checkpoint-every", "20"});
  const std::vector<nlohmann::ordered_json> logged = test::read_metrics(run / "metrics.jsonl");
  ASSERT_EQ(logged.size(), 20u);

  // Step 0's windows, as the sampler chose them, each scored by cllm eval.
  const TrainingData austen = open_training_data(DataConfig{data.string()}, 32);
  const std::uint64_t n = austen.source->split_size(Split::train);
  double sum = 0;
  for (int m = 0; m < kGlobal / kMicro; ++m) {
    for (int b = 0; b < kMicro; ++b) {
      std::vector<std::int32_t> window(33);
      austen.source->read_tokens(Split::train, training_window_start(n, 32, kSeed, 0, m, b), window.size(),
                                 window.data());
      const std::filesystem::path one = dir / ("window-" + std::to_string(m) + std::to_string(b) + ".h5");
      write_token_dataset(one, window, window, austen.tokenizer, {}, 0.5);
      sum += eval_loss(imported, one, {"--split", "train"}, dir);
    }
  }
  const double first = logged.front().at("loss").get<double>();
  EXPECT_NEAR(first, sum / kGlobal, 1e-5);

  // The run learns: its model scores Austen's validation split better.
  const std::vector<std::string> val = {"--split", "val", "--max-tokens", "4096"};
  EXPECT_LT(eval_loss(run / "checkpoint-00000020.h5", data, val, dir), eval_loss(imported, data, val, dir) - 0.1);
}

// The model a checkpoint holds, and one of its root attributes.
std::unique_ptr<Model> checkpoint_model(const std::filesystem::path& path) {
  const CheckpointReader checkpoint(path);
  auto model = std::make_unique<Model>(checkpoint.header().model);
  checkpoint.read_into(*model);
  return model;
}

double max_param_difference(const Model& a, const Model& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.params().size(); ++i)
    worst = std::max(worst, std::abs(double{a.params()[i]} - double{b.params()[i]}));
  return worst;
}

TEST(TrainInit, StartsFromTheCheckpointsWeightsWithAFreshOptimizerRecordsThemAndResumesItsOwn) {
  test::TempDir dir;
  const std::string data = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";
  test::ProcessResult r = test::run_cllm(test::tiny_run(data, (dir / "a").string(), 1, 10), dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::filesystem::path a = dir / "a" / "checkpoint-00000010.h5";

  // One step at a learning rate of 1e-9 from a's weights: b's are a's, to 1e-6.
  const std::vector<std::string> b_run = {
      "train", "--data", data, "--out", (dir / "b").string(), "--init", a.string(), "--steps", "1",
      "--lr", "1e-9", "--warmup", "0", "--micro-batch", "2", "--global-batch", "8", "--threads", "1",
      "--sample-tokens", "0", "--eval-batches", "2"};
  r = test::run_cllm(b_run, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("initialising from " + a.string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model: 2 layers, 2 heads, 32 wide, seq 32"), std::string::npos) << r.out;
  const std::filesystem::path b = dir / "b" / "checkpoint-00000001.h5";
  EXPECT_LT(max_param_difference(*checkpoint_model(a), *checkpoint_model(b)), 1e-6);
  const CheckpointReader b_file(b);
  CheckpointMoments moments;
  Model scratch(b_file.header().model);
  b_file.read_into(scratch, &moments);
  EXPECT_EQ(moments.step, 1) << "a fresh AdamW: one update, not a's eleven";
  const RunSettings recorded = b_file.settings({"init"});
  ASSERT_EQ(recorded.count("init"), 1u);
  EXPECT_EQ(std::get<std::string>(recorded.at("init")), std::filesystem::absolute(a).string());

  // The same command again (a requeued job): b resumes its own checkpoint.
  r = test::run_cllm(test::with(b_run, {"--steps", "2"}), dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("resuming from"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("initialising"), std::string::npos) << r.out;

  // The shape is the checkpoint's: shape options are refused (exit 2).
  r = test::run_cllm(test::with(b_run, {"--out", (dir / "c").string(), "--layers", "3"}), dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--init gives the model's shape"), std::string::npos) << r.err;

  // A model of GPT-2 BPE tokens does not train on byte-level text (exit 1).
  Model bpe_model(ModelConfig{50257, 8, 1, 2, 8});
  RunSettings settings = {{"seed", std::int64_t{0}}};
  write_checkpoint(dir / "bpe.h5", bpe_model, nullptr, TrainingState{},
                   tokenizer_spec("gpt2-bpe", std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe"), settings);
  r = test::run_cllm(test::with(b_run, {"--out", (dir / "d").string(), "--init", (dir / "bpe.h5").string()}),
                     dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is tokenized with byte (256 tokens), but the model of"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cllm
