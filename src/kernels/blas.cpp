// OpenBLAS setup and identification. See cllm/kernels/blas.h.
#include "cllm/kernels/blas.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <string_view>

namespace cllm::kernels {

void use_single_threaded_blas() {
  // OpenBLAS's OpenMP build sizes each call's team by omp_get_max_threads()
  // unless omp_in_parallel(), which is false inside a team of one: with
  // --threads 1 it would start its own threads. openblas_set_num_threads(1)
  // sets that default to 1 (it calls omp_set_num_threads); our parallel
  // regions all name their team size with num_threads().
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
}

namespace {

// "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" -> "OpenBLAS 0.3.21"
std::string library_and_version() {
  const std::string_view config = openblas_get_config();
  const auto first_space = config.find(' ');
  const auto second_space =
      first_space == std::string_view::npos ? first_space : config.find(' ', first_space + 1);
  return std::string(config.substr(0, second_space));
}

}  // namespace

std::string blas_name() {
  return library_and_version() + " (" + openblas_get_corename() + " kernels)";
}

std::string blas_kernel_warning() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return "";
  // OpenBLAS's x86-64 kernels that use AVX2 and FMA (or more), spelled as
  // openblas_get_corename() spells them (its corename table in dynamic.c).
  constexpr std::array<std::string_view, 6> kAvx2Kernels = {
      "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator"};
  const std::string core = openblas_get_corename();
  if (std::find(kAvx2Kernels.begin(), kAvx2Kernels.end(), core) != kAvx2Kernels.end()) return "";
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return library_and_version() + " runs its " + core + " kernels on a CPU with " +
         (avx512 ? "AVX-512" : "AVX2") +
         ": matrix products are several times slower than they can be; set "
         "OPENBLAS_CORETYPE=" +
         (avx512 ? "SkylakeX" : "Haswell") + " in the environment of every rank";
}

}  // namespace cllm::kernels
