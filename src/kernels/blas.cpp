// OpenBLAS, opened at first use. See cllm/kernels/blas.h.
#include "cllm/kernels/blas.h"

#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "cllm/base/address_space.h"

namespace cllm::kernels {

// The library found at configure time: OpenBLAS's OpenMP build (CMakeLists.txt).
constexpr const char* kLibrary = CLLM_OPENBLAS_LIBRARY;

// Address space Debian's OpenBLAS 0.3.21 maps as it loads (its buffers for
// MAX_THREADS threads): 297 MiB measured, with room to spare.
constexpr std::size_t kMappedAtLoad = std::size_t{320} << 20;

struct OpenBlas::Functions {
  decltype(&cblas_sgemm) sgemm;
  decltype(&openblas_set_num_threads) set_num_threads;
  decltype(&openblas_get_config) get_config;
  decltype(&openblas_get_corename) get_corename;
};

namespace {

std::string mib(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Refuses, before the library loads and hangs, an address-space limit that
// cannot hold its buffers.
void check_address_space() {
  const std::optional<std::size_t> left = address_space_left();
  if (left && *left < kMappedAtLoad)
    throw std::runtime_error(std::string(kLibrary) + ": OpenBLAS maps about " + mib(kMappedAtLoad) +
                             " as it loads, and the address-space limit (ulimit -v) leaves " +
                             mib(*left) + ": raise the limit, or use --matmul onednn");
}

template <typename Function>
Function find(void* library, const char* name) {
  void* symbol = dlsym(library, name);
  if (!symbol) throw std::runtime_error(std::string(kLibrary) + ": no " + name + " in it");
  return reinterpret_cast<Function>(symbol);
}

}  // namespace

OpenBlas::OpenBlas() {
  void* library = dlopen(kLibrary, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  if (!library) {
    check_address_space();
    library = dlopen(kLibrary, RTLD_NOW | RTLD_NODELETE);
  }
  if (!library) throw std::runtime_error(std::string("cannot open OpenBLAS: ") + dlerror());
  functions_ = std::make_unique<const Functions>(Functions{
      find<decltype(Functions::sgemm)>(library, "cblas_sgemm"),
      find<decltype(Functions::set_num_threads)>(library, "openblas_set_num_threads"),
      find<decltype(Functions::get_config)>(library, "openblas_get_config"),
      find<decltype(Functions::get_corename)>(library, "openblas_get_corename")});
  library_ = library;
  // OpenBLAS's OpenMP build sizes each call's team by omp_get_max_threads()
  // unless omp_in_parallel(), which is false inside a team of one: with
  // --threads 1 it would start its own threads. This sets its own count to
  // 1; our parallel regions all name their team size with num_threads().
  functions_->set_num_threads(1);
}

OpenBlas::~OpenBlas() {
  if (library_) dlclose(library_);  // RTLD_NODELETE: the library stays
}

void OpenBlas::sgemm(bool a_transposed, bool b_transposed, int M, int N, int K, float alpha,
                     const float* a, int lda, const float* b, int ldb, float beta, float* c,
                     int ldc) const {
  functions_->sgemm(CblasRowMajor, a_transposed ? CblasTrans : CblasNoTrans,
                    b_transposed ? CblasTrans : CblasNoTrans, M, N, K, alpha, a, lda, b, ldb, beta,
                    c, ldc);
}

namespace {

// "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" -> "OpenBLAS 0.3.21"
std::string library_and_version(std::string_view config) {
  const auto first_space = config.find(' ');
  const auto second_space =
      first_space == std::string_view::npos ? first_space : config.find(' ', first_space + 1);
  return std::string(config.substr(0, second_space));
}

}  // namespace

std::string OpenBlas::name() const {
  return library_and_version(functions_->get_config()) + " (" + functions_->get_corename() +
         " kernels)";
}

std::string OpenBlas::kernel_warning() const {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return "";
  // OpenBLAS's x86-64 kernels that use AVX2 and FMA (or more), spelled as
  // openblas_get_corename() spells them (its corename table in dynamic.c).
  constexpr std::array<std::string_view, 6> kAvx2Kernels = {
      "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator"};
  const std::string core = functions_->get_corename();
  if (std::find(kAvx2Kernels.begin(), kAvx2Kernels.end(), core) != kAvx2Kernels.end()) return "";
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return library_and_version(functions_->get_config()) + " runs its " + core +
         " kernels on a CPU with " + (avx512 ? "AVX-512" : "AVX2") +
         ": matrix products are several times slower than they can be; set "
         "OPENBLAS_CORETYPE=" +
         (avx512 ? "SkylakeX" : "Haswell") + " in the environment of every rank";
}

void use_single_threaded_blas() {
  // OpenBLAS, when an engine opens it, sets its own count to 1 (OpenBlas()).
  omp_set_num_threads(1);
}

}  // namespace cllm::kernels
