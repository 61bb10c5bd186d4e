// The matrix engine over oneDNN's matmul primitive or OpenBLAS's sgemm.
// See cllm/kernels/matmul.h.
#include "cllm/kernels/matmul.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <bit>
#include <map>
#include <stdexcept>
#include <tuple>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/kernels/blas.h"

namespace cllm::kernels {

const char* to_string(MatmulEngine engine) {
  return engine == MatmulEngine::onednn ? "onednn" : "openblas";
}

const char* to_string(Precision precision) {
  return precision == Precision::fp32 ? "fp32" : "bf16";
}

bf16 to_bf16(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16>((bits >> 16) | 0x40u);  // NaN stays NaN
  return static_cast<bf16>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);  // nearest, ties to even
}

float from_bf16(bf16 x) { return std::bit_cast<float>(static_cast<std::uint32_t>(x) << 16); }

void to_bf16(bf16* out, const float* in, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) out[i] = to_bf16(in[i]);
}

namespace {

// A growable scratch array that keeps its memory between products.
template <typename T>
T* reserve(AlignedBuffer<T>& buffer, std::size_t count) {
  if (buffer.size() < count) buffer = AlignedBuffer<T>(count);
  return buffer.data();
}

// An operand's stored matrix: rows x cols, rows ld apart.
struct Stored {
  int rows, cols;
};
Stored stored_shape(int rows, int cols, const MatrixView& m) {
  return m.transposed ? Stored{cols, rows} : Stored{rows, cols};
}

// Copies the stored matrix of m into out, packed (ld = cols), through convert.
template <typename Out, typename Convert>
void pack(Out* out, const MatrixView& m, Stored s, Convert convert) {
  for (int r = 0; r < s.rows; ++r) {
    const float* in = m.values + static_cast<std::size_t>(r) * m.ld;
    Out* o = out + static_cast<std::size_t>(r) * s.cols;
#pragma omp simd
    for (int c = 0; c < s.cols; ++c) o[c] = convert(in[c]);
  }
}

}  // namespace

// ------------------------------------------------------------------ oneDNN

struct MatrixEngine::OneDnn {
  // A product's shape, operand layouts and constants: one primitive each.
  using Key = std::tuple<int, int, int, int, int, int, bool, bool, float, float>;

  struct Entry {
    dnnl::matmul primitive;
    dnnl::memory a, b, c, scratchpad;  // their handles are set per call
  };

  explicit OneDnn(Precision precision)
      : precision(precision), engine(dnnl::engine::kind::cpu, 0), stream(engine) {
    // oneDNN 2.6 has no bf16 product below AVX-512: then a bf16 engine
    // rounds the inputs to bf16 and multiplies them in fp32.
    if (precision == Precision::bf16) {
      try {
        primitive_desc(1, 1, 1, 1, 1, 1, false, false, 1.0f, 0.0f, kBf16);
      } catch (const dnnl::error& err) {
        if (err.status != dnnl_unimplemented) throw;
        emulated_bf16 = true;
      }
    }
  }

  static constexpr auto kBf16 = dnnl::memory::data_type::bf16;
  static constexpr auto kF32 = dnnl::memory::data_type::f32;

  // c (M,N) = alpha * a (M,K) @ b (K,N) + beta * c; a transposed reads it
  // through strides (1, lda), not a copy.
  dnnl::matmul::primitive_desc primitive_desc(int M, int N, int K, int lda, int ldb, int ldc,
                                              bool ta, bool tb, float alpha, float beta,
                                              dnnl::memory::data_type type) const {
    using dims = dnnl::memory::dims;
    auto matrix = [](int rows, int cols, int ld, bool transposed, dnnl::memory::data_type t) {
      return dnnl::memory::desc(dims{rows, cols}, t, transposed ? dims{1, ld} : dims{ld, 1});
    };
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops sum;
      sum.append_sum(beta);
      attr.set_post_ops(sum);
    }
    const dnnl::matmul::desc desc(matrix(M, K, lda, ta, type), matrix(K, N, ldb, tb, type),
                                  dnnl::memory::desc(dims{M, N}, kF32, dims{ldc, 1}));
    return dnnl::matmul::primitive_desc(desc, attr, engine);
  }

  Entry& entry(const Key& key) {
    auto found = entries.find(key);
    if (found != entries.end()) return found->second;
    const auto [M, N, K, lda, ldb, ldc, ta, tb, alpha, beta] = key;
    const auto pd = primitive_desc(M, N, K, lda, ldb, ldc, ta, tb, alpha, beta,
                                   precision == Precision::bf16 && !emulated_bf16 ? kBf16 : kF32);
    scratchpad_bytes = std::max(scratchpad_bytes, pd.scratchpad_desc().get_size());
    Entry e{dnnl::matmul(pd), dnnl::memory(pd.src_desc(), engine, DNNL_MEMORY_NONE),
            dnnl::memory(pd.weights_desc(), engine, DNNL_MEMORY_NONE),
            dnnl::memory(pd.dst_desc(), engine, DNNL_MEMORY_NONE),
            dnnl::memory(pd.scratchpad_desc(), engine, DNNL_MEMORY_NONE)};
    return entries.emplace(key, std::move(e)).first->second;
  }

  // The operand (rows, cols) as the primitive reads it, and its leading
  // dimension: fp32 as it is; bf16, the caller's copy or one rounded here
  // into `low`; emulated bf16, fp32 values rounded to bf16 into `rounded`.
  std::pair<const void*, int> operand(const MatrixView& m, int rows, int cols,
                                      AlignedBuffer<bf16>& low, AlignedBuffer<float>& rounded) {
    if (precision == Precision::fp32) return {m.values, m.ld};
    const Stored s = stored_shape(rows, cols, m);
    const std::size_t count = static_cast<std::size_t>(s.rows) * s.cols;
    if (emulated_bf16) {
      pack(reserve(rounded, count), m, s, [](float x) { return from_bf16(to_bf16(x)); });
      return {rounded.data(), s.cols};
    }
    if (m.low) return {m.low, m.ld};
    pack(reserve(low, count), m, s, [](float x) { return to_bf16(x); });
    return {low.data(), s.cols};
  }

  void multiply(int M, int N, int K, float alpha, const MatrixView& a, const MatrixView& b,
                float beta, float* c, int ldc) {
    const auto [pa, lda] = operand(a, M, K, low_a, rounded_a);
    const auto [pb, ldb] = operand(b, K, N, low_b, rounded_b);
    Entry& e = entry({M, N, K, lda, ldb, ldc, a.transposed, b.transposed, alpha, beta});
    e.a.set_data_handle(const_cast<void*>(pa));
    e.b.set_data_handle(const_cast<void*>(pb));
    e.c.set_data_handle(c);
    e.scratchpad.set_data_handle(reserve(scratchpad, scratchpad_bytes));
    // The C call: the C++ one builds a hash map of its arguments every time.
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, e.a.get()},
                                    {DNNL_ARG_WEIGHTS, e.b.get()},
                                    {DNNL_ARG_DST, e.c.get()},
                                    {DNNL_ARG_SCRATCHPAD, e.scratchpad.get()}};
    dnnl::error::wrap_c_api(
        dnnl_primitive_execute(e.primitive.get(), stream.get(), 4, args), "matmul");
  }

  const bf16* round_once(const float* values, std::size_t n) {
    if (precision == Precision::fp32 || emulated_bf16) return nullptr;
    to_bf16(reserve(held, n), values, n);
    return held.data();
  }

  std::size_t bytes() const {
    return scratchpad.bytes() + low_a.bytes() + low_b.bytes() + held.bytes() +
           rounded_a.bytes() + rounded_b.bytes();
  }

  Precision precision;
  bool emulated_bf16 = false;
  dnnl::engine engine;
  dnnl::stream stream;
  std::map<Key, Entry> entries;
  std::size_t scratchpad_bytes = 0;
  AlignedBuffer<std::uint8_t> scratchpad;
  AlignedBuffer<bf16> low_a, low_b, held;  // held: round_once's
  AlignedBuffer<float> rounded_a, rounded_b;
};

