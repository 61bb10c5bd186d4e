// The model as a whole: its parameter layout (nanoGPT's state_dict), GPT-2
// initialisation, the gradient of the whole forward pass against finite
// differences, and text generation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/kernels/kernels.h"
#include "cllm/kernels/rng.h"
#include "cllm/model/generate.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model.h"
#include "support/bitwise.h"
#include "support/finite_difference.h"

namespace cllm {
namespace {

ModelConfig make_config(int V, int T, int L, int NH, int C) {
  ModelConfig c;
  c.vocab_size = V, c.seq_len = T, c.n_layer = L, c.n_head = NH, c.n_embd = C;
  return c;
}

// Parameters far enough from GPT-2's tiny initial values that every tensor's
// gradient is sizeable and the model is clearly non-linear.
void randomise(Model& model, std::uint64_t seed) {
  Rng rng(seed);
  for (const TensorSpec& s : model.layout().tensors()) {
    auto p = model.tensor(s.name);
    const bool ln_weight = s.name.find(".ln_") != std::string::npos && s.name.ends_with(".weight");
    for (float& x : p) {
      if (ln_weight)
        x = 1.0f + 0.2f * rng.normal();
      else if (s.is_matrix())
        x = 0.15f * rng.normal();
      else
        x = 0.1f * rng.normal();
    }
  }
}

// ---------------------------------------------------------------- layout

TEST(ModelLayout, MatchesNanoGptStateDict) {
  const int V = 50, T = 7, L = 2, NH = 2, C = 24;  // C, 3C, T*C: not multiples of 16
  const ModelConfig cfg = make_config(V, T, L, NH, C);
  const TensorLayout layout = gpt_parameter_layout(cfg);
  ASSERT_EQ(layout.count(), static_cast<std::size_t>(2 + 12 * L + 2));

  struct Expect {
    std::size_t index;
    const char* name;
    std::vector<std::int64_t> shape;
  };
  const std::vector<Expect> spot = {
      {0, "transformer.wte.weight", {V, C}},
      {1, "transformer.wpe.weight", {T, C}},
      {2, "transformer.h.0.ln_1.weight", {C}},
      {3, "transformer.h.0.ln_1.bias", {C}},
      {4, "transformer.h.0.attn.c_attn.weight", {3 * C, C}},
      {5, "transformer.h.0.attn.c_attn.bias", {3 * C}},
      {6, "transformer.h.0.attn.c_proj.weight", {C, C}},
      {7, "transformer.h.0.attn.c_proj.bias", {C}},
      {8, "transformer.h.0.ln_2.weight", {C}},
      {9, "transformer.h.0.ln_2.bias", {C}},
      {10, "transformer.h.0.mlp.c_fc.weight", {4 * C, C}},
      {11, "transformer.h.0.mlp.c_fc.bias", {4 * C}},
      {12, "transformer.h.0.mlp.c_proj.weight", {C, 4 * C}},
      {13, "transformer.h.0.mlp.c_proj.bias", {C}},
      {14, "transformer.h.1.ln_1.weight", {C}},
      {16, "transformer.h.1.attn.c_attn.weight", {3 * C, C}},
      {24, "transformer.h.1.mlp.c_proj.weight", {C, 4 * C}},
      {26, "transformer.ln_f.weight", {C}},
      {27, "transformer.ln_f.bias", {C}},
  };
  for (const Expect& e : spot) {
    EXPECT_EQ(layout[e.index].name, e.name) << "tensor " << e.index;
    EXPECT_EQ(layout[e.index].shape, e.shape) << e.name;
    const TensorSpec* found = layout.find(e.name);
    ASSERT_NE(found, nullptr) << e.name;
    EXPECT_EQ(found->offset, layout[e.index].offset);
  }
  EXPECT_EQ(layout.find("transformer.h.2.ln_1.weight"), nullptr);
  EXPECT_EQ(layout.find("lm_head.weight"), nullptr);  // tied to wte

  // Offsets: 64-byte aligned, in order, no overlap; numel from the shapes.
  std::size_t numel_from_shapes = 0, end = 0;
  for (const TensorSpec& s : layout.tensors()) {
    std::size_t n = 1;
    for (auto d : s.shape) n *= static_cast<std::size_t>(d);
    EXPECT_EQ(s.numel, n) << s.name;
    EXPECT_EQ(s.offset * sizeof(float) % 64, 0u) << s.name;
    EXPECT_GE(s.offset, end) << s.name << " overlaps its predecessor";
    EXPECT_LT(s.offset - end, TensorLayout::kAlignFloats) << s.name << ": more than padding";
    end = s.offset + s.numel;
    numel_from_shapes += n;
  }
  EXPECT_GE(layout.total(), end);
  EXPECT_EQ(layout.total() % TensorLayout::kAlignFloats, 0u);
  EXPECT_EQ(layout.numel(), numel_from_shapes);
  // By hand: wte + wpe + L blocks of (ln_1 2C, c_attn 3C^2+3C, attn c_proj C^2+C, ln_2 2C,
  // c_fc 4C^2+4C, mlp c_proj 4C^2+C) + ln_f 2C.
  const std::size_t by_formula =
      static_cast<std::size_t>(V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C);
  EXPECT_EQ(layout.numel(), by_formula);
  EXPECT_GT(layout.total(), layout.numel());  // this shape does need padding
}

// Building a layout takes time linear in its tensors (a checkpoint may
// claim any number of layers, or --layers ask for them): 20,000 layers take
// about a second. Registered with a short ctest TIMEOUT, which is the real
// assertion: with a linear name lookup per tensor, 10,000 layers took 38 s
// and 20,000 would take 150 s.
// The memory plan (memory_plan.h) counts the buffers without building their
// layouts; the counts must be the layouts' own, padding and all.
TEST(ModelLayout, CountsWithoutBuildingEqualTheBuiltLayouts) {
  for (const ModelConfig c : {ModelConfig{}, ModelConfig{50257, 64, 2, 12, 768},
                              ModelConfig{37, 5, 3, 1, 7}, ModelConfig{256, 1, 1, 1, 1}}) {
    EXPECT_EQ(gpt_parameter_floats(c), static_cast<double>(gpt_parameter_layout(c).total()));
    for (const int B : {1, 3, 8})
      for (const Recompute r : {Recompute::none, Recompute::block}) {
        const GptActivations acts(c, B, r);
        EXPECT_EQ(GptActivations::floats(c, B, r), static_cast<double>(acts.layout().total()))
            << "B " << B << ", recompute " << (r == Recompute::block) << ", C " << c.n_embd;
      }
  }
}

TEST(ModelLayoutScale, TwentyThousandLayersBuildInLinearTime) {
  const int L = 20000;
  const TensorLayout layout = gpt_parameter_layout(make_config(50, 8, L, 2, 8));
  ASSERT_EQ(layout.count(), static_cast<std::size_t>(2 + 12 * L + 2));
  const TensorSpec* last = layout.find("transformer.h.19999.mlp.c_proj.bias");
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last, &layout[layout.count() - 3]);
  EXPECT_EQ(layout.find("transformer.ln_f.bias"), &layout[layout.count() - 1]);
  EXPECT_EQ(layout.find("transformer.h.20000.ln_1.weight"), nullptr);
}

TEST(ModelLayout, ViewsPointIntoTheParameterBuffer) {
  const ModelConfig cfg = make_config(50, 7, 2, 2, 24);
  Model model(cfg);
  const float* base = model.params().data();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(base) % 64, 0u);
  EXPECT_EQ(model.params().size(), model.layout().total());
  const auto off = [&](const char* name) { return base + model.layout().find(name)->offset; };
  const GptTensors<const float> t = static_cast<const Model&>(model).tensors();
  EXPECT_EQ(t.wte, off("transformer.wte.weight"));
  EXPECT_EQ(t.wpe, off("transformer.wpe.weight"));
  ASSERT_EQ(t.h.size(), 2u);
  EXPECT_EQ(t.h[1].ln_1_w, off("transformer.h.1.ln_1.weight"));
  EXPECT_EQ(t.h[1].attn_b, off("transformer.h.1.attn.c_attn.bias"));
  EXPECT_EQ(t.h[0].attn_proj_w, off("transformer.h.0.attn.c_proj.weight"));
  EXPECT_EQ(t.h[0].ln_2_b, off("transformer.h.0.ln_2.bias"));
  EXPECT_EQ(t.h[1].fc_w, off("transformer.h.1.mlp.c_fc.weight"));
  EXPECT_EQ(t.h[1].mlp_proj_w, off("transformer.h.1.mlp.c_proj.weight"));
  EXPECT_EQ(t.h[1].mlp_proj_b, off("transformer.h.1.mlp.c_proj.bias"));
  EXPECT_EQ(t.ln_f_w, off("transformer.ln_f.weight"));
  EXPECT_EQ(t.ln_f_b, off("transformer.ln_f.bias"));
  const auto span = model.tensor("transformer.h.0.mlp.c_fc.weight");
  EXPECT_EQ(span.data(), off("transformer.h.0.mlp.c_fc.weight"));
  EXPECT_EQ(span.size(), 4u * 24 * 24);
  EXPECT_THROW(model.tensor("no.such.tensor"), std::out_of_range);
  // Parameters are zero until initialised.
  for (float x : model.params()) ASSERT_EQ(x, 0.0f);
}

