// The BLAS under --matmul openblas: OpenBLAS's OpenMP build, opened with
// dlopen when an engine first needs it rather than linked. Linked, its
// library initialiser ran before main() and, when the address space was
// short (ulimit -v), looped forever on a failing mmap (OpenBLAS issue
// 5289): every subcommand, --help included, hung for a library that only
// one option uses.
#pragma once

#include <memory>
#include <string>

namespace cllm::kernels {

// A handle on the loaded library. Opening it again is cheap (dlopen counts
// its users); it is never unloaded (RTLD_NODELETE), so its threads and
// buffers live as long as the process, as a linked library's would.
class OpenBlas {
 public:
  // Opens the library and makes its calls run on their caller's thread.
  // Throws std::runtime_error naming the library when it cannot be opened,
  // or when the address space left cannot hold what it maps as it loads.
  OpenBlas();
  ~OpenBlas();
  OpenBlas(const OpenBlas&) = delete;
  OpenBlas& operator=(const OpenBlas&) = delete;

  // cblas_sgemm on row-major matrices: c = alpha * op(a) @ op(b) + beta * c.
  void sgemm(bool a_transposed, bool b_transposed, int M, int N, int K, float alpha, const float* a,
             int lda, const float* b, int ldb, float beta, float* c, int ldc) const;

  // The library and the kernels it chose for this CPU, for logs:
  // "OpenBLAS 0.3.21 (Haswell kernels)".
  std::string name() const;

  // One line of advice when the library runs kernels far below what this
  // CPU can do, or "" when it does not. OpenBLAS before 0.3.25 falls back to
  // its SSE3 (Prescott) kernels on Intel models newer than it knows (Emerald
  // Rapids, for one): 4-6x slower matrix products. OPENBLAS_CORETYPE fixes
  // that, and only before the library loads, so CLLM says what to set.
  std::string kernel_warning() const;

 private:
  struct Functions;  // the library's entry points, found with dlsym
  void* library_ = nullptr;  // dlopen's handle
  std::unique_ptr<const Functions> functions_;
};

// Make every BLAS call run on its caller's thread. Call once before training;
// it sets OpenMP's default team size to 1, so read OMP_NUM_THREADS first and
// give every parallel region a num_threads clause.
void use_single_threaded_blas();

}  // namespace cllm::kernels