// ------------------------------------------------------------------ engine

MatrixEngine::MatrixEngine(MatmulConfig options) : options_(options) {
  if (!is_implemented(options))
    throw std::invalid_argument("bf16 products need the onednn engine: OpenBLAS has none");
  if (options.engine == MatmulEngine::onednn) onednn_ = std::make_unique<OneDnn>(options.precision);
  else openblas_ = std::make_unique<OpenBlas>();
}

MatrixEngine::~MatrixEngine() = default;
MatrixEngine::MatrixEngine(MatrixEngine&&) noexcept = default;
MatrixEngine& MatrixEngine::operator=(MatrixEngine&&) noexcept = default;

void MatrixEngine::multiply(int M, int N, int K, float alpha, MatrixView a, MatrixView b,
                            float beta, float* c, int ldc) {
  const double start = omp_get_wtime();
  if (onednn_) {
    onednn_->multiply(M, N, K, alpha, a, b, beta, c, ldc);
  } else {
    openblas_->sgemm(a.transposed, b.transposed, M, N, K, alpha, a.values, a.ld, b.values, b.ld,
                     beta, c, ldc);
  }
  seconds_ += omp_get_wtime() - start;
}

const bf16* MatrixEngine::round_once(const float* values, std::size_t n) {
  if (!onednn_) return nullptr;
  const double start = omp_get_wtime();
  const bf16* low = onednn_->round_once(values, n);
  seconds_ += omp_get_wtime() - start;
  return low;
}

std::size_t MatrixEngine::bytes() const { return onednn_ ? onednn_->bytes() : 0; }

bool is_implemented(const MatmulConfig& options) {
  return !(options.engine == MatmulEngine::openblas && options.precision == Precision::bf16);
}

// ------------------------------------------------------------------ names

namespace {

// oneDNN's ISA as ONEDNN_MAX_CPU_ISA spells it.
const char* isa_name(dnnl::cpu_isa isa) {
  using i = dnnl::cpu_isa;
  switch (isa) {
    case i::sse41: return "sse41";
    case i::avx: return "avx";
    case i::avx2: return "avx2";
    case i::avx2_vnni: return "avx2_vnni";
    case i::avx512_mic: return "avx512_mic";
    case i::avx512_mic_4ops: return "avx512_mic_4ops";
    case i::avx512_core: return "avx512_core";
    case i::avx512_core_vnni: return "avx512_core_vnni";
    case i::avx512_core_bf16: return "avx512_core_bf16";
    case i::avx512_core_amx: return "avx512_core_amx";
    default: return "no JIT";
  }
}

bool native_bf16(dnnl::cpu_isa isa) {
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

}  // namespace

std::string matmul_engine_name(MatmulEngine engine) {
  if (engine == MatmulEngine::openblas) return OpenBlas().name();
  const dnnl_version_t* v = dnnl::version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (" + isa_name(dnnl::get_effective_cpu_isa()) + ")";
}

std::string bf16_support_warning() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  if (native_bf16(isa)) return "";
  return std::string("this CPU has no bf16 instructions that oneDNN uses (it runs ") +
         isa_name(isa) + "): bf16 products are emulated, and slower than fp32";
}

}  // namespace cllm::kernels