// ---------------------------------------------------------------- init

TEST(ModelInit, Gpt2Statistics) {
  const int L = 2;
  Model model(make_config(256, 64, L, 4, 64));
  model.init_gpt2(1337);
  const double residual_std = 0.02 / std::sqrt(2.0 * L);
  int matrices = 0, residual = 0;
  for (const TensorSpec& s : model.layout().tensors()) {
    const auto p = model.tensor(s.name);
    if (s.is_matrix()) {
      double sum = 0, sq = 0;
      for (float x : p) sum += x, sq += static_cast<double>(x) * x;
      const double n = static_cast<double>(p.size());
      const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
      const bool is_residual = s.name.ends_with("c_proj.weight");
      const double want = is_residual ? residual_std : 0.02;
      EXPECT_NEAR(sd, want, 0.05 * want) << s.name << " (" << p.size() << " values)";
      EXPECT_NEAR(mean, 0.0, 5 * want / std::sqrt(n)) << s.name;
      ++matrices;
      residual += is_residual;
    } else if (s.name.find(".ln_") != std::string::npos && s.name.ends_with(".weight")) {
      for (float x : p) ASSERT_EQ(x, 1.0f) << s.name;
    } else {
      for (float x : p) ASSERT_EQ(x, 0.0f) << s.name << " (a bias)";
    }
  }
  EXPECT_EQ(matrices, 2 + 4 * L);
  EXPECT_EQ(residual, 2 * L);
  // Padding between tensors stays zero.
  std::vector<bool> inside(model.layout().total(), false);
  for (const TensorSpec& s : model.layout().tensors())
    std::fill_n(inside.begin() + static_cast<std::ptrdiff_t>(s.offset), s.numel, true);
  for (std::size_t i = 0; i < inside.size(); ++i)
    if (!inside[i]) {
      ASSERT_EQ(model.params()[i], 0.0f) << "padding element " << i;
    }
}

