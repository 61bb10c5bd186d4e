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
#include "cllm/kernels/kernels.h"
#include "cllm/kernels/matmul.h"
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
  float* att_lse;    // (B,NH,T)  log-sum-exp of each attention row's scores
  float* res_2;      // (B,T,C)   residual stream after attention
  float* ln_2;       // (B,T,C)
  float* ln_2_mean;  // (B,T)
  float* ln_2_rstd;  // (B,T)
  float* fch;        // (B,T,4C)  c_fc output (its GELU is recomputed in backward)
  float* res_3;      // (B,T,C)   residual stream after the MLP
};

// Activations of one micro-batch of B sequences, plus the scratch the
// backward pass needs, in one aligned buffer with named views.
// Seconds one thread spent in each kind of kernel, summed over the forward
// and backward passes since the last reset: where a step's time goes.
struct KernelSeconds {
  double matmul = 0;     // every matrix product (the engine's time), attention's included
  double attention = 0;  // the rest of attention: its softmax, forward and backward
  double other = 0;      // layernorm, GELU, residual adds, biases, embeddings, loss
};

class GptActivations {
 public:
  GptActivations(const ModelConfig& config, int micro_batch, Recompute recompute = Recompute::none,
                 kernels::MatmulConfig matmul_options = {});

  // layout().total() for these settings, without building it (memory_plan.h);
  // a double, so that no setting overflows it.
  static double floats(const ModelConfig& config, int micro_batch, Recompute recompute);

  int micro_batch() const { return micro_batch_; }
  Recompute recompute() const { return recompute_; }
  // The activations and the matrix engine's scratch (which is sized by the
  // first pass: measure after one).
  std::size_t bytes() const { return buffer_.bytes() + matmul.bytes(); }
  const TensorLayout& layout() const { return layout_; }

  float* encoded;  // (B,T,C)
  std::vector<BlockActivations> h;  // Recompute::block: all but res_3 shared
  float* ln_f;       // (B,T,C)
  float* ln_f_mean;  // (B,T)
  float* ln_f_rstd;  // (B,T)
  float* logits;     // (kLogitRows,V) one chunk of positions' logits, then their gradient
  float* losses;     // (B,T)
  // Scratch, reused layer after layer.
  float* proj;   // (B,T,C)  c_proj outputs before the residual add
  float* dres;   // (B,T,C)  gradient of the residual stream
  float* dbtc;   // (B,T,C)
  float* dqkv;   // (B,T,3C)
  float* gelu;   // (B,T,4C) GELU of the block in hand's fch, then its gradient
  float* dh1;    // (B,T,4C)
  float* attn_scratch;  // kernels::attention_scratch_floats(): one tile of scores and its gradient

  KernelSeconds seconds;  // accumulated by gpt_forward and gpt_forward_backward
  kernels::MatrixEngine matmul;  // this thread's: every product of its passes

 private:
  int micro_batch_;  // sequences; B in the shape comments and the kernels
  Recompute recompute_;
  TensorLayout layout_;
  AlignedBuffer<float> buffer_;
};

// Positions whose logits a pass holds at once: the output head, the loss and
// their gradients run over the B*T positions this many at a time, so that
// no (B,T,V) array is ever held.
inline constexpr int kLogitRows = 64;

// Runs the model on inputs (B,T). With targets, returns the sum over the B*T
// positions of the cross-entropy loss (acts.losses holds each); without,
// returns 0 and leaves what gpt_logits needs.
double gpt_forward(const Model& model, GptActivations& acts, const std::int32_t* inputs,
                   const std::int32_t* targets);

// Logits (rows, V) of the positions first .. first + rows - 1 (b * T + t)
// into out, from the gpt_forward just run on these activations.
void gpt_logits(const Model& model, GptActivations& acts, int first, int rows, float* out);

// ---- Training's pass in pieces. The trainer's threads run them in step,
// each on its own micro-batch, so that every layer's gradient is summed over
// the threads (and sent to the other ranks) as soon as all of them have it;
// gpt_forward_backward below is their composition on one thread.

// The embeddings, the blocks and the final layernorm (acts.ln_f).
void gpt_trunk_forward(const Model& model, GptActivations& acts, const std::int32_t* inputs);
// The output head runs over the B*T positions in this many chunks of kLogitRows.
int gpt_head_chunks(const Model& model, const GptActivations& acts);
// Chunk `chunk` of the output head: its logits, the sum of its positions'
// losses (returned), acts.logits = the gradient of dloss x that sum w.r.t.
// the logits, and the chunk's rows of d(loss)/d(ln_f) into acts.dbtc.
double gpt_head_chunk(const Model& model, GptActivations& acts, int chunk,
                      const std::int32_t* targets, float dloss);
// wte's gradient from that chunk, rows `vocab` only: dwte[v] += the sum over
// the chunk's positions of dlogits[pos][v] * ln_f[pos]. chunk_owner (read
// only, maybe another thread's) ran gpt_head_chunk; `mine` multiplies.
void gpt_head_weight_gradient(const Model& model, GptActivations& mine,
                              const GptActivations& chunk_owner, int chunk, kernels::Rows vocab,
                              float* dwte);
// After the last chunk: the final layernorm's backward (its gradients added
// into dln_f_w, dln_f_b); acts.dres = d(loss)/d(last block's output).
void gpt_head_finish(const Model& model, GptActivations& acts, float* dln_f_w, float* dln_f_b);
// Block l's backward: its gradients added into dw, acts.dres carried from
// the block's output to its input. Blocks go from n_layer - 1 down to 0;
// then kernels::encoder_backward(_rows) takes acts.dres to wte and wpe.
void gpt_block_backward(const Model& model, GptActivations& acts, int l,
                        const BlockTensors<float>& dw);
// The same in its two halves (gpt_unit_starts' units), MLP then attention:
// the first adds only the MLP tensors' gradients into dw, the second only
// the attention half's.
void gpt_block_backward_mlp(const Model& model, GptActivations& acts, int l,
                            const BlockTensors<float>& dw);
void gpt_block_backward_attention(const Model& model, GptActivations& acts, int l,
                                  const BlockTensors<float>& dw);

// Training's pass: the forward pass with targets, and the backward pass of
// dloss * (the sum of the losses), added into grads (the model's layout).
// Returns the loss sum, as gpt_forward does.
double gpt_forward_backward(const Model& model, GptActivations& acts, std::span<float> grads,
                            const std::int32_t* inputs, const std::int32_t* targets, float dloss);

}  // namespace cllm
