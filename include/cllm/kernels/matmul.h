// The matrix engine: every matrix product of a training step goes through a
// thread's MatrixEngine, which runs it on oneDNN's matmul primitive (the
// default) or on OpenBLAS's sgemm, in fp32 or with bf16 inputs.
//
// oneDNN picks its kernels by CPUID features (AVX-512, avx512_bf16, AMX);
// Debian's OpenBLAS picks them by CPU model, and runs AVX2 or even SSE3
// kernels on CPUs newer than it knows. OpenBLAS has no bf16 product.
//
// One engine per thread, made and used by that thread only: it caches one
// oneDNN primitive per product shape, created on first use, each with a
// scratchpad the engine owns (a primitive run by two threads at once gives
// wrong results unless each has its own). Nothing here starts a thread: an
// OpenMP team of one thread per core runs one product per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace cllm::kernels {

enum class MatmulEngine { onednn, openblas };

// The products' inputs: fp32, or rounded to bf16 (8 bits of mantissa) with
// fp32 accumulation and fp32 output.
enum class Precision { fp32, bf16 };

struct MatmulConfig {
  MatmulEngine engine = MatmulEngine::onednn;
  Precision precision = Precision::fp32;
};

const char* to_string(MatmulEngine engine);
const char* to_string(Precision precision);

// The bits of a bfloat16: the upper half of an fp32, rounded to nearest even.
using bf16 = std::uint16_t;
bf16 to_bf16(float x);
float from_bf16(bf16 x);
void to_bf16(bf16* out, const float* in, std::size_t n);

// One operand of a product: a row-major matrix whose rows are `ld` elements
// apart, read as its transpose when `transposed`. `low` is the caller's bf16
// copy of the same elements at the same offsets, when it keeps one (the
// model's weights); without it a bf16 product rounds a copy of `values`.
struct MatrixView {
  const float* values;
  int ld;
  bool transposed = false;
  const bf16* low = nullptr;
};

class OpenBlas;  // blas.h

class MatrixEngine {
 public:
  explicit MatrixEngine(MatmulConfig options = {});
  ~MatrixEngine();
  MatrixEngine(MatrixEngine&&) noexcept;
  MatrixEngine& operator=(MatrixEngine&&) noexcept;

  const MatmulConfig& options() const { return options_; }

  // c (M,N; rows ldc apart) = alpha * a (M,K) @ b (K,N) + beta * c, where
  // beta is 0 (overwrite) or 1 (accumulate, as the backward passes do).
  void multiply(int M, int N, int K, float alpha, MatrixView a, MatrixView b, float beta, float* c,
                int ldc);

  // The n contiguous values rounded to bf16 once, for several products that
  // read them (matmul_backward's dout feeds two): a copy the engine holds
  // until the next call, to pass as MatrixView::low. nullptr when the
  // products are fp32, or emulate bf16 (they round their inputs themselves).
  const bf16* round_once(const float* values, std::size_t n);

  // Memory the engine holds: its primitives' scratchpads and bf16 copies
  // of the operands it rounds. It grows with the first product of each
  // shape; after a training step's first micro-batch it stays put.
  std::size_t bytes() const;

  // Seconds spent in multiply() since the engine was made, rounding included.
  double seconds() const { return seconds_; }

 private:
  struct OneDnn;  // oneDNN's types stay out of this header
  MatmulConfig options_;
  std::unique_ptr<OneDnn> onednn_;
  std::unique_ptr<OpenBlas> openblas_;
  double seconds_ = 0;
};

// The engine and the kernels it picked on this CPU, for logs:
// "oneDNN 2.6.3 (avx512_core_bf16)", "OpenBLAS 0.3.21 (Haswell kernels)".
std::string matmul_engine_name(MatmulEngine engine);

// "" when this CPU multiplies bf16 natively (avx512_bf16 or AMX, as oneDNN
// sees it, ONEDNN_MAX_CPU_ISA included); otherwise one line saying that
// bf16 products are emulated and slower than fp32.
std::string bf16_support_warning();

// False for the pair that has no implementation: OpenBLAS has no bf16
// product. (The engine refuses it; BatchConfig::validate names the settings.)
bool is_implemented(const MatmulConfig& options);

}  // namespace cllm::kernels
