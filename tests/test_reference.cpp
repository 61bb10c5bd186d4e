// The C++ model against a float64 PyTorch reference (tests/reference/):
// loss, logits, every gradient, and the losses of 10 AdamW steps, at T = 16
// and T = 300.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cllm/kernels/kernels.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model.h"
#include "cllm/train/optimizer.h"
#include "support/tensor_file.h"

namespace cllm {
namespace {

using test::read_tensor_file;
using test::TensorRecord;

// Each test runs on both reference files: gpt_reference.bin (T = 16, one
// tile of the attention kernels) and gpt_reference_long.bin (T = 300: five
// blocks of query rows, two of keys).
class ReferenceTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    kernels::use_single_threaded_blas();
    ref = read_tensor_file(std::string(CLLM_SOURCE_DIR) + "/tests/reference/" + GetParam());
    const auto& c = ref.at("config").i32;  // [V, T, L, NH, C, B]
    cfg.vocab_size = c[0], cfg.seq_len = c[1], cfg.n_layer = c[2], cfg.n_head = c[3];
    cfg.n_embd = c[4];
    B = c[5];
  }
  void load_weights(Model& model) {
    for (const TensorSpec& s : model.layout().tensors()) {
      const TensorRecord& r = ref.at("param/" + s.name);
      ASSERT_EQ(r.shape, s.shape) << s.name;
      std::copy(r.f32.begin(), r.f32.end(), model.tensor(s.name).begin());
    }
  }
  std::map<std::string, TensorRecord> ref;
  ModelConfig cfg;
  int B = 0;
};

TEST_P(ReferenceTest, LossLogitsAndGradientsMatchPyTorch) {
  Model model(cfg);
  load_weights(model);
  const auto& tokens = ref.at("tokens").i32;
  const auto& targets = ref.at("targets").i32;
  GptActivations acts(cfg, B);
  const int N = B * cfg.seq_len;

  // Logits first, of every position.
  gpt_forward(model, acts, tokens.data(), nullptr);
  const auto& logits = ref.at("logits").f32;
  ASSERT_EQ(logits.size(), static_cast<std::size_t>(N) * cfg.vocab_size);
  std::vector<float> ours(logits.size());
  gpt_logits(model, acts, 0, N, ours.data());
  for (std::size_t i = 0; i < logits.size(); ++i)
    ASSERT_NEAR(ours[i], logits[i], 1e-5 * std::abs(logits[i]) + 1e-6) << "logit " << i;

  const double loss = gpt_forward(model, acts, tokens.data(), targets.data()) / N;
  const double ref_loss = ref.at("loss").f32[0];
  EXPECT_NEAR(loss, ref_loss, 1e-5 * ref_loss);

  AlignedBuffer<float> grads(model.layout().total());
  grads.zero();
  EXPECT_EQ(gpt_forward_backward(model, acts, grads.span(), tokens.data(), targets.data(), 1.0f / N) / N,
            loss);
  for (const TensorSpec& s : model.layout().tensors()) {
    const auto& g = ref.at("grad/" + s.name).f32;
    float maxabs = 0;
    for (float v : g) maxabs = std::max(maxabs, std::abs(v));
    float worst = 0;
    for (std::size_t i = 0; i < s.numel; ++i)
      worst = std::max(worst, std::abs(grads[s.offset + i] - g[i]));
    EXPECT_LE(worst, 1e-4f * maxabs) << s.name << ": max |error| " << worst
                                     << " against max |grad| " << maxabs;
  }
}

TEST_P(ReferenceTest, TenAdamWStepsMatchPyTorch) {
  Model model(cfg);
  load_weights(model);
  const auto& hp = ref.at("adamw/hparams").f32;  // lr, beta1, beta2, eps, weight_decay, clip
  OptimizerConfig oc;
  oc.lr = hp[0], oc.beta1 = hp[1], oc.beta2 = hp[2], oc.eps = hp[3];
  oc.weight_decay = hp[4], oc.grad_clip = hp[5];
  AdamW opt(oc, model.layout());
  const auto& tokens = ref.at("tokens").i32;
  const auto& targets = ref.at("targets").i32;
  const auto& losses = ref.at("adamw/losses").f32;
  const auto& norms = ref.at("adamw/grad_norms").f32;
  GptActivations acts(cfg, B);
  AlignedBuffer<float> grads(model.layout().total());
  const double N = static_cast<double>(B) * cfg.seq_len;
  for (int k = 0; k < 10; ++k) {
    grads.zero();
    const double loss =
        gpt_forward_backward(model, acts, grads.span(), tokens.data(), targets.data(), 1.0f) / N;
    EXPECT_NEAR(loss, losses[k], 1e-4 * losses[k]) << "step " << k;
    const double norm = scale_and_norm(grads.span(), opt.chunks(), static_cast<float>(1.0 / N), 1);
    EXPECT_NEAR(norm, norms[k], 1e-4 * norms[k]) << "step " << k;
    ASSERT_TRUE(opt.step(model.params(), grads.span(), clip_coefficient(norm, oc.grad_clip),
                         oc.lr, 1));
  }
}

INSTANTIATE_TEST_SUITE_P(Files, ReferenceTest,
                         ::testing::Values("gpt_reference.bin", "gpt_reference_long.bin"),
                         [](const auto& info) {
                           return std::string(info.param) == "gpt_reference.bin" ? "T16" : "T300";
                         });

}  // namespace
}  // namespace cllm
