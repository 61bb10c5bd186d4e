#include "options_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
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

// ---- values

// Where a value's comment starts: the first '#' outside strings (npos: none).
std::size_t comment_start(std::string_view value) {
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '#') return i;
    if (c == '"') {  // a basic string: \" does not end it
      for (++i; i < value.size() && value[i] != '"'; ++i)
        if (value[i] == '\\') ++i;
    } else if (c == '\'' || c == '`') {
      i = value.find(c, i + 1);
    }
    if (i >= value.size()) return std::string_view::npos;  // an unclosed string: read_values says so
  }
  return std::string_view::npos;
}

std::string_view uncommented(std::string_view value) {
  return trim(value.substr(0, comment_start(value)));
}

// Appends code point cp as UTF-8; false if it is not a Unicode scalar value.
bool append_utf8(std::uint32_t cp, std::string& out) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return true;
}

// A TOML basic string's escape at v[i] (the backslash), appended to out;
// i is left on its last character. The problem, or "".
std::string read_escape(std::string_view v, std::size_t& i, std::string& out) {
  if (i + 1 >= v.size()) return "a string without its closing quote";
  const char c = v[++i];
  switch (c) {
    case 'b': out += '\b'; return "";
    case 't': out += '\t'; return "";
    case 'n': out += '\n'; return "";
    case 'f': out += '\f'; return "";
    case 'r': out += '\r'; return "";
    case '"': out += '"'; return "";
    case '\\': out += '\\'; return "";
    case 'u':
    case 'U': {
      const std::size_t digits = c == 'u' ? 4 : 8;
      const std::string_view hex = v.substr(i + 1, digits);
      std::uint32_t cp = 0;
      if (hex.size() != digits || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string_view::npos)
        return std::string("\\") + c + " needs " + std::to_string(digits) + " hexadecimal digits";
      std::from_chars(hex.data(), hex.data() + hex.size(), cp, 16);
      i += digits;
      if (!append_utf8(cp, out))
        return std::string("\\") + c + std::string(hex) + " is not a Unicode character";
      return "";
    }
    default:
      return std::string("unknown escape \\") + c +
             " in a \"string\" (TOML's: \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX; "
             "'single quotes' take text as it is)";
  }
}

// One scalar at v[i]: a basic "string", a literal 'string' (or `string`),
// or a bare word up to one of stops. Appended to items; i is left after it.
std::string read_scalar(std::string_view v, std::size_t& i, std::string_view stops,
                        std::vector<std::string>& items) {
  std::string item;
  const char open = v[i];
  if (open == '"') {
    for (++i;; ++i) {
      if (i >= v.size()) return "a string without its closing quote";
      if (v[i] == '"') break;
      if (v[i] != '\\') {
        item += v[i];
      } else if (std::string problem = read_escape(v, i, item); !problem.empty()) {
        return problem;
      }
    }
    ++i;
  } else if (open == '\'' || open == '`') {
    const std::size_t close = v.find(open, i + 1);
    if (close == std::string_view::npos) return "a string without its closing quote";
    item = v.substr(i + 1, close - i - 1);
    i = close + 1;
  } else {
    const std::size_t end = std::min(v.find_first_of(stops, i), v.size());
    item = v.substr(i, end - i);
    i = end;
  }
  items.push_back(std::move(item));
  return "";
}

// A value (its comment removed) read into items; the problem, or "".
std::string read_values(std::string_view v, std::vector<std::string>& items) {
  constexpr std::string_view kBlank = " \t";
  const auto skip = [&](std::size_t& i, std::string_view chars) {
    i = std::min(v.find_first_not_of(chars, i), v.size());
  };
  std::size_t i = 0;
  if (v.empty()) {  // `key =`: an empty value, refused by name where options are read
    items.emplace_back();
    return "";
  }
  if (v.front() != '[') {  // one value, or several as CLI11 splits them
    while (i < v.size()) {
      if (std::string problem = read_scalar(v, i, " \t,", items); !problem.empty()) return problem;
      skip(i, " \t,");
    }
    return "";
  }
  for (i = 1, skip(i, kBlank); i < v.size() && v[i] != ']';) {
    if (std::string problem = read_scalar(v, i, " \t,]", items); !problem.empty()) return problem;
    skip(i, kBlank);
    if (i < v.size() && v[i] == ',') skip(++i, kBlank);
    else if (i < v.size() && v[i] != ']') return "expected ',' or ']' in a list";
  }
  if (i >= v.size()) return "a list without its closing ']'";
  if (trim(v.substr(i + 1)).empty()) return "";
  return "text after a list's closing ']'";
}

