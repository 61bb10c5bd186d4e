// Forward and backward kernels of a GPT-2 block, fp32, for one micro-batch on
// the calling thread. Each backward sits beside its forward with the same
// argument order (outputs, then inputs, then sizes) and accumulates (+=) into
// its gradient outputs, so zeroing once allows accumulation over
// micro-batches - except the input gradients of matmul_backward and
// gelu_backward, which it writes: in a GPT-2 block that product or that GELU
// is the only consumer of its input, so the gradient needs no zeroed buffer
// (zeroing them took 5-10% of a bf16 step).
//
// Sizes: B sequences of T tokens, N = B*T rows, C channels, OC output
// channels, NH heads of hs = C/NH channels, V vocabulary entries.
// Matrix products run on the calling thread's MatrixEngine (matmul.h), in
// its precision; nothing here starts threads or takes a lock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cllm/kernels/blas.h"
#include "cllm/kernels/matmul.h"

namespace cllm::kernels {

// out (N,C) = wte[tokens] (V,C) + wpe[t] (T,C)
void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C);
// Rows [begin, end) of a matrix.
struct Rows {
  int begin, end;
};
// encoder_backward restricted to the rows of dwte and dwpe a thread owns:
// threads owning disjoint rows add one micro-batch each, in turn, without a
// lock, and every row gets its additions in (micro-batch, position) order.
void encoder_backward_rows(float* dwte, float* dwpe, const float* dout,
                           const std::int32_t* tokens, int B, int T, int C, Rows tokens_owned,
                           Rows positions_owned);

// out (N,C) = (inp - mean) * rstd * weight + bias; saves mean (N), rstd (N).
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C);

// A weight matrix (OC,C), with the model's bf16 copy of it when it keeps one.
struct Weight {
  Weight(const float* values, const bf16* low = nullptr) : values(values), low(low) {}
  const float* values;
  const bf16* low;
};

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
void matmul_forward(MatrixEngine& engine, float* out, const float* inp, Weight weight,
                    const float* bias, int N, int C, int OC);
// dinp = dout @ weight (written); dweight and dbias accumulate; dbias may
// be null (no bias).
void matmul_backward(MatrixEngine& engine, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, Weight weight, int N, int C, int OC);

// Causal multi-head self-attention, computed as FlashAttention computes it:
// in tiles of kAttnQueryBlock query rows by kAttnKeyBlock keys with an online
// softmax, so that no array of T x T is ever held. qkv (B,T,3C) holds q, k,
// v; out (B,T,C); lse (B,NH,T) keeps each row's log-sum-exp of its scaled
// scores, from which the backward pass recomputes the probabilities tile by
// tile. scratch: attention_scratch_floats() floats, whatever T.
inline constexpr int kAttnQueryBlock = 64;
inline constexpr int kAttnKeyBlock = 256;
std::size_t attention_scratch_floats();
void attention_forward(MatrixEngine& engine, float* out, float* lse, float* scratch,
                       const float* qkv, int B, int T, int C, int NH);
// dqkv += the gradient through attention of dout; out and lse as the forward
// pass left them.
void attention_backward(MatrixEngine& engine, float* dqkv, float* scratch, const float* dout,
                        const float* qkv, const float* out, const float* lse, int B, int T, int C,
                        int NH);

// GELU, tanh approximation (GPT-2's), over N elements.
void gelu_forward(float* out, const float* inp, std::size_t N);
// dinp = GELU'(inp) * dout (written).
void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t N);

// out = a + b over N elements (its backward is a copy of dout to both).
void residual_forward(float* out, const float* a, const float* b, std::size_t N);

// Softmax over V logits per row, then cross-entropy against targets.
// probs (N,V) may alias logits; losses (N). Returns the sum of the losses,
// accumulated in double so it does not depend on the row order's rounding.
double crossentropy_forward(float* probs, float* losses, const float* logits,
                            const std::int32_t* targets, int N, int V);
// dlogits (N,V) = (probs - onehot(target)) * dloss; may alias probs.
void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets,
                           float dloss, int N, int V);

}  // namespace cllm::kernels
