// The machine's practical GEMM ceiling at the shapes of CLLM's models, on the
// trainer's matrix engine (kernels/matmul.h): every OpenMP thread makes its
// own MatrixEngine and runs, as the trainer's threads do, the products of one
// training pass over a micro-batch of 8 sequences (N = 8 x seq rows): for
// each of the L blocks the forward, dX and dW products of its four linears
// (qkv C->3C, attention projection C->C, fc C->4C, MLP projection 4C->C),
// and for the tied output head C->V the same three products in chunks of
// kLogitRows rows, with the transposes and beta of matmul_forward and
// matmul_backward, in training's order. The figure is FLOP-weighted: all
// these products' FLOPs over the wall time of whole passes, every thread
// stopping after the same pass. The forward/dX/dW columns are each kind's
// own rate (its FLOPs over the time spent in it, summed over the threads).
//
// In bf16 the weights' bf16 copy is made once and handed to the engine
// (MatrixView::low), as the trainer keeps one; the engine rounds the
// activations and gradients itself, as in training.
//
// Prints the engine, the precision and GFLOP/s per preset and thread count,
// then one JSON line: {"matmul": engine name, "precision": "fp32"|"bf16",
// "gemm_ceiling_gflops": {preset: {threads: GFLOP/s}}} (bench/compare.py
// reads it).
//
//   build/release/cllm_gemm_ceiling [--threads 1,2] [--seconds 2]
//       [--matmul onednn|openblas] [--precision fp32|bf16]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/kernels/kernels.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model_config.h"

