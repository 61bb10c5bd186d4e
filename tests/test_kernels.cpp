// Every kernel's backward against central finite differences of its fp32
// forward, on small random shapes. For a kernel out = f(inputs) and a random
// upstream gradient R, L = sum(out * R) (summed in double); the analytic
// gradient of every input and parameter (the backward, accumulated from zero)
// must match (L(x + h) - L(x - h)) / 2h to 1e-2 of that tensor's max |grad|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "cllm/kernels/kernels.h"
#include "cllm/kernels/rng.h"
#include "support/finite_difference.h"
#include "support/stored_attention.h"

namespace cllm {
namespace {

namespace k = kernels;
using Vec = std::vector<float>;

constexpr int B = 2, T = 5, C = 8, NH = 2, OC = 12, V = 11;
constexpr int N = B * T;

Vec random_vec(std::size_t n, Rng& rng, float scale = 1.0f, float offset = 0.0f) {
  Vec v(n);
  for (auto& x : v) x = offset + scale * rng.normal();
  return v;
}

double weighted_sum(const Vec& out, const Vec& r) {
  double s = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) s += static_cast<double>(out[i]) * r[i];
  return s;
}

float max_abs(const Vec& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::abs(x));
  return m;
}

// Compares grad (the analytic gradient of loss() with respect to x) with
// central differences over every element of x; x is restored afterwards.
void expect_matches_fd(const std::string& what, Vec& x, const Vec& grad,
                       const std::function<double()>& loss, float h = 1e-2f,
                       double rel_tol = 1e-2) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  const auto r = test::check_central_differences(x, grad, loss, h);
  const double gmax = r.max_grad, worst = r.worst_error;
  ASSERT_GT(gmax, 1e-3) << what << ": gradient is (almost) zero everywhere";
  EXPECT_LE(worst, rel_tol * gmax) << what << ": worst element " << r.worst_index << " analytic "
                                   << grad[r.worst_index] << " vs finite difference "
                                   << r.worst_fd << " (max |grad| " << gmax << ")";
  ::testing::Test::RecordProperty(what + "_rel_err", std::to_string(worst / gmax));
}

class KernelTest : public ::testing::Test {
 protected:
  void SetUp() override { k::use_single_threaded_blas(); }
  Rng rng{20240601};
  k::MatrixEngine engine;  // oneDNN, fp32: the default
};

// ---------------------------------------------------------------- encoder

TEST_F(KernelTest, EncoderBackwardMatchesFiniteDifferences) {
  std::vector<std::int32_t> tokens(N);
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng.next_u64() % V);
  tokens[7] = tokens[0];  // a repeated token must accumulate both rows' gradients
  tokens[3] = tokens[0];
  Vec wte = random_vec(static_cast<std::size_t>(V) * C, rng);
  Vec wpe = random_vec(static_cast<std::size_t>(T) * C, rng);
  const Vec R = random_vec(static_cast<std::size_t>(N) * C, rng);
  Vec out(R.size());

  // Forward is a gather-and-add: check it element by element first.
  k::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      for (int c = 0; c < C; ++c) {
        ASSERT_EQ(out[(b * T + t) * C + c], wte[tokens[b * T + t] * C + c] + wpe[t * C + c]);
      }
    }
  }

  Vec dwte(wte.size(), 0.0f), dwpe(wpe.size(), 0.0f);
  k::encoder_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C);
  auto loss = [&] {
    k::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return weighted_sum(out, R);
  };
  expect_matches_fd("dwte", wte, dwte, loss);
  expect_matches_fd("dwpe", wpe, dwpe, loss);
  // Rows of tokens that do not occur get nothing.
  for (int v = 0; v < V; ++v)
    if (std::find(tokens.begin(), tokens.end(), v) == tokens.end()) {
      for (int c = 0; c < C; ++c) EXPECT_EQ(dwte[v * C + c], 0.0f) << "token " << v;
    }
}

// ---------------------------------------------------------------- layernorm

