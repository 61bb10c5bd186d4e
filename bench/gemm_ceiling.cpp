// The machine's practical fp32 GEMM ceiling at the shapes of CLLM's models:
// every OpenMP thread runs its own single-threaded cblas_sgemm, as the
// trainer's threads do, on the forward matmul shapes of one micro-batch of 8
// sequences (N = 8 x seq rows). Prints GFLOP/s per preset and thread count,
// and one JSON line.
//
//   build/release/bench/cllm_gemm_ceiling [--threads 1,2] [--seconds 2]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/kernels/kernels.h"
#include "cllm/train/train_config.h"

namespace {

struct Shape {
  int m, n, k;  // out (m,n) = inp (m,k) @ weight (n,k)^T, as matmul_forward
};

// The forward matmuls of one block and the output head, for a micro-batch.
std::vector<Shape> model_shapes(const cllm::ModelConfig& c, int micro_batch) {
  const int N = micro_batch * c.seq_len, C = c.n_embd;
  return {{N, 3 * C, C}, {N, C, C}, {N, 4 * C, C}, {N, C, 4 * C}, {N, c.vocab_size, C}};
}

// GFLOP/s of `threads` threads each multiplying its own matrices for about
// `seconds`; every thread runs the same sequence of shapes.
double measure(const std::vector<Shape>& shapes, int threads, double seconds) {
  double flops_per_round = 0;
  for (const Shape& s : shapes) flops_per_round += 2.0 * s.m * s.n * s.k;
  int rounds = 0;
  double elapsed = 0;
#pragma omp parallel num_threads(threads)
  {
    std::size_t most = 0;
    for (const Shape& s : shapes)
      most = std::max({most, static_cast<std::size_t>(s.m) * s.k,
                       static_cast<std::size_t>(s.n) * s.k, static_cast<std::size_t>(s.m) * s.n});
    cllm::AlignedBuffer<float> a(most), b(most), out(most);
    for (std::size_t i = 0; i < most; ++i) a[i] = 0.001f * (i % 97), b[i] = 0.002f * (i % 89);
    auto round = [&] {
      for (const Shape& s : shapes)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1.0f, a.data(), s.k,
                    b.data(), s.k, 0.0f, out.data(), s.n);
    };
    round();  // warm-up: OpenBLAS buffers, page faults
#pragma omp barrier
    // One thread reads the clock, all stop after the same round.
    const double t0 = omp_get_wtime();
    int r = 0;
    while (true) {
      round();
      ++r;
#pragma omp barrier
#pragma omp single
      elapsed = omp_get_wtime() - t0;  // the single's barrier publishes it
      if (elapsed >= seconds) break;
    }
#pragma omp single
    rounds = r;
  }
  return flops_per_round * rounds * threads / elapsed / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> thread_counts = {1, 2};
  double seconds = 2.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    if (opt == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else if (opt == "--threads") {
      thread_counts.clear();
      std::stringstream list(argv[i + 1]);
      for (std::string t; std::getline(list, t, ',');) thread_counts.push_back(std::stoi(t));
    } else {
      std::fprintf(stderr, "cllm_gemm_ceiling: unknown option %s\n", opt.c_str());
      return 2;
    }
  }
  cllm::kernels::use_single_threaded_blas();
  std::string json = "{\"gemm_ceiling_gflops\": {";
  std::printf("%-8s %8s %10s\n", "preset", "threads", "GFLOP/s");
  for (const char* preset : {"small", "medium"}) {
    const auto shapes = model_shapes(cllm::preset_config(preset), 8);
    json += std::string(preset == std::string("small") ? "" : ", ") + "\"" + preset + "\": {";
    for (std::size_t i = 0; i < thread_counts.size(); ++i) {
      const double g = measure(shapes, thread_counts[i], seconds);
      std::printf("%-8s %8d %10.1f\n", preset, thread_counts[i], g);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s\"%d\": %.1f", i ? ", " : "", thread_counts[i], g);
      json += buf;
    }
    json += "}";
  }
  std::printf("%s}}\n", json.c_str());
  return 0;
}