namespace {

namespace k = cllm::kernels;

constexpr int kMicroBatch = 8;

enum Kind { kForward, kDInput, kDWeight, kKinds };

// One product of the pass: c = a @ b + beta * c, as MatrixEngine::multiply.
struct Product {
  Kind kind;
  int m, n, k;
  k::MatrixView a, b;
  float beta;
  float* c;
  int ldc;
  double flops() const { return 2.0 * m * n * k; }
  // Products of the same key share one oneDNN primitive.
  auto key() const { return std::make_tuple(m, n, k, a.transposed, b.transposed, beta); }
};

// A weight matrix (OC,C) and its bf16 copy, shared by the threads (read only).
struct Weight {
  int C, OC;
  cllm::AlignedBuffer<float> values;
  cllm::AlignedBuffer<k::bf16> low;
};

Weight make_weight(int C, int OC, bool bf16, unsigned seed) {
  const std::size_t n = static_cast<std::size_t>(OC) * C;
  Weight w{C, OC, cllm::AlignedBuffer<float>(n), {}};
  for (std::size_t i = 0; i < n; ++i)
    w.values[i] = 0.002f * static_cast<float>((i + seed) % 89) - 0.088f;
  if (bf16) {
    w.low = cllm::AlignedBuffer<k::bf16>(n);
    k::to_bf16(w.low.data(), w.values.data(), n);
  }
  return w;
}

// The model's linears: per block qkv, attention projection, fc, MLP
// projection, then the tied output head (wte, V x C).
std::vector<Weight> make_weights(const cllm::ModelConfig& c, bool bf16) {
  const int C = c.n_embd;
  std::vector<Weight> w;
  for (int l = 0; l < c.n_layer; ++l) {
    w.push_back(make_weight(C, 3 * C, bf16, 4 * l));
    w.push_back(make_weight(C, C, bf16, 4 * l + 1));
    w.push_back(make_weight(C, 4 * C, bf16, 4 * l + 2));
    w.push_back(make_weight(4 * C, C, bf16, 4 * l + 3));
  }
  w.push_back(make_weight(C, c.vocab_size, bf16, 4 * c.n_layer));
  return w;
}

// One thread's buffers: activations and gradients sized for the widest
// linear, and its own weight gradients (as each trainer thread has).
struct ThreadBuffers {
  cllm::AlignedBuffer<float> inp, out, dout, dinp;
  std::vector<cllm::AlignedBuffer<float>> dweight;
};

ThreadBuffers make_buffers(const std::vector<Weight>& weights, int N) {
  std::size_t most = 0;
  for (const Weight& w : weights)
    most = std::max({most, static_cast<std::size_t>(N) * w.C, static_cast<std::size_t>(N) * w.OC});
  ThreadBuffers t{cllm::AlignedBuffer<float>(most), cllm::AlignedBuffer<float>(most),
                  cllm::AlignedBuffer<float>(most), cllm::AlignedBuffer<float>(most), {}};
  for (std::size_t i = 0; i < most; ++i) {  // the thread's first touch places its pages
    t.inp[i] = 0.001f * static_cast<float>(i % 97);
    t.out[i] = 0.0f;
    t.dout[i] = 0.001f * static_cast<float>(i % 83) - 0.041f;
    t.dinp[i] = 0.0f;
  }
  for (const Weight& w : weights) {
    t.dweight.emplace_back(w.values.size());
    std::fill_n(t.dweight.back().data(), w.values.size(), 0.0f);
  }
  return t;
}

// The products of one training pass over N rows, in the trainer's order:
// the blocks' forwards, the head chunk by chunk (forward, dX, dW), then the
// blocks' backwards from the last. Operands as in kernels.cpp:
//   forward: out (N,OC)   = inp (N,C) @ W (OC,C)^T         beta 0
//   dX:      dinp (N,C)   = dout (N,OC) @ W (OC,C)          beta 0
//   dW:      dW (OC,C)   += dout^T (OC,N) @ inp (N,C)       beta 1
std::vector<Product> training_pass(const std::vector<Weight>& weights, ThreadBuffers& t, int N) {
  std::vector<Product> pass;
  auto forward = [&](const Weight& w, const float* inp, float* out, int rows) {
    pass.push_back({kForward, rows, w.OC, w.C, {inp, w.C},
                    {w.values.data(), w.C, true, w.low.size() ? w.low.data() : nullptr}, 0.0f,
                    out, w.OC});
  };
  auto backward = [&](const Weight& w, float* dweight, const float* dout, const float* inp,
                      float* dinp, int rows) {
    pass.push_back({kDInput, rows, w.C, w.OC, {dout, w.OC},
                    {w.values.data(), w.C, false, w.low.size() ? w.low.data() : nullptr}, 0.0f,
                    dinp, w.C});
    pass.push_back({kDWeight, w.OC, w.C, rows, {dout, w.OC, true}, {inp, w.C}, 1.0f, dweight, w.C});
  };
  const std::size_t head = weights.size() - 1;
  for (std::size_t i = 0; i < head; ++i) forward(weights[i], t.inp.data(), t.out.data(), N);
  const Weight& wte = weights[head];
  for (int first = 0; first < N; first += cllm::kLogitRows) {
    const int rows = std::min(cllm::kLogitRows, N - first);
    const std::size_t at = static_cast<std::size_t>(first) * wte.C;
    // The logits chunk, then its gradient in the same buffer.
    forward(wte, t.inp.data() + at, t.out.data(), rows);
    backward(wte, t.dweight[head].data(), t.out.data(), t.inp.data() + at, t.dinp.data() + at,
             rows);
  }
  for (std::size_t i = head; i-- > 0;)
    backward(weights[i], t.dweight[i].data(), t.dout.data(), t.inp.data(), t.dinp.data(), N);
  return pass;
}

struct Result {
  double gflops = 0;                  // all products, over wall time
  double kind_gflops[kKinds] = {};    // each kind over its own time, summed over threads
};

// `threads` threads, each with its own engine, run training passes for about
// `seconds`; all stop after the same pass.
Result measure(const std::vector<Weight>& weights, int N, const k::MatmulConfig& options,
               int threads, double seconds) {
  Result result;
  double elapsed = 0;
  int passes = 0;
#pragma omp parallel num_threads(threads)
  {
    k::MatrixEngine engine(options);  // made and used by this thread only
    ThreadBuffers buffers = make_buffers(weights, N);
    const std::vector<Product> pass = training_pass(weights, buffers, N);
    auto run = [&](const Product& p) {
      engine.multiply(p.m, p.n, p.k, 1.0f, p.a, p.b, p.beta, p.c, p.ldc);
    };
    // Warm-up: each shape once (its primitive, its scratchpad, bf16 copies).
    std::set<decltype(pass[0].key())> seen;
    for (const Product& p : pass)
      if (seen.insert(p.key()).second) run(p);
    double kind_flops[kKinds] = {}, kind_seconds[kKinds] = {};
    for (const Product& p : pass) kind_flops[p.kind] += p.flops();
#pragma omp barrier
    // One thread reads the clock, all stop after the same pass.
    const double t0 = omp_get_wtime();
    int r = 0;
    while (true) {
      for (const Product& p : pass) {
        const double s = omp_get_wtime();
        run(p);
        kind_seconds[p.kind] += omp_get_wtime() - s;
      }
      ++r;
#pragma omp barrier
#pragma omp single
      elapsed = omp_get_wtime() - t0;  // the single's barrier publishes it
      if (elapsed >= seconds) break;
    }
#pragma omp critical
    for (int i = 0; i < kKinds; ++i)
      result.kind_gflops[i] += kind_flops[i] * r / kind_seconds[i] / 1e9;
#pragma omp single
    passes = r;
  }
  double flops = 0;  // one pass: forward, dX and dW of every linear over N rows
  for (const Weight& w : weights) flops += 3 * 2.0 * N * w.C * w.OC;
  result.gflops = flops * passes * threads / elapsed / 1e9;
  return result;
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "cllm_gemm_ceiling: %s\n", message.c_str());
  std::exit(2);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) >= 0x20) out += ch;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> thread_counts = {1, 2};
  double seconds = 2.0;
  k::MatmulConfig options;
  for (int i = 1; i < argc; i += 2) {
    const std::string opt = argv[i];
    if (opt != "--seconds" && opt != "--threads" && opt != "--matmul" && opt != "--precision")
      usage_error("unknown option " + opt);
    if (i + 1 >= argc) usage_error(opt + " needs a value");
    const std::string value = argv[i + 1];
    const std::string bad = "invalid value '" + value + "' for " + opt;
    if (opt == "--seconds") {
      char* end = nullptr;
      seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end || !(seconds > 0)) usage_error(bad + " (a number > 0)");
    } else if (opt == "--threads") {
      thread_counts.clear();
      std::stringstream list(value);
      for (std::string t; std::getline(list, t, ',');) {
        char* end = nullptr;
        const long n = std::strtol(t.c_str(), &end, 10);
        if (t.empty() || *end || n < 1 || n > 4096) usage_error(bad + " (a list like 1,2)");
        thread_counts.push_back(static_cast<int>(n));
      }
      if (thread_counts.empty()) usage_error(bad + " (a list like 1,2)");
    } else if (opt == "--matmul") {
      if (value == "onednn") options.engine = k::MatmulEngine::onednn;
      else if (value == "openblas") options.engine = k::MatmulEngine::openblas;
      else usage_error(bad + " (onednn or openblas)");
    } else {
      if (value == "fp32") options.precision = k::Precision::fp32;
      else if (value == "bf16") options.precision = k::Precision::bf16;
      else usage_error(bad + " (fp32 or bf16)");
    }
  }
  if (!k::is_implemented(options))
    usage_error("--precision bf16 with --matmul openblas: bf16 products need the onednn engine: "
                "OpenBLAS has none");
  const bool bf16 = options.precision == k::Precision::bf16;
  if (bf16) {
    const std::string warning = k::bf16_support_warning();
    if (!warning.empty()) std::fprintf(stderr, "cllm_gemm_ceiling: warning: %s\n", warning.c_str());
  }
  k::use_single_threaded_blas();
  const std::string engine = k::matmul_engine_name(options.engine);
  const char* precision = k::to_string(options.precision);
  std::printf("matmul: %s, %s; one thread's engine per thread; forward, dX and dW of every "
              "linear, micro-batch of %d sequences\n",
              engine.c_str(), precision, kMicroBatch);
  std::printf("%-8s %8s %10s %10s %10s %10s\n", "preset", "threads", "GFLOP/s", "forward", "dX",
              "dW");
  std::string json = "{\"matmul\": " + json_string(engine) + ", \"precision\": \"" + precision +
                     "\", \"gemm_ceiling_gflops\": {";
  bool first_preset = true;
  for (const char* preset : {"small", "medium"}) {
    const cllm::ModelConfig config = cllm::preset_config(preset);
    const int N = kMicroBatch * config.seq_len;
    const std::vector<Weight> weights = make_weights(config, bf16);
    json += std::string(first_preset ? "" : ", ") + "\"" + preset + "\": {";
    first_preset = false;
    for (std::size_t i = 0; i < thread_counts.size(); ++i) {
      const Result r = measure(weights, N, options, thread_counts[i], seconds);
      std::printf("%-8s %8d %10.1f %10.1f %10.1f %10.1f\n", preset, thread_counts[i], r.gflops,
                  r.kind_gflops[kForward], r.kind_gflops[kDInput], r.kind_gflops[kDWeight]);
      std::fflush(stdout);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s\"%d\": %.1f", i ? ", " : "", thread_counts[i], r.gflops);
      json += buf;
    }
    json += "}";
  }
  std::printf("%s}}\n", json.c_str());
  return 0;
}
