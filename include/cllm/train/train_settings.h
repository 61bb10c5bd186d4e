// The settings of a training run, one row each: where the value lives, the
// range it must be in, its option and help, and what a resume may do with
// it. Validation, the command line, the checkpoints' records and resume
// read this table, so a new numeric setting is a field and a row.
// (The model's shape is recorded as resolve() makes it: run_settings.cpp.)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "cllm/base/recorded_settings.h"
#include "cllm/dist/stall.h"
#include "cllm/io/dataset_file.h"
#include "cllm/train/run_config.h"
#include "cllm/train/train_config.h"

namespace cllm {

// The model's shape as given: a preset, and the sizes given over it.
struct ShapeConfig {
  std::optional<std::string> preset;  // unset: small
  std::optional<int> n_layer, n_head, n_embd, seq_len;

  std::string preset_name() const { return preset.value_or("small"); }
  bool given() const { return preset || n_layer || n_head || n_embd || seq_len; }
  // Throws SettingError for an unknown preset; TrainConfig::validate checks the rest.
  ModelConfig resolve() const;
};

struct TrainRunConfig {
  ShapeConfig shape;
  TrainConfig config;  // its model is shape's, once resolved()
  RunConfig policy;
  DataConfig data;
  StallConfig stall;

  // config with the model's shape resolved; throws SettingError for a shape
  // given with --init, whose checkpoint gives it.
  TrainConfig resolved() const;
};

// What validation holds a value to; the message is "{name} must be ...".
enum class ValueRange { any, positive, not_negative, unit_interval };

// Whether checkpoints record the setting, and if so whether a resume may
// change it: the data, the model's shape, the batch and the seed make the
// parameters and the step's windows what they are; a resume that changed
// them would continue another run.
enum class OnResume { not_recorded, must_match, may_change };

// Which part of the command line registers it: the model's shape, the
// batch, the step's engines and allreduce, and watching the run are train's
// and bench's; the run's own are train's only.
enum class OptionGroup { model, batch, run, step, watch };

// A name an enum setting takes, and its value: --overlap on.
struct Choice {
  const char* name;
  int value;
};

struct Setting {
  // As checkpoints record it and messages name it ({lr}); the option is
  // --name with dashes (option_name).
  const char* name;
  const char* help;
  std::variant<int& (*)(TrainRunConfig&), float& (*)(TrainRunConfig&), double& (*)(TrainRunConfig&),
               std::uint64_t& (*)(TrainRunConfig&), std::string& (*)(TrainRunConfig&),
               std::optional<double>& (*)(TrainRunConfig&), std::optional<int>& (*)(TrainRunConfig&),
               std::optional<std::string>& (*)(TrainRunConfig&), Overlap& (*)(TrainRunConfig&),
               Recompute& (*)(TrainRunConfig&), kernels::MatmulEngine& (*)(TrainRunConfig&),
               kernels::Precision& (*)(TrainRunConfig&)>
      field;
  ValueRange range = ValueRange::any;
  OnResume on_resume = OnResume::not_recorded;
  OptionGroup group = OptionGroup::run;
  // True for a field of TrainConfig: TrainConfig::validate checks those.
  bool of_config = false;
  // An enum's names, its default first (recorded by name).
  std::span<const Choice> choices = {};
  // The default --help shows, where it is not the field's ("" for none).
  const char* shown_default = nullptr;

  // The value, as checkpoints record it (an unset optional: 0, a choice: its name).
  SettingValue value(const TrainRunConfig& settings) const;
  // The choices' names joined by separator: "on|off", "on or off".
  std::string choice_names(const char* separator) const;
  // The value of the choice named name in any case ("OFF"), if any.
  std::optional<int> choice_value(const std::string& name) const;
};

// In --help's order.
std::span<const Setting> train_settings();
const Setting& train_setting(std::string_view name);  // throws std::logic_error if none

// A setting's command-line option, as messages name it (SettingError names
// settings as checkpoints record them): n_layer is --layers, micro_batch
// --micro-batch.
std::string option_name(std::string_view setting);

// Throws SettingError for the first setting out of its range; of_config:
// only TrainConfig's (else only the others).
void check_ranges(const TrainRunConfig& settings, bool of_config);

}  // namespace cllm
