#include "cllm/model/setting_error.h"

namespace cllm {

namespace {

std::string rendered(const std::string& message,
                     const std::function<std::string(std::string_view)>& name_of) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t open = message.find('{', pos);
    if (open != std::string::npos && message.compare(open, 2, "{{") == 0) {  // literal()'s
      out += message.substr(pos, open + 1 - pos);
      pos = open + 2;
      continue;
    }
    const std::size_t close = open == std::string::npos ? open : message.find('}', open);
    if (close == std::string::npos) return out + message.substr(pos);
    out += message.substr(pos, open - pos);
    out += name_of(std::string_view(message).substr(open + 1, close - open - 1));
    pos = close + 1;
  }
}

}  // namespace

SettingError::SettingError(const std::string& message)
    : std::invalid_argument(rendered(message, [](std::string_view n) { return std::string(n); })),
      message_(message) {}

std::string SettingError::literal(std::string_view value) {
  std::string escaped;
  for (const char ch : value) {
    escaped += ch;
    if (ch == '{') escaped += '{';
  }
  return escaped;
}

std::string SettingError::text(const std::function<std::string(std::string_view)>& name_of) const {
  return rendered(message_, name_of);
}

}  // namespace cllm
