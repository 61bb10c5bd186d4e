// The matrix engine (kernels/matmul.h) against float64 products, for every
// form of product the kernels use: plain and transposed operands, rows
// further apart than the matrix is wide (attention's views into qkv), a
// scale, and accumulation into the output.
//
// fp32 must be within 1e-5 of the largest |value| (today's tolerance for the
// kernels). bf16 rounds each input to 8 significant bits (unit roundoff u =
// 2^-8) and accumulates in fp32, so each element is within
//   (2u + u^2 + K * 2^-24) * sum_k |a_ik| |b_kj|
// of the exact product (plus fp32's rounding of beta * c), the bound this
// test asserts, element by element. That bf16 really ran is checked too:
// its largest error must exceed what fp32 gives.
//
// ctest also runs these tests under ONEDNN_MAX_CPU_ISA=AVX512_CORE (a CPU
// without bf16 instructions, where oneDNN emulates them) and AVX2 (where
// oneDNN 2.6 has no bf16 product, and the engine multiplies bf16-rounded
// inputs in fp32).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "cllm/kernels/blas.h"
#include "cllm/kernels/matmul.h"
#include "cllm/kernels/rng.h"

namespace cllm {
namespace {

namespace k = kernels;

// A product c (M,N) = alpha * op(a) (M,K) @ op(b) (K,N) + beta * c, with
// the operands' rows lda, ldb apart.
struct Product {
  const char* name;
  int M, N, K;
  bool ta, tb;
  int pad;  // extra elements per stored row beyond the matrix's width
  float alpha, beta;
};

// The kernels' products at small, odd sizes.
const Product kProducts[] = {
    {"linear forward: inp @ W^T", 37, 48, 40, false, true, 0, 1.0f, 0.0f},
    {"linear dX: dout @ W, accumulated", 37, 40, 48, false, false, 0, 1.0f, 1.0f},
    {"linear dW: dout^T @ inp, accumulated", 48, 40, 37, true, false, 0, 1.0f, 1.0f},
    {"attention scores: q @ k^T * scale, strided", 64, 71, 16, false, true, 80, 0.25f, 0.0f},
    {"attention p @ v, strided, accumulated", 64, 16, 71, false, false, 80, 1.0f, 1.0f},
    {"attention dv: p^T @ dout, strided, accumulated", 71, 16, 64, true, false, 80, 1.0f, 1.0f},
    {"output head dW over 600 rows", 33, 24, 600, true, false, 0, 1.0f, 1.0f},
};

struct Matrices {
  std::vector<float> a, b, c;
  int lda, ldb, ldc;
};

Matrices random_matrices(const Product& p, Rng& rng) {
  Matrices m;
  // Stored shapes: a is (M,K), or (K,M) when transposed; likewise b.
  const int a_rows = p.ta ? p.K : p.M, a_cols = p.ta ? p.M : p.K;
  const int b_rows = p.tb ? p.N : p.K, b_cols = p.tb ? p.K : p.N;
  m.lda = a_cols + p.pad;
  m.ldb = b_cols + p.pad;
  m.ldc = p.N + p.pad;
  m.a.resize(static_cast<std::size_t>(a_rows) * m.lda);
  m.b.resize(static_cast<std::size_t>(b_rows) * m.ldb);
  m.c.resize(static_cast<std::size_t>(p.M) * m.ldc);
  for (auto& x : m.a) x = rng.normal();
  for (auto& x : m.b) x = rng.normal();
  for (auto& x : m.c) x = rng.normal();
  return m;
}

float at(const std::vector<float>& v, int ld, bool transposed, int row, int col) {
  return transposed ? v[static_cast<std::size_t>(col) * ld + row]
                    : v[static_cast<std::size_t>(row) * ld + col];
}

struct Errors {
  double worst_over_bound = 0;  // max |c - exact| / bound; must be <= 1
  double max_error = 0;         // max |c - exact|
  double max_value = 0;         // max |exact|
};

// The engine's c against float64 products of the given inputs; bound_of
// turns sum_k |a||b| and K into an element's allowed error.
template <typename Bound>
Errors compare(const Product& p, const Matrices& in, const std::vector<float>& c, Bound bound_of) {
  Errors e;
  for (int i = 0; i < p.M; ++i)
    for (int j = 0; j < p.N; ++j) {
      double exact = 0, magnitude = 0;
      for (int kk = 0; kk < p.K; ++kk) {
        const double prod = static_cast<double>(at(in.a, in.lda, p.ta, i, kk)) *
                            at(in.b, in.ldb, p.tb, kk, j);
        exact += prod;
        magnitude += std::abs(prod);
      }
      const double c0 = in.c[static_cast<std::size_t>(i) * in.ldc + j];
      exact = p.alpha * exact + p.beta * c0;
      const double got = c[static_cast<std::size_t>(i) * in.ldc + j];
      const double err = std::abs(got - exact);
      const double bound =
          bound_of(std::abs(p.alpha) * magnitude, p.K) + 2.0 * 0x1p-24 * std::abs(exact);
      e.worst_over_bound = std::max(e.worst_over_bound, err / bound);
      e.max_error = std::max(e.max_error, err);
      e.max_value = std::max(e.max_value, std::abs(exact));
    }
  return e;
}

std::vector<float> run(k::MatrixEngine& engine, const Product& p, const Matrices& in,
                       const k::bf16* a_low = nullptr, const k::bf16* b_low = nullptr) {
  std::vector<float> c = in.c;
  engine.multiply(p.M, p.N, p.K, p.alpha, {in.a.data(), in.lda, p.ta, a_low},
                  {in.b.data(), in.ldb, p.tb, b_low}, p.beta, c.data(), in.ldc);
  return c;
}

class MatmulTest : public ::testing::TestWithParam<k::MatmulConfig> {
 protected:
  void SetUp() override { k::use_single_threaded_blas(); }
};

TEST_P(MatmulTest, EveryProductMatchesFloat64WithinItsPrecisionsBound) {
  const k::MatmulConfig options = GetParam();
  k::MatrixEngine engine(options);
  Rng rng(7);
  for (const Product& p : kProducts) {
    SCOPED_TRACE(p.name);
    const Matrices in = random_matrices(p, rng);
    // Twice: the second call reuses the primitive made by the first.
    for (int call = 0; call < 2; ++call) {
      const std::vector<float> c = run(engine, p, in);
      if (options.precision == k::Precision::fp32) {
        const Errors e = compare(p, in, c, [](double, int) { return 0.0; });
        EXPECT_LE(e.max_error, 1e-5 * e.max_value);
      } else {
        constexpr double u = 0x1p-8;
        const Errors e = compare(p, in, c, [&](double magnitude, int K) {
          return (2 * u + u * u + K * 0x1p-24) * magnitude;
        });
        EXPECT_LE(e.worst_over_bound, 1.0);
        // Rounding the inputs to bf16 costs far more than fp32's 1e-6.
        EXPECT_GT(e.max_error, 1e-4 * e.max_value) << "the inputs were not rounded to bf16";
      }
    }
  }
}

// A bf16 copy the caller keeps (the model's weights) gives the product that
// the engine's own rounding of the fp32 values gives; fp32 products ignore it.
TEST_P(MatmulTest, CallersBf16CopyGivesTheSameProduct) {
  const k::MatmulConfig options = GetParam();
  k::MatrixEngine engine(options);
  Rng rng(11);
  for (const Product& p : kProducts) {
    SCOPED_TRACE(p.name);
    const Matrices in = random_matrices(p, rng);
    std::vector<k::bf16> b_low(in.b.size());
    k::to_bf16(b_low.data(), in.b.data(), in.b.size());
    const std::vector<float> rounded_here = run(engine, p, in);
    const std::vector<float> with_copy = run(engine, p, in, nullptr, b_low.data());
    double worst = 0, largest = 0;
    for (std::size_t i = 0; i < with_copy.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::abs(with_copy[i] - rounded_here[i])));
      largest = std::max(largest, static_cast<double>(std::abs(rounded_here[i])));
    }
    if (options.precision == k::Precision::fp32) {
      EXPECT_EQ(worst, 0.0) << "an fp32 product read the bf16 copy";
    } else {  // the same rounded inputs; the two primitives may sum in another order
      EXPECT_LE(worst, 1e-5 * largest);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Engines, MatmulTest,
    ::testing::Values(k::MatmulConfig{k::MatmulEngine::onednn, k::Precision::fp32},
                      k::MatmulConfig{k::MatmulEngine::openblas, k::Precision::fp32},
                      k::MatmulConfig{k::MatmulEngine::onednn, k::Precision::bf16}),
    [](const auto& info) {
      return std::string(k::to_string(info.param.engine)) + "_" +
             k::to_string(info.param.precision);
    });

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecialValues) {
  EXPECT_EQ(k::to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(k::from_bf16(k::to_bf16(1.0f + 0x1p-8f)), 1.0f);            // a tie: to even
  EXPECT_EQ(k::from_bf16(k::to_bf16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);  // a tie: to even
  EXPECT_EQ(k::from_bf16(k::to_bf16(1.0f + 0x1p-8f + 0x1p-20f)), 1.0f + 0x1p-7f);
  EXPECT_EQ(k::from_bf16(k::to_bf16(-2.5f)), -2.5f);
  EXPECT_TRUE(std::isinf(k::from_bf16(k::to_bf16(INFINITY))));
  EXPECT_TRUE(std::isnan(k::from_bf16(k::to_bf16(NAN))));
  EXPECT_TRUE(std::isinf(k::from_bf16(k::to_bf16(3.4e38f))));  // rounds up past the largest
}

// Under ctest's ONEDNN_MAX_CPU_ISA=AVX512_CORE or AVX2 runs, the CPU as
// oneDNN sees it has no bf16 instructions: cllm warns once at start.
TEST(Bf16Support, WarnsWhenOneDnnRunsNoBf16Instructions) {
  const char* isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!isa) GTEST_SKIP() << "ctest runs this with ONEDNN_MAX_CPU_ISA set";
  const std::string warning = k::bf16_support_warning();
  EXPECT_NE(warning.find("no bf16 instructions"), std::string::npos) << warning;
  // The limit is a ceiling: a CPU without AVX-512 (Zen 3) runs AVX2 under either.
  const bool avx512 = std::string(isa) != "AVX2" && __builtin_cpu_supports("avx512f");
  EXPECT_NE(k::matmul_engine_name(k::MatmulEngine::onednn).find(avx512 ? "(avx512_core)" : "(avx2)"),
            std::string::npos)
      << k::matmul_engine_name(k::MatmulEngine::onednn);
}

// round_once: the engine's own bf16 copy for several products (bf16), or
// nothing to use (fp32).
TEST(MatmulRoundOnce, HoldsTheBf16CopyOnlyForBf16Products) {
  const std::vector<float> values = {1.0f, 1.0f + 0x1p-8f, -3.14159f, 1e-3f, 65504.0f};
  k::MatrixEngine fp32, bf16({k::MatmulEngine::onednn, k::Precision::bf16});
  EXPECT_EQ(fp32.round_once(values.data(), values.size()), nullptr);
  const k::bf16* low = bf16.round_once(values.data(), values.size());
  if (!k::bf16_support_warning().empty() && !low) GTEST_SKIP() << "bf16 is emulated here";
  ASSERT_NE(low, nullptr);
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(low[i], k::to_bf16(values[i])) << i;
}

TEST(MatmulConfig, OpenBlasHasNoBf16) {
  EXPECT_THROW(k::MatrixEngine({k::MatmulEngine::openblas, k::Precision::bf16}),
               std::invalid_argument);
}

}  // namespace
}  // namespace cllm