TEST(ModelInit, DeterministicPerSeed) {
  const ModelConfig cfg = make_config(40, 8, 2, 2, 24);
  Model a(cfg), b(cfg), c(cfg);
  a.init_gpt2(7);
  b.init_gpt2(7);
  c.init_gpt2(8);
  ASSERT_EQ(a.params().size(), b.params().size());
  EXPECT_TRUE(test::same_bits(a.params(), b.params()));
  // Re-initialising overwrites everything (including a perturbed model).
  randomise(b, 99);
  b.init_gpt2(7);
  EXPECT_TRUE(test::same_bits(a.params(), b.params()));
  std::size_t differ = 0;
  const auto wte = a.tensor("transformer.wte.weight"), wte_c = c.tensor("transformer.wte.weight");
  for (std::size_t i = 0; i < wte.size(); ++i) differ += wte[i] != wte_c[i];
  EXPECT_GT(differ, wte.size() * 9 / 10) << "another seed gives (almost) the same weights";
}

// ---------------------------------------------------------------- gradient

TEST(ModelGradient, MatchesFiniteDifferencesOfTheMeanLoss) {
  kernels::use_single_threaded_blas();
  const ModelConfig cfg = make_config(16, 6, 2, 2, 8);
  const int B = 2, N = B * cfg.seq_len;
  Model model(cfg);
  randomise(model, 4242);
  Rng rng(5);
  std::vector<std::int32_t> inputs(N), targets(N);
  for (int i = 0; i < N; ++i) {
    inputs[i] = static_cast<std::int32_t>(rng.next_u64() % cfg.vocab_size);
    targets[i] = static_cast<std::int32_t>(rng.next_u64() % cfg.vocab_size);
  }
  GptActivations acts(cfg, B);
  const auto mean_loss = [&] {
    return gpt_forward(model, acts, inputs.data(), targets.data()) / N;
  };
  const double loss0 = mean_loss();
  EXPECT_TRUE(std::isfinite(loss0));
  EXPECT_GT(loss0, 0.5);

  AlignedBuffer<float> grads(model.layout().total());
  grads.zero();
  EXPECT_EQ(gpt_forward_backward(model, acts, grads.span(), inputs.data(), targets.data(), 1.0f / N) / N,
            loss0);

  // Every entry of every tensor (the model is tiny): largest and random ones included.
  const float h = 1e-2f;
  double worst_overall = 0;
  for (const TensorSpec& s : model.layout().tensors()) {
    const std::span<float> p = model.tensor(s.name);
    const std::span<const float> g(grads.data() + s.offset, s.numel);
    const auto r = test::check_central_differences(p, g, mean_loss, h);
    const double gmax = r.max_grad, worst = r.worst_error;
    ASSERT_GT(gmax, 1e-4) << s.name << ": no gradient";
    EXPECT_LE(worst, 1e-2 * gmax) << s.name << "[" << r.worst_index << "]: analytic "
                                  << g[r.worst_index] << ", finite difference " << r.worst_fd
                                  << ", max |grad| " << gmax;
    worst_overall = std::max(worst_overall, worst / gmax);
  }
  std::printf("whole-model gradient: worst error / max |grad| of its tensor: %.3g\n",
              worst_overall);
  // Padding gets no gradient.
  std::vector<bool> inside(model.layout().total(), false);
  for (const TensorSpec& s : model.layout().tensors())
    std::fill_n(inside.begin() + static_cast<std::ptrdiff_t>(s.offset), s.numel, true);
  for (std::size_t i = 0; i < inside.size(); ++i)
    if (!inside[i]) {
      ASSERT_EQ(grads[i], 0.0f) << "padding element " << i;
    }
}

