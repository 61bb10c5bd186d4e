#include "cllm/base/setting_error.h"

namespace cllm {

std::string name_settings(std::string_view message, const SettingNames& name_of) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t open = message.find('{', pos);
    if (open != std::string::npos && message.substr(open, 2) == "{{") {  // literal()'s
      out += message.substr(pos, open + 1 - pos);
      pos = open + 2;
      continue;
    }
    const std::size_t close = open == std::string::npos ? open : message.find('}', open);
    if (close == std::string::npos) return out.append(message.substr(pos));
    out += message.substr(pos, open - pos);
    out += name_of(message.substr(open + 1, close - open - 1));
    pos = close + 1;
  }
}

SettingError::SettingError(const std::string& message)
    : std::invalid_argument(name_settings(message, recorded_name)),
      message_(message) {}

std::string SettingError::literal(std::string_view value) {
  std::string escaped;
  for (const char ch : value) {
    escaped += ch;
    if (ch == '{') escaped += '{';
  }
  return escaped;
}

}  // namespace cllm
