// The model's shape, its presets and its validation.
#pragma once

#include <string>

namespace cllm {

// GPT-2 architecture. The vocabulary size comes from the data; the defaults
// are the small preset.
struct ModelConfig {
  int vocab_size = 256;  // V
  int seq_len = 128;     // T, also the number of learned positions
  int n_layer = 4;       // L
  int n_head = 4;        // NH
  int n_embd = 256;      // C

  // Throws SettingError naming the setting (setting_error.h).
  void validate() const;
  // Model FLOPs per trained token (forward + backward): 6 x matmul
  // parameters plus the attention term, as PLATFORM.md counts them.
  double flops_per_token() const;
};

// What a training pass keeps for its backward pass (gpt.h): every block's
// activations (none), or each block's output only, the rest recomputed one
// block at a time in backward (block: about a third more compute, a fraction
// of the memory, the same results bit for bit).
enum class Recompute { none, block };

// Named shapes: small = 4 layers, 4 heads, 256 wide, seq 128;
// medium = 6, 6, 384, seq 256. Throws SettingError for other names.
ModelConfig preset_config(const std::string& name);

}  // namespace cllm