TEST(ModelGradient, BackwardAccumulatesAndScalesWithDloss) {
  kernels::use_single_threaded_blas();
  const ModelConfig cfg = make_config(16, 6, 2, 2, 8);
  const int B = 2, N = B * cfg.seq_len;
  Model model(cfg);
  randomise(model, 11);
  std::vector<std::int32_t> inputs(N), targets(N);
  for (int i = 0; i < N; ++i) inputs[i] = i % 16, targets[i] = (3 * i + 1) % 16;
  GptActivations acts(cfg, B);
  AlignedBuffer<float> once(model.layout().total()), twice(model.layout().total());
  once.zero();
  twice.zero();
  gpt_forward_backward(model, acts, once.span(), inputs.data(), targets.data(), 0.5f);
  for (int k = 0; k < 2; ++k)
    gpt_forward_backward(model, acts, twice.span(), inputs.data(), targets.data(), 0.25f);
  float gmax = 0;
  for (std::size_t i = 0; i < once.size(); ++i) gmax = std::max(gmax, std::abs(once[i]));
  ASSERT_GT(gmax, 0.0f);
  for (std::size_t i = 0; i < once.size(); ++i)
    ASSERT_NEAR(twice[i], once[i], 1e-5f * gmax) << "element " << i;
}

// The output head runs over chunks of kLogitRows positions: 2 sequences of
// 50 make chunks of 64 and 36, the second cutting a sequence. The loss
// against the loss of all 100 positions' logits at once (the head before
// chunking), and the gradient against the sum of each sequence's own (one
// chunk each).
TEST(ModelHead, ChunkedLossAndGradientMatchTheWholeHead) {
  kernels::use_single_threaded_blas();
  const ModelConfig cfg = make_config(40, 50, 1, 2, 16);
  const int B = 2, T = cfg.seq_len, N = B * T, V = cfg.vocab_size;
  static_assert(kLogitRows < 100 && 100 % kLogitRows != 0);
  Model model(cfg);
  randomise(model, 5);
  std::vector<std::int32_t> inputs(N), targets(N);
  for (int i = 0; i < N; ++i) inputs[i] = (7 * i + 3) % V, targets[i] = (11 * i + 1) % V;

  GptActivations acts(cfg, B);
  const double chunked = gpt_forward(model, acts, inputs.data(), targets.data());
  std::vector<float> logits(static_cast<std::size_t>(N) * V), losses(N);
  gpt_logits(model, acts, 0, N, logits.data());
  const double whole =
      kernels::crossentropy_forward(logits.data(), losses.data(), logits.data(), targets.data(), N, V);
  EXPECT_NEAR(chunked, whole, 1e-6 * whole);
  for (int i = 0; i < N; ++i) EXPECT_NEAR(acts.losses[i], losses[i], 1e-6 * losses[i]) << i;

  AlignedBuffer<float> both(model.layout().total()), each(model.layout().total());
  both.zero();
  each.zero();
  EXPECT_NEAR(gpt_forward_backward(model, acts, both.span(), inputs.data(), targets.data(), 1.0f),
              chunked, 1e-12 * chunked);
  GptActivations one(cfg, 1);
  for (int b = 0; b < B; ++b)
    gpt_forward_backward(model, one, each.span(), inputs.data() + b * T, targets.data() + b * T, 1.0f);
  float gmax = 0;
  for (std::size_t i = 0; i < each.size(); ++i) gmax = std::max(gmax, std::abs(each[i]));
  ASSERT_GT(gmax, 0.0f);
  for (std::size_t i = 0; i < each.size(); ++i)
    ASSERT_NEAR(both[i], each[i], 1e-5f * gmax) << "element " << i;
}

