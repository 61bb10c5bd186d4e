#include "cllm/model/model_config.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "cllm/base/setting_error.h"

namespace cllm {

void ModelConfig::validate() const {
  require_setting(vocab_size > 0, "{vocab_size} must be positive");
  require_setting(seq_len > 0, "{seq_len} must be positive");
  require_setting(n_layer > 0, "{n_layer} must be positive");
  require_setting(n_head > 0, "{n_head} must be positive");
  require_setting(n_embd > 0, "{n_embd} must be positive");
  require_setting(n_embd % n_head == 0, "{n_head} (" + std::to_string(n_head) +
                                            ") must divide {n_embd} (" + std::to_string(n_embd) +
                                            ")");
  // Sizes are computed in 64-bit integers: bound them far below overflow
  // (and far above any model a CPU trains).
  const double L = n_layer, C = n_embd, V = vocab_size, T = seq_len;
  const double params = V * C + T * C + L * 12.0 * C * C;
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", params);
  require_setting(params <= 1e12, "a model of " + std::to_string(n_layer) + " layers, " +
                                      std::to_string(n_embd) + " wide, vocabulary " +
                                      std::to_string(vocab_size) + " and seq " +
                                      std::to_string(seq_len) + " would have " + text +
                                      " parameters, more than 1e12");
}

double ModelConfig::flops_per_token() const {
  const double L = n_layer, C = n_embd, V = vocab_size, T = seq_len;
  return 6.0 * (12.0 * L * C * C + V * C) + 12.0 * L * C * T;
}

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;  // small: ModelConfig's defaults
  if (name == "medium") {
    c.n_layer = 6, c.n_head = 6, c.n_embd = 384, c.seq_len = 256;
  } else if (name != "small") {
    throw SettingError("{preset} must be small or medium, not '" + SettingError::literal(name) +
                       "'");
  }
  return c;
}

}  // namespace cllm
