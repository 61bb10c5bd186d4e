// The settings of a training run as its checkpoints record them (root
// attributes, by name), and what a resume makes of a difference: settings
// that define the run (data, model shape, batch, seed) must match, those that
// only steer it (schedule, cadences, --keep) may change with a warning.
#pragma once

#include <string>
#include <vector>

#include "cllm/base/recorded_settings.h"
#include "cllm/train/train_config.h"
#include "cllm/train/train_settings.h"

namespace cllm {

// The settings a TrainConfig holds: the model's shape and its recorded rows
// of train_settings.cpp (the matmul choices among them) (not --threads or
// --bucket-mb, which change no result beyond float rounding).
RunSettings config_settings(const TrainConfig& config);
// All that a run records: config_settings, the policy's recorded rows and
// the data's path (its identity is the data's to give: TokenSource).
RunSettings recorded_settings(const TrainRunConfig& settings);

// As a user would type it: integers in decimal, reals in the fewest digits
// that read back as the same float (or double).
std::string setting_text(const SettingValue& v);

// Each difference in a SettingError's syntax, the setting in braces (the
// data as {data}, named by its path).
struct SettingsComparison {
  std::vector<std::string> refused;   // "{seed} 1 (checkpoint) vs 2 (now)"
  std::vector<std::string> changed;   // "{lr} 0.001 -> 0.002"
};

// The attribute names compare_settings looks at (and "data", which names
// the data in its messages): all a resume reads of a checkpoint's settings.
std::vector<std::string> compared_setting_names();

// Compares the settings a checkpoint recorded with this run's. Settings the
// checkpoint does not record (older files) are not compared.
SettingsComparison compare_settings(const RunSettings& recorded, const RunSettings& now);

}  // namespace cllm