TEST_F(KernelTest, LayernormForwardNormalisesRows) {
  Vec inp = random_vec(static_cast<std::size_t>(N) * C, rng, 2.0f, 3.0f);
  Vec weight = random_vec(C, rng, 0.2f, 1.0f), bias = random_vec(C, rng, 0.5f);
  Vec out(inp.size()), mean(N), rstd(N);
  k::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                       bias.data(), N, C);
  for (int n = 0; n < N; ++n) {
    double m = 0, var = 0;
    for (int c = 0; c < C; ++c) m += inp[n * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) var += (inp[n * C + c] - m) * (inp[n * C + c] - m);
    var /= C;
    const double s = 1.0 / std::sqrt(var + 1e-5);
    EXPECT_NEAR(mean[n], m, 1e-5);
    EXPECT_NEAR(rstd[n], s, 1e-5 * s);
    for (int c = 0; c < C; ++c)
      EXPECT_NEAR(out[n * C + c], (inp[n * C + c] - m) * s * weight[c] + bias[c], 1e-5);
  }
}

TEST_F(KernelTest, LayernormBackwardMatchesFiniteDifferences) {
  Vec inp = random_vec(static_cast<std::size_t>(N) * C, rng, 1.0f, 0.5f);
  Vec weight = random_vec(C, rng, 0.3f, 1.0f), bias = random_vec(C, rng, 0.5f);
  const Vec R = random_vec(inp.size(), rng);
  Vec out(inp.size()), mean(N), rstd(N);
  auto loss = [&] {
    k::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), N, C);
    return weighted_sum(out, R);
  };
  loss();
  Vec dinp(inp.size(), 0.0f), dweight(C, 0.0f), dbias(C, 0.0f);
  k::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), R.data(), inp.data(),
                        weight.data(), mean.data(), rstd.data(), N, C);
  expect_matches_fd("dinp", inp, dinp, loss, 1e-3f);
  expect_matches_fd("dweight", weight, dweight, loss, 1e-3f);
  expect_matches_fd("dbias", bias, dbias, loss, 1e-3f);
}

// ---------------------------------------------------------------- matmul

void check_matmul(k::MatrixEngine& engine, Rng& rng, bool with_bias) {
  Vec inp = random_vec(static_cast<std::size_t>(N) * C, rng);
  Vec weight = random_vec(static_cast<std::size_t>(OC) * C, rng, 0.5f);
  Vec bias = random_vec(OC, rng);
  const Vec R = random_vec(static_cast<std::size_t>(N) * OC, rng);
  Vec out(R.size());
  const float* bias_ptr = with_bias ? bias.data() : nullptr;

  // The forward against a naive triple loop in double.
  k::matmul_forward(engine, out.data(), inp.data(), weight.data(), bias_ptr, N, C, OC);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double s = with_bias ? bias[o] : 0.0;
      for (int c = 0; c < C; ++c) s += static_cast<double>(inp[n * C + c]) * weight[o * C + c];
      ASSERT_NEAR(out[n * OC + o], s, 1e-5 * (1 + std::abs(s))) << n << "," << o;
    }

  auto loss = [&] {
    k::matmul_forward(engine, out.data(), inp.data(), weight.data(), bias_ptr, N, C, OC);
    return weighted_sum(out, R);
  };
  Vec dinp(inp.size(), 0.0f), dweight(weight.size(), 0.0f), dbias(OC, 0.0f);
  k::matmul_backward(engine, dinp.data(), dweight.data(), with_bias ? dbias.data() : nullptr, R.data(),
                     inp.data(), weight.data(), N, C, OC);
  expect_matches_fd("dinp", inp, dinp, loss);
  expect_matches_fd("dweight", weight, dweight, loss);
  if (with_bias)
    expect_matches_fd("dbias", bias, dbias, loss);
  else
    EXPECT_EQ(max_abs(dbias), 0.0f);
}

TEST_F(KernelTest, MatmulWithBiasBackwardMatchesFiniteDifferences) { check_matmul(engine, rng, true); }
TEST_F(KernelTest, MatmulWithoutBiasBackwardMatchesFiniteDifferences) { check_matmul(engine, rng, false); }

