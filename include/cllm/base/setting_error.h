// A setting with a value the library cannot use. The message names each
// setting as {name}, by the name checkpoints record it under (n_layer,
// micro_batch): what() drops the braces, and a front end renders the names
// its own way (the CLI as --layers, --micro-batch), so that a shape read
// from a checkpoint is never reported as an option the user did not give.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cllm {

// How a front end names settings in messages (the CLI: n_layer as --layers).
using SettingNames = std::function<std::string(std::string_view)>;

// Names settings as checkpoints record them: the default.
inline std::string recorded_name(std::string_view setting) { return std::string(setting); }

// message with each {name} replaced by name_of(name); "{{" stands for "{".
std::string name_settings(std::string_view message, const SettingNames& name_of);

class SettingError : public std::invalid_argument {
 public:
  // message: "{n_head} (3) must divide {n_embd} (8)".
  explicit SettingError(const std::string& message);
  // The message with each {name} replaced by name_of(name).
  std::string text(const SettingNames& name_of) const { return name_settings(message_, name_of); }
  // A value quoted in a message (a file name), its braces kept as they are
  // rather than read as a setting's name: "{{" stands for "{".
  static std::string literal(std::string_view value);

 private:
  std::string message_;
};

// Throws SettingError(message) unless ok.
inline void require_setting(bool ok, const std::string& message) {
  if (!ok) throw SettingError(message);
}

}  // namespace cllm
