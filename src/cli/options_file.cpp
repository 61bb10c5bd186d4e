#include "options_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>

#include "cllm/data/text_check.h"

namespace cllm {

namespace {

// The characters CLI11 trims from lines, keys and values.
constexpr std::string_view kSpace = " \t\n\v\f\r";

std::string_view trim(std::string_view s) {
  const auto begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

// "FILE:LINE" of a byte offset.
std::string where(const std::string& path, std::string_view text, std::size_t offset) {
  const auto line = std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
  return path + ":" + std::to_string(line + 1);
}

// CLI11 takes the quotes off a key without dots.
std::string unquoted(std::string_view key) {
  if (key.size() >= 2 && key.front() == key.back() &&
      (key.front() == '"' || key.front() == '\'' || key.front() == '`'))
    key = key.substr(1, key.size() - 2);
  return std::string(key);
}

}  // namespace

std::string options_file_problem(const std::string& path,
                                 const std::function<OptionKey(const std::string&)>& key_kind) {
  // stat first: opening a FIFO to read blocks until a writer comes, and a
  // device may never end.
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return path + ": " + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
  if (static_cast<std::size_t>(st.st_size) > kMaxOptionsFileBytes)
    return path + ": " + std::to_string(st.st_size) + " bytes: too large for a config file";
  std::ifstream in(path, std::ios::binary);
  if (!in) return path + ": cannot be read";
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const std::string_view text = bytes;

  // Text: a binary file's bytes would otherwise reach CLI11, which skips
  // every line it cannot make sense of.
  if (text.starts_with("\xef\xbb\xbf"))
    return path + ": starts with a UTF-8 byte-order mark, which would hide its first key: "
                  "save it without one";
  if (const auto problem = text_problem(text))
    return where(path, text, problem->offset) + ": " + problem->what;

  // Lines, as CLI11's ConfigBase::from_config splits them.
  std::size_t begin = 0, line_number = 0;
  const auto next_line = [&] {
    const std::size_t end = std::min(text.find('\n', begin), text.size());
    const std::string_view line = trim(text.substr(begin, end - begin));
    begin = end + 1;
    ++line_number;
    return line;
  };
  while (begin < text.size()) {
    const std::string_view line = next_line();
    const std::string at = path + ":" + std::to_string(line_number);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[' && line.back() == ']')
      return at + ": unknown section " + std::string(line) +
             " (options are top-level keys, outside any section)";
    const auto eq = line.find('=');
    const std::string_view key = eq == std::string_view::npos ? "" : trim(line.substr(0, eq));
    if (key.empty()) return at + ": expected 'option = value'";
    // An array may run over several lines, up to one that ends with ']'.
    const std::string_view value = trim(line.substr(eq + 1));
    if (const auto uncommented = trim(value.substr(0, value.find('#')));
        uncommented.size() > 1 && uncommented.front() == '[')
      for (char last = uncommented.back(); last != ']' && begin < text.size();)
        if (const std::string_view more = next_line(); !more.empty()) last = more.back();
    // A dotted key (section.option) would name a subcommand's option: cllm's
    // subcommands are separate apps, so no such option exists.
    if (key.find('.') != std::string_view::npos)
      return at + ": unknown option '" + std::string(key) + "'";
    const std::string name = unquoted(key);
    switch (key_kind(name)) {
      case OptionKey::unknown: return at + ": unknown option '" + name + "'";
      case OptionKey::not_settable_in_files:
        return at + ": option '" + name + "' cannot be set in a config file";
      case OptionKey::settable: break;
    }
  }
  return "";
}

}  // namespace cllm