// ---------------------------------------------------------------- attention

constexpr std::size_t kQkv = static_cast<std::size_t>(N) * 3 * C;
constexpr std::size_t kLse = static_cast<std::size_t>(B) * NH * T;

TEST_F(KernelTest, AttentionForwardIsCausalSoftmax) {
  Vec qkv = random_vec(kQkv, rng);
  Vec out(static_cast<std::size_t>(N) * C), lse(kLse), scratch(k::attention_scratch_floats());
  k::attention_forward(engine, out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, NH);
  const int hs = C / NH;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        // Reference in double: softmax of q.k / sqrt(hs) over t2 <= t, then att @ v.
        std::vector<double> p(T, 0.0);
        double maxv = -1e300, sum = 0;
        auto at = [&](int tt, int part, int c) {
          return static_cast<double>(qkv[(b * T + tt) * 3 * C + part * C + h * hs + c]);
        };
        for (int t2 = 0; t2 <= t; ++t2) {
          for (int c = 0; c < hs; ++c) p[t2] += at(t, 0, c) * at(t2, 1, c);
          p[t2] /= std::sqrt(static_cast<double>(hs));
          maxv = std::max(maxv, p[t2]);
        }
        for (int t2 = 0; t2 <= t; ++t2) sum += p[t2] = std::exp(p[t2] - maxv);
        EXPECT_NEAR(lse[(b * NH + h) * T + t], maxv + std::log(sum), 1e-5);
        for (int c = 0; c < hs; ++c) {
          double o = 0;
          for (int t2 = 0; t2 <= t; ++t2) o += p[t2] / sum * at(t2, 2, c);
          EXPECT_NEAR(out[(b * T + t) * C + h * hs + c], o, 1e-5);
        }
      }
}

TEST_F(KernelTest, AttentionBackwardMatchesFiniteDifferences) {
  Vec qkv = random_vec(kQkv, rng);
  const Vec R = random_vec(static_cast<std::size_t>(N) * C, rng);
  Vec out(R.size()), lse(kLse), scratch(k::attention_scratch_floats());
  auto loss = [&] {
    k::attention_forward(engine, out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, NH);
    return weighted_sum(out, R);
  };
  loss();
  Vec dqkv(kQkv, 0.0f);
  k::attention_backward(engine, dqkv.data(), scratch.data(), R.data(), qkv.data(), out.data(), lse.data(),
                        B, T, C, NH);
  expect_matches_fd("dqkv", qkv, dqkv, loss);
}

TEST_F(KernelTest, AttentionGradientIsCausal) {
  const Vec qkv = random_vec(kQkv, rng);
  Vec out(static_cast<std::size_t>(N) * C), lse(kLse), scratch(k::attention_scratch_floats());
  k::attention_forward(engine, out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, NH);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      // Upstream gradient only on the outputs at (b, t).
      Vec R(out.size(), 0.0f);
      for (int c = 0; c < C; ++c) R[(b * T + t) * C + c] = 1.0f + 0.1f * c;
      Vec dqkv(kQkv, 0.0f);
      k::attention_backward(engine, dqkv.data(), scratch.data(), R.data(), qkv.data(), out.data(),
                            lse.data(), B, T, C, NH);
      for (int b2 = 0; b2 < B; ++b2)
        for (int t2 = 0; t2 < T; ++t2) {
          const float* row = dqkv.data() + (b2 * T + t2) * 3 * C;
          float q = 0, kv = 0;
          for (int c = 0; c < C; ++c) q = std::max(q, std::abs(row[c]));
          for (int c = C; c < 3 * C; ++c) kv = std::max(kv, std::abs(row[c]));
          if (b2 != b || t2 > t) {
            EXPECT_EQ(kv, 0.0f) << "out(" << b << "," << t << ") has a gradient for k/v at ("
                                << b2 << "," << t2 << ")";
          } else {
            EXPECT_GT(kv, 0.0f) << "out(" << b << "," << t << ") has no gradient for k/v at ("
                                << b2 << "," << t2 << ")";
          }
          if (b2 != b || t2 != t) {
            EXPECT_EQ(q, 0.0f) << "q of another position";
          }
        }
    }
  // And the forward: perturbing k and v after t leaves the outputs at t unchanged.
  Vec qkv2 = qkv;
  const int t_last = T - 1;
  for (int b = 0; b < B; ++b)
    for (int c = C; c < 3 * C; ++c) qkv2[(b * T + t_last) * 3 * C + c] += 5.0f;
  Vec out2(out.size()), lse2(kLse);
  k::attention_forward(engine, out2.data(), lse2.data(), scratch.data(), qkv2.data(), B, T, C, NH);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) {
        const std::size_t i = (b * T + t) * C + c;
        if (t < t_last) {
          EXPECT_EQ(out2[i], out[i]) << "output at t=" << t << " sees the future";
        } else {
          EXPECT_NE(out2[i], out[i]);
        }
      }
}