// ---- lines

// A `key = value` entry: its first line's number, the key as written, and
// the value without its comment (a list's later lines joined to it).
struct Entry {
  std::size_t line;
  std::string_view key;
  std::string value;
};

// The file's entries, or the first line that is not blank, a comment or
// `key = value`, with its problem.
struct Entries {
  std::vector<Entry> entries;
  std::size_t problem_line = 0;
  std::string problem;
};

Entries read_entries(std::string_view text) {
  Entries out;
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
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      out.problem_line = line_number;
      out.problem = "unknown section " + std::string(line) + " (options are top-level keys, outside any section)";
      return out;
    }
    const auto eq = line.find('=');
    const std::string_view key = eq == std::string_view::npos ? "" : trim(line.substr(0, eq));
    if (key.empty()) {
      out.problem_line = line_number;
      out.problem = "expected 'option = value'";
      return out;
    }
    Entry entry{line_number, key, std::string(uncommented(line.substr(eq + 1)))};
    // A list may run over several lines, up to one that ends with ']'.
    if (entry.value.size() > 1 && entry.value.front() == '[')
      while (entry.value.back() != ']' && begin < text.size())
        if (const std::string_view more = uncommented(next_line()); !more.empty()) entry.value += more;
    out.entries.push_back(std::move(entry));
  }
  return out;
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

  const Entries read = read_entries(text);
  for (const Entry& entry : read.entries) {
    const std::string at = path + ":" + std::to_string(entry.line);
    // A dotted key (section.option) would name a subcommand's option: cllm's
    // subcommands are separate apps, so no such option exists.
    if (entry.key.find('.') != std::string_view::npos)
      return at + ": unknown option '" + std::string(entry.key) + "'";
    const std::string name = unquoted(entry.key);
    switch (key_kind(name)) {
      case OptionKey::unknown: return at + ": unknown option '" + name + "'";
      case OptionKey::not_settable_in_files:
        return at + ": option '" + name + "' cannot be set in a config file";
      case OptionKey::settable: break;
    }
    std::vector<std::string> values;
    if (const std::string problem = read_values(entry.value, values); !problem.empty())
      return at + ": " + name + ": " + problem;
    // CLI11 would read "" as zero, an empty optional or, for a flag, true.
    if (std::any_of(values.begin(), values.end(), [](const std::string& v) { return v.empty(); }))
      return at + ": " + name + ": an empty value (leave the key out for the option's default)";
  }
  if (!read.problem.empty()) return path + ":" + std::to_string(read.problem_line) + ": " + read.problem;
  return "";
}

std::vector<CLI::ConfigItem> OptionsFileFormat::from_config(std::istream& input) const {
  const std::string text{std::istreambuf_iterator<char>(input), std::istreambuf_iterator<char>()};
  const Entries read = read_entries(text);
  if (!read.problem.empty())
    throw CLI::ConversionError("line " + std::to_string(read.problem_line) + ": " + read.problem);
  std::vector<CLI::ConfigItem> items;
  for (const Entry& entry : read.entries) {
    std::string name = unquoted(entry.key);
    std::vector<std::string> values;
    if (const std::string problem = read_values(entry.value, values); !problem.empty())
      throw CLI::ConversionError(name + ": " + problem);
    // As CLI11 does: a key given on consecutive lines gathers their values.
    if (!items.empty() && items.back().name == name) {
      items.back().inputs.insert(items.back().inputs.end(), values.begin(), values.end());
      continue;
    }
    items.emplace_back();
    items.back().name = std::move(name);
    items.back().inputs = std::move(values);
  }
  return items;
}

}  // namespace cllm