// --recompute block keeps only each block's output and runs the block's
// forward pass again in backward: the same kernels on the same inputs, so the
// same loss and gradient, bit for bit, from less memory.
TEST(ModelRecompute, BlockGivesTheSameBitsAsNone) {
  kernels::use_single_threaded_blas();
  const ModelConfig cfg = make_config(30, 20, 3, 2, 16);
  const int B = 2, N = B * cfg.seq_len;
  Model model(cfg);
  randomise(model, 8);
  std::vector<std::int32_t> inputs(N), targets(N);
  for (int i = 0; i < N; ++i) inputs[i] = (5 * i + 2) % 30, targets[i] = (3 * i + 4) % 30;
  GptActivations none(cfg, B, Recompute::none), block(cfg, B, Recompute::block);
  EXPECT_LT(block.bytes(), none.bytes());
  AlignedBuffer<float> g_none(model.layout().total()), g_block(model.layout().total());
  g_none.zero();
  g_block.zero();
  for (int step = 0; step < 2; ++step) {  // twice: the shared block set is reused, not fresh
    const double l_none =
        gpt_forward_backward(model, none, g_none.span(), inputs.data(), targets.data(), 0.01f);
    const double l_block =
        gpt_forward_backward(model, block, g_block.span(), inputs.data(), targets.data(), 0.01f);
    EXPECT_EQ(l_none, l_block);
    EXPECT_TRUE(test::same_bits(g_none.span(), g_block.span()));
  }
}

// ---------------------------------------------------------------- generate

class GenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernels::use_single_threaded_blas();
    randomise(model, 77);
  }
  ModelConfig cfg = make_config(16, 6, 2, 2, 8);
  Model model{cfg};
};

TEST_F(GenerateTest, DeterministicForASeedAndInRange) {
  SamplingConfig o;
  o.tokens = 20;  // longer than seq_len: the context window slides
  o.seed = 3;
  const std::vector<std::int32_t> prompt = {1, 5, 9};
  const auto a = generate(model, prompt, o);
  const auto b = generate(model, prompt, o);
  ASSERT_EQ(a.size(), prompt.size() + 20);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), a.begin()));
  for (auto t : a) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, cfg.vocab_size);
  }
  o.seed = 4;
  EXPECT_NE(generate(model, prompt, o), a) << "the seed does not change the sample";
  o.tokens = 0;
  EXPECT_EQ(generate(model, prompt, o), prompt);
  EXPECT_THROW(generate(model, {}, o), std::invalid_argument);
  // Ids the embedding table has no row for (tests/fuzz/regressions/fuzz_checkpoint).
  EXPECT_THROW(generate(model, {1, cfg.vocab_size}, o), std::invalid_argument);
  EXPECT_THROW(generate(model, {-1}, o), std::invalid_argument);
}

TEST_F(GenerateTest, TopKOneIsGreedy) {
  SamplingConfig o;
  o.tokens = 15;
  o.top_k = 1;
  o.seed = 1;
  std::vector<std::int32_t> tokens = {2, 7};
  const auto got = generate(model, tokens, o);
  o.seed = 12345;  // greedy: the seed does not matter
  EXPECT_EQ(generate(model, tokens, o), got);

  const int T = cfg.seq_len, V = cfg.vocab_size;
  GptActivations acts(cfg, 1);
  std::vector<std::int32_t> window(T);
  int distinct = 0;
  for (int n = 0; n < o.tokens; ++n) {
    const std::size_t len = std::min<std::size_t>(tokens.size(), T);
    // The positions after the context hold junk: causality makes them irrelevant.
    std::fill(window.begin(), window.end(), V - 1);
    std::copy(tokens.end() - static_cast<std::ptrdiff_t>(len), tokens.end(), window.begin());
    gpt_forward(model, acts, window.data(), nullptr);
    std::vector<float> logits(V);
    gpt_logits(model, acts, static_cast<int>(len) - 1, 1, logits.data());
    const int best = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    tokens.push_back(best);
    distinct += best != tokens[tokens.size() - 2];
  }
  EXPECT_EQ(got, tokens);
  EXPECT_GT(distinct, 0) << "degenerate model: greedy output is one repeated token";
}

}  // namespace
}  // namespace cllm