// The tiled kernels (blocks of 64 query rows by 256 keys) at lengths that
// end inside a block, fill one, and span several, forward and backward,
// against two references: naive attention in double precision, and the
// method of the kernels they replaced, which kept the T x T probabilities
// (tests/support/stored_attention.h, in float). Relative error: the largest
// difference over the largest value, at most 1e-5 (about 2e-7 seen).
class AttentionLength : public ::testing::TestWithParam<int> {};

TEST_P(AttentionLength, TiledKernelsMatchNaiveDoubleAndStoredProbabilities) {
  const int LT = GetParam();
  constexpr int LB = 2, LC = 32, LNH = 2, hs = LC / LNH;
  k::MatrixEngine engine;
  Rng rng(LT);
  const std::size_t nqkv = static_cast<std::size_t>(LB) * LT * 3 * LC;
  const std::size_t nout = static_cast<std::size_t>(LB) * LT * LC;
  const Vec qkv = random_vec(nqkv, rng);
  const Vec dout = random_vec(nout, rng);
  Vec out(nout), lse(static_cast<std::size_t>(LB) * LNH * LT),
      scratch(k::attention_scratch_floats()), dqkv(nqkv, 0.0f);
  k::attention_forward(engine, out.data(), lse.data(), scratch.data(), qkv.data(), LB, LT, LC, LNH);
  k::attention_backward(engine, dqkv.data(), scratch.data(), dout.data(), qkv.data(), out.data(),
                        lse.data(), LB, LT, LC, LNH);

  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  std::vector<double> ref_out(nout, 0.0), ref_dqkv(nqkv, 0.0);
  for (int b = 0; b < LB; ++b)
    for (int h = 0; h < LNH; ++h) {
      const auto out_at = [&](int t, int c) {
        return (static_cast<std::size_t>(b) * LT + t) * LC + h * hs + c;
      };
      const auto qkv_at = [&](int t, int part, int c) {
        return (static_cast<std::size_t>(b) * LT + t) * 3 * LC + part * LC + h * hs + c;
      };
      const auto x = [&](int t, int part, int c) {
        return static_cast<double>(qkv[qkv_at(t, part, c)]);
      };
      std::vector<double> p(LT), dp(LT);
      for (int t = 0; t < LT; ++t) {
        double maxv = -1e300, sum = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          p[t2] = 0;
          for (int c = 0; c < hs; ++c) p[t2] += x(t, 0, c) * x(t2, 1, c) * scale;
          maxv = std::max(maxv, p[t2]);
        }
        for (int t2 = 0; t2 <= t; ++t2) sum += p[t2] = std::exp(p[t2] - maxv);
        for (int t2 = 0; t2 <= t; ++t2) p[t2] /= sum;
        for (int c = 0; c < hs; ++c)
          for (int t2 = 0; t2 <= t; ++t2) ref_out[out_at(t, c)] += p[t2] * x(t2, 2, c);
        // Backward of out = p @ v and of the softmax.
        double dot = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          dp[t2] = 0;
          for (int c = 0; c < hs; ++c) {
            const double dy = dout[out_at(t, c)];
            dp[t2] += dy * x(t2, 2, c);
            ref_dqkv[qkv_at(t2, 2, c)] += p[t2] * dy;
          }
          dot += p[t2] * dp[t2];
        }
        for (int t2 = 0; t2 <= t; ++t2) {
          const double ds = p[t2] * (dp[t2] - dot) * scale;
          for (int c = 0; c < hs; ++c) {
            ref_dqkv[qkv_at(t, 0, c)] += ds * x(t2, 1, c);
            ref_dqkv[qkv_at(t2, 1, c)] += ds * x(t, 0, c);
          }
        }
      }
    }
  Vec stored_out(nout), stored_dqkv(nqkv, 0.0f);
  test::stored_attention(stored_out, stored_dqkv, qkv, dout, LB, LT, LC, LNH);

  const auto worst = [](const Vec& got, const auto& want) {
    double w = 0, m = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      w = std::max(w, std::abs(got[i] - static_cast<double>(want[i])));
      m = std::max(m, std::abs(static_cast<double>(want[i])));
    }
    return w / m;
  };
  EXPECT_LE(worst(out, ref_out), 1e-5);
  EXPECT_LE(worst(dqkv, ref_dqkv), 1e-5);
  EXPECT_LE(worst(out, stored_out), 1e-5);
  EXPECT_LE(worst(dqkv, stored_dqkv), 1e-5);
  EXPECT_TRUE(std::all_of(lse.begin(), lse.end(), [](float v) { return std::isfinite(v); }));
}

