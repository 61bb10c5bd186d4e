// The settings of a training run, one row each: where the value lives, the
// range it must be in, its option and help, and what a resume may do with
// it. Validation, the command line, the checkpoints' records and resume
// read this table, so a new numeric setting is a field and a row.
// (The model's shape, the choices - --recompute, --matmul, --precision,
// --overlap - and watching have code of their own; their records are in
// run_settings.cpp.)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "cllm/base/recorded_settings.h"
#include "cllm/io/dataset_file.h"
#include "cllm/train/run_config.h"
#include "cllm/train/train_config.h"

namespace cllm {

struct TrainRunConfig {
  TrainConfig config;
  RunConfig policy;
  DataConfig data;
};

// What validation holds a value to; the message is "{name} must be ...".
enum class ValueRange { any, positive, not_negative, unit_interval };

// Whether checkpoints record the setting, and if so whether a resume may
// change it: the data, the model's shape, the batch and the seed make the
// parameters and the step's windows what they are; a resume that changed
// them would continue another run.
enum class OnResume { not_recorded, must_match, may_change };

// Which part of the command line registers it: the batch options that
// train and bench share, the run's own, or the allreduce's.
enum class OptionGroup { batch, run, allreduce };

struct Setting {
  // As checkpoints record it and messages name it ({lr}); the option is
  // --name with dashes (option_name).
  const char* name;
  const char* help;
  std::variant<int& (*)(TrainRunConfig&), float& (*)(TrainRunConfig&), double& (*)(TrainRunConfig&),
               std::uint64_t& (*)(TrainRunConfig&), std::string& (*)(TrainRunConfig&),
               std::optional<double>& (*)(TrainRunConfig&)>
      field;
  ValueRange range = ValueRange::any;
  OnResume on_resume = OnResume::not_recorded;
  OptionGroup group = OptionGroup::run;
  // True for a field of TrainConfig: TrainConfig::validate checks those.
  bool of_config = false;

  // The value, as checkpoints record it (an unset optional: 0).
  SettingValue value(const TrainRunConfig& settings) const;
};

// In --help's order.
std::span<const Setting> train_settings();
const Setting& train_setting(std::string_view name);  // throws std::logic_error if none

// Throws SettingError for the first setting out of its range; of_config:
// only TrainConfig's (else only the others).
void check_ranges(const TrainRunConfig& settings, bool of_config);

}  // namespace cllm
