// Tiny models for tests that need one in process: a training configuration,
// and an initialised model with its optimizer (enough to write a checkpoint).
#pragma once

#include "cllm/model/model.h"
#include "cllm/train/optimizer.h"
#include "cllm/train/train_config.h"

namespace cllm::test {

// 2 layers of 2 heads, 32 wide, over a vocabulary of 32 tokens and windows
// of 32; micro-batches of 2, 8 sequences a step, 20 steps at lr 3e-3 after
// 5 warm-up steps; 2 micro-batches per evaluation.
inline TrainConfig tiny_train_config(int threads) {
  TrainConfig c;
  c.model.vocab_size = 32;
  c.model.seq_len = 32;
  c.model.n_layer = 2;
  c.model.n_head = 2;
  c.model.n_embd = 32;
  c.batch.micro_batch = 2;
  c.batch.global_batch = 8;
  c.steps = 20;
  c.batch.threads = threads;
  c.seed = 4321;
  c.optim.lr = 3e-3f;
  c.optim.warmup_steps = 5;
  c.eval_batches = 2;
  return c;
}

// One layer of 2 heads, 8 wide, over the 256 bytes and windows of 8,
// initialised from seed 1, with a fresh AdamW.
struct TinyModel {
  TrainConfig config = [] {
    TrainConfig c;
    c.model.vocab_size = 256;
    c.model.seq_len = 8;
    c.model.n_layer = 1;
    c.model.n_head = 2;
    c.model.n_embd = 8;
    return c;
  }();
  Model model{config.model};
  AdamW optimizer{config.optim, model.layout()};

  TinyModel() { model.init_gpt2(1); }
};

}  // namespace cllm::test