INSTANTIATE_TEST_SUITE_P(KernelTest, AttentionLength,
                         ::testing::Values(1, 63, 64, 65, 200, 256, 257, 600, 1024));

// ---------------------------------------------------------------- gelu

TEST_F(KernelTest, GeluForwardMatchesTanhFormula) {
  const std::size_t n = 200001;  // x in [-10, 10], step 1e-4
  Vec x(n), y(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = -10.0f + 20.0f * static_cast<float>(i) / (n - 1);
  k::gelu_forward(y.data(), x.data(), n);
  const double s = std::sqrt(2.0 / std::numbers::pi);
  double worst = 0, worst_x = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double xd = x[i];
    const double e = 0.5 * xd * (1.0 + std::tanh(s * (xd + 0.044715 * xd * xd * xd)));
    // Relative to max(1, |x|): at x = -10, 0.5 x (1 + tanh) loses 1 + tanh's
    // rounding (an ulp of 1) times 5, whichever compiler fuses which products.
    const double err = std::abs(y[i] - e) / std::max(1.0, std::abs(xd));
    if (err > worst) worst = err, worst_x = xd;
  }
  std::printf("gelu_forward: max |error| / max(1, |x|) %.3g at x = %.4f\n", worst, worst_x);
  EXPECT_LE(worst, 2.5e-7) << "at x = " << worst_x;
}

TEST_F(KernelTest, GeluBackwardMatchesFiniteDifferences) {
  Vec inp = random_vec(static_cast<std::size_t>(N) * 4 * C, rng, 2.0f);
  inp[0] = 0.0f, inp[1] = -6.0f, inp[2] = 6.0f;
  const Vec R = random_vec(inp.size(), rng);
  Vec out(inp.size());
  auto loss = [&] {
    k::gelu_forward(out.data(), inp.data(), inp.size());
    return weighted_sum(out, R);
  };
  Vec dinp(inp.size(), 0.0f);
  k::gelu_backward(dinp.data(), inp.data(), R.data(), inp.size());
  expect_matches_fd("dinp", inp, dinp, loss, 1e-3f);
  // Also the derivative itself against its closed form in double.
  const double s = std::sqrt(2.0 / std::numbers::pi);
  for (std::size_t i = 0; i < inp.size(); ++i) {
    const double x = inp[i], u = s * (x + 0.044715 * x * x * x), th = std::tanh(u);
    const double d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * s * (1 + 3 * 0.044715 * x * x);
    EXPECT_NEAR(dinp[i], d * R[i], 1e-5 * (1 + std::abs(d * R[i]))) << "x = " << x;
  }
}

