// The BLAS under the matrix products: how CLLM calls it, and what it runs.
#pragma once

#include <string>

namespace cllm::kernels {

// Make every BLAS call run on its caller's thread. Call once before training;
// it sets OpenMP's default team size to 1, so read OMP_NUM_THREADS first and
// give every parallel region a num_threads clause.
void use_single_threaded_blas();

// The BLAS library and the kernels it chose for this CPU, for logs:
// "OpenBLAS 0.3.21 (Haswell kernels)".
std::string blas_name();

// One line of advice when the BLAS runs kernels far below what this CPU can
// do, or "" when it does not. OpenBLAS before 0.3.25 falls back to its SSE3
// (Prescott) kernels on Intel models newer than it knows (Emerald Rapids,
// for one): 4-6x slower matrix products. OPENBLAS_CORETYPE fixes that, and
// only before the library loads, so CLLM says what to set.
std::string blas_kernel_warning();

}  // namespace cllm::kernels
