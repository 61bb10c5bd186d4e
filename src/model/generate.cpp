#include "cllm/model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

#include "cllm/kernels/rng.h"
#include "cllm/model/gpt.h"

namespace cllm {

std::int64_t generate(const Model& model, std::vector<std::int32_t> tokens, const SamplingConfig& o,
                      const std::function<bool(std::int32_t)>& next) {
  if (tokens.empty()) throw std::invalid_argument("generate needs a prompt of one token or more");
  const ModelConfig& c = model.config();
  const int T = c.seq_len, V = c.vocab_size;
  for (const std::int32_t id : tokens)  // each indexes the embedding table
    if (id < 0 || id >= V)
      throw std::invalid_argument("prompt token id " + std::to_string(id) +
                                  " is outside the model's vocabulary of " + std::to_string(V));
  GptActivations acts(c, 1);
  std::vector<std::int32_t> window(T, 0);
  std::vector<float> logits(V), probs(V);
  std::vector<int> order(V);
  Rng rng(o.seed);
  for (int n = 0; n < o.tokens; ++n) {
    // Causal attention: positions after the context don't change its logits.
    const std::size_t len = std::min<std::size_t>(tokens.size(), T);
    std::copy(tokens.end() - static_cast<std::ptrdiff_t>(len), tokens.end(), window.begin());
    gpt_forward(model, acts, window.data(), nullptr);
    gpt_logits(model, acts, static_cast<int>(len) - 1, 1, logits.data());  // the next token's

    std::iota(order.begin(), order.end(), 0);
    int k = (o.top_k > 0 && o.top_k < V) ? o.top_k : V;
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return logits[a] > logits[b]; });
    const float maxv = logits[order[0]];
    double sum = 0.0;
    for (int i = 0; i < k; ++i) {
      probs[i] = std::exp((logits[order[i]] - maxv) / o.temperature);
      sum += probs[i];
    }
    double u = rng.uniform() * sum;
    int pick = order[k - 1];
    for (int i = 0; i < k; ++i) {
      u -= probs[i];
      if (u <= 0) {
        pick = order[i];
        break;
      }
    }
    // The context is the last T tokens: drop the older ones now and then.
    if (tokens.size() >= 2 * static_cast<std::size_t>(T))
      tokens.erase(tokens.begin(), tokens.end() - T);
    tokens.push_back(pick);
    if (!next(pick)) return n + 1;
  }
  return o.tokens;
}

std::vector<std::int32_t> generate(const Model& model, std::vector<std::int32_t> prompt,
                                   const SamplingConfig& options) {
  std::vector<std::int32_t> all = prompt;
  generate(model, std::move(prompt), options, [&all](std::int32_t id) {
    all.push_back(id);
    return true;
  });
  return all;
}

}  // namespace cllm
