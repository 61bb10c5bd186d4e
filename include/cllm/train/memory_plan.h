// The memory a training run will hold, reckoned from its settings alone, so
// that a size the process can never have fails at once, naming the settings
// behind it, before anything large is built (--layers 1000000 took 90 s and
// 5.8 GB to fail as the model was built; --global-batch 2147483646 blamed
// the model).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cllm/train/train_config.h"

namespace cllm {

// One part of a run's memory; settings names them as SettingError does
// ("{n_layer}"), so front ends spell them their own way.
struct MemoryPart {
  std::string what;      // "the parameters, their gradient and AdamW's moments"
  std::string settings;  // "{n_layer} 1000000, {n_embd} 256, vocabulary 50257"
  double bytes = 0;
};

// What Trainer holds on each of `ranks` ranks: the parameters, the gradient
// sum, AdamW's moments (and the bf16 copy), one context a thread, and the
// token windows of a step (two sets: one is read ahead) and of an evaluation.
// Allocator and library overheads are left out: a lower bound.
std::vector<MemoryPart> training_memory(const TrainConfig& config, int ranks);

// The most this process can hold, and what sets it: the address-space limit
// (ulimit -v) less what is mapped, the cgroup's memory.max (Slurm's
// --mem) less its use, or physical memory; nullopt when none can be read.
struct MemoryLimit {
  double bytes = 0;
  std::string name;  // "the address-space limit (ulimit -v)", ...
};
std::optional<MemoryLimit> memory_limit();

// Throws SettingsOutOfMemory (out_of_memory.h) when the parts add up to more
// than the limit, naming the largest parts and their settings.
void check_memory(const std::vector<MemoryPart>& parts, const std::optional<MemoryLimit>& limit);

}  // namespace cllm
