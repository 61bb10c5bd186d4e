// Forward and backward passes of the whole GPT-2 model over one micro-batch.
// The model comes in as const: a pass writes only the caller's activations
// and gradient buffer, so any number of threads can run passes at once over
// one shared model, each with its own GptActivations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "cllm/kernels/aligned_buffer.h"
#include "cllm/model/model.h"
#include "cllm/model/tensor_layout.h"

namespace cllm {

// One block's saved activations, each (B,T,...) for one micro-batch.
struct BlockActivations {
  float* ln_1;       // (B,T,C)
  float* ln_1_mean;  // (B,T)
  float* ln_1_rstd;  // (B,T)
  float* qkv;        // (B,T,3C)
  float* atty;       // (B,T,C)   attention output before c_proj
  float* att;        // (B,NH,T,T) softmax probabilities
  float* res_2;      // (B,T,C)   residual stream after attention
  float* ln_2;       // (B,T,C)
  float* ln_2_mean;  // (B,T)
  float* ln_2_rstd;  // (B,T)
  float* fch;        // (B,T,4C)  c_fc output
  float* fch_gelu;   // (B,T,4C)
  float* res_3;      // (B,T,C)   residual stream after the MLP
};

// Activations of one micro-batch of B sequences, plus the scratch the
// backward pass needs, in one aligned buffer with named views.
// Seconds one thread spent in each kind of kernel, summed over the forward
// and backward passes since the last reset: where a step's time goes.
struct KernelSeconds {
  double matmul = 0;     // every matrix product (BLAS), forward and backward
  double attention = 0;  // causal self-attention, forward and backward
  double other = 0;      // layernorm, GELU, residual adds, embeddings, loss
};

class GptActivations {
 public:
  GptActivations(const ModelConfig& config, int batch);

  int batch() const { return B_; }
  std::size_t bytes() const { return buffer_.bytes(); }
  const TensorLayout& layout() const { return layout_; }

  float* encoded;  // (B,T,C)
  std::vector<BlockActivations> h;
  float* ln_f;       // (B,T,C)
  float* ln_f_mean;  // (B,T)
  float* ln_f_rstd;  // (B,T)
  float* logits;     // (B,T,V) logits; after a loss, probabilities; after backward, dlogits
  float* losses;     // (B,T)
  // Scratch, reused layer after layer.
  float* proj;   // (B,T,C)  c_proj outputs before the residual add
  float* dres;   // (B,T,C)  gradient of the residual stream
  float* dbtc;   // (B,T,C)
  float* dqkv;   // (B,T,3C)
  float* dh1;    // (B,T,4C)
  float* dh2;    // (B,T,4C)
  float* datt;   // (T,T)

  KernelSeconds seconds;  // accumulated by gpt_forward and gpt_backward

 private:
  int B_;
  TensorLayout layout_;
  AlignedBuffer<float> buffer_;
};

// Runs the model on inputs (B,T). With targets, returns the sum over the B*T
// positions of the cross-entropy loss and leaves probabilities in
// acts.logits; without, returns 0 and leaves the logits.
double gpt_forward(const Model& model, GptActivations& acts, const std::int32_t* inputs,
                   const std::int32_t* targets);

// Adds d(dloss * sum of losses)/d(parameters) into grads (the model's
// layout). Needs the gpt_forward with targets just run on these activations.
void gpt_backward(const Model& model, GptActivations& acts, std::span<float> grads,
                  const std::int32_t* inputs, const std::int32_t* targets, float dloss);

}  // namespace cllm