// ---------------------------------------------------------------- residual

TEST_F(KernelTest, ResidualForwardAddsAndItsGradientIsTheUpstream) {
  Vec a = random_vec(static_cast<std::size_t>(N) * C, rng);
  Vec b = random_vec(a.size(), rng);
  const Vec R = random_vec(a.size(), rng);
  Vec out(a.size());
  k::residual_forward(out.data(), a.data(), b.data(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(out[i], a[i] + b[i]);
  auto loss = [&] {
    k::residual_forward(out.data(), a.data(), b.data(), a.size());
    return weighted_sum(out, R);
  };
  // The documented backward: a copy of dout to both inputs.
  expect_matches_fd("da", a, R, loss);
  expect_matches_fd("db", b, R, loss);
}

// ---------------------------------------------------------------- crossentropy

TEST_F(KernelTest, CrossentropyForwardMatchesHandComputation) {
  Vec logits = random_vec(static_cast<std::size_t>(N) * V, rng, 2.0f);
  // A dominant logit: row 0's target probability, exp(-200), underflows in
  // fp32, so only the log-sum-exp form gives its loss.
  logits[5] = 200.0f;
  std::vector<std::int32_t> targets(N);
  for (auto& t : targets) t = static_cast<std::int32_t>(rng.next_u64() % V);
  targets[0] = 0;  // row 0's target is not its dominant entry 5: a tiny probability
  Vec probs(logits.size()), losses(N);
  const double total =
      k::crossentropy_forward(probs.data(), losses.data(), logits.data(), targets.data(), N, V);
  double expect_total = 0;
  for (int n = 0; n < N; ++n) {
    const float* z = logits.data() + n * V;
    double maxv = *std::max_element(z, z + V), sum = 0;
    for (int j = 0; j < V; ++j) sum += std::exp(z[j] - maxv);
    const double l = std::log(sum) + maxv - z[targets[n]];
    EXPECT_NEAR(losses[n], l, 1e-5 * (1 + l)) << "row " << n;
    for (int j = 0; j < V; ++j)
      EXPECT_NEAR(probs[n * V + j], std::exp(z[j] - maxv) / sum, 1e-6) << n << "," << j;
    expect_total += l;
  }
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_GT(losses[0], 190.0f);  // -log of a probability near exp(-200)
  EXPECT_NEAR(total, expect_total, 1e-5 * expect_total);

  // probs may alias logits (the model does this): same results.
  Vec inplace = logits, losses2(N);
  const double total2 = k::crossentropy_forward(inplace.data(), losses2.data(), inplace.data(),
                                                targets.data(), N, V);
  EXPECT_EQ(total2, total);
  for (std::size_t i = 0; i < probs.size(); ++i) ASSERT_EQ(inplace[i], probs[i]);
  for (int n = 0; n < N; ++n) ASSERT_EQ(losses2[n], losses[n]);
}

TEST_F(KernelTest, CrossentropyBackwardMatchesFiniteDifferences) {
  Vec logits = random_vec(static_cast<std::size_t>(N) * V, rng, 2.0f);
  std::vector<std::int32_t> targets(N);
  for (auto& t : targets) t = static_cast<std::int32_t>(rng.next_u64() % V);
  const float dloss = 0.37f;
  Vec probs(logits.size()), losses(N);
  auto loss = [&] {
    return dloss *
           k::crossentropy_forward(probs.data(), losses.data(), logits.data(), targets.data(), N,
                                   V);
  };
  loss();
  Vec dlogits(logits.size(), 0.0f);
  k::crossentropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V);
  expect_matches_fd("dlogits", logits, dlogits, loss, 1e-3f);
  // In place (dlogits aliasing probs), as the model calls it.
  loss();
  Vec inplace = probs;
  k::crossentropy_backward(inplace.data(), inplace.data(), targets.data(), dloss, N, V);
  for (std::size_t i = 0; i < inplace.size(); ++i) ASSERT_EQ(inplace[i], dlogits[i]);
}

// ---------------------------------------------------------------- accumulation

// Calls backward(grads) twice on zeroed buffers; every buffer must double.
// (written: buffers the backward writes, which must hold the same values twice.)
void expect_accumulates(const std::string& what, std::vector<Vec*> grads,
                        const std::function<void()>& backward, std::vector<Vec*> written = {}) {
  for (Vec* g : grads) std::fill(g->begin(), g->end(), 0.0f);
  for (Vec* g : written) std::fill(g->begin(), g->end(), 0.0f);
  backward();
  std::vector<Vec> once;
  for (Vec* g : grads) once.push_back(*g);
  std::vector<Vec> written_once;
  for (Vec* g : written) written_once.push_back(*g);
  backward();
  for (std::size_t j = 0; j < written.size(); ++j) {
    ASSERT_GT(max_abs(written_once[j]), 0.0f) << what << " written gradient " << j << " is zero";
    EXPECT_EQ(*written[j], written_once[j]) << what << " written gradient " << j << " accumulates";
  }
  for (std::size_t j = 0; j < grads.size(); ++j) {
    const float m = max_abs(once[j]);
    ASSERT_GT(m, 0.0f) << what << " gradient " << j << " is zero";
    for (std::size_t i = 0; i < once[j].size(); ++i)
      ASSERT_NEAR((*grads[j])[i], 2.0f * once[j][i], 1e-6f * m)
          << what << " gradient " << j << " element " << i << " does not accumulate";
  }
}

// Every gradient of a parameter accumulates; matmul's and GELU's input
// gradients are written (kernels.h).
TEST_F(KernelTest, BackwardsAccumulate) {
  std::vector<std::int32_t> tokens(N);
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng.next_u64() % V);
  const Vec dNC = random_vec(static_cast<std::size_t>(N) * C, rng);
  const Vec dNOC = random_vec(static_cast<std::size_t>(N) * OC, rng);
  const Vec inp = random_vec(static_cast<std::size_t>(N) * C, rng);

  Vec dwte(static_cast<std::size_t>(V) * C), dwpe(static_cast<std::size_t>(T) * C);
  expect_accumulates("encoder", {&dwte, &dwpe}, [&] {
    k::encoder_backward(dwte.data(), dwpe.data(), dNC.data(), tokens.data(), B, T, C);
  });

  const Vec weight = random_vec(C, rng, 0.3f, 1.0f), bias = random_vec(C, rng);
  Vec out(inp.size()), mean(N), rstd(N);
  k::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                       bias.data(), N, C);
  Vec dinp(inp.size()), dweight(C), dbias(C);
  expect_accumulates("layernorm", {&dinp, &dweight, &dbias}, [&] {
    k::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dNC.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), N, C);
  });

  const Vec w = random_vec(static_cast<std::size_t>(OC) * C, rng);
  Vec dw(w.size()), db(OC);
  expect_accumulates("matmul", {&dw, &db}, [&] {
    k::matmul_backward(engine, dinp.data(), dw.data(), db.data(), dNOC.data(), inp.data(), w.data(), N,
                       C, OC);
  }, {&dinp});
  expect_accumulates("matmul without bias", {&dw}, [&] {
    k::matmul_backward(engine, dinp.data(), dw.data(), nullptr, dNOC.data(), inp.data(), w.data(), N, C,
                       OC);
  }, {&dinp});

  const Vec qkv = random_vec(kQkv, rng);
  Vec lse(kLse), scratch(k::attention_scratch_floats()), dqkv(kQkv);
  k::attention_forward(engine, out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, NH);
  expect_accumulates("attention", {&dqkv}, [&] {
    k::attention_backward(engine, dqkv.data(), scratch.data(), dNC.data(), qkv.data(), out.data(),
                          lse.data(), B, T, C, NH);
  });

  expect_accumulates("gelu", {}, [&] {
    k::gelu_backward(dinp.data(), inp.data(), dNC.data(), inp.size());
  }, {&dinp});
}

}  // namespace
}  // namespace cllm
