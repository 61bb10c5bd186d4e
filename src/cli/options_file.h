// Files of options (cllm's --config): TOML's top-level `option = value`
// lines, one per option (the long name without its dashes).
//
// CLI11 2.1 reads such files leniently: it skips keys that name no option,
// sections, short lines and junk without a word, it opens whatever path it
// is given (a FIFO blocks it, /dev/zero never ends), and it takes strings
// as they are written, "\n" as a backslash and an n. So a check comes first
// and refuses, naming the file and the line, anything that would not be
// read as written; then OptionsFileFormat reads the values as TOML does.
#pragma once

#include <CLI/CLI.hpp>

#include <cstddef>
#include <functional>
#include <istream>
#include <string>
#include <vector>

namespace cllm {

inline constexpr std::size_t kMaxOptionsFileBytes = std::size_t{1} << 20;

// What a key of the file names, as the reader of the options says.
enum class OptionKey { unknown, not_settable_in_files, settable };

// Why path is not an options file ("FILE:LINE: unknown option 'stpes'"), or
// "" when it is one: a regular file of at most kMaxOptionsFileBytes of UTF-8
// text (no NUL or other control bytes, no byte-order mark) whose lines are
// blank, comments (# or ;), or `key = value` with a key that key_kind calls
// settable and a value that reads (strings closed, escapes known). Sections
// are refused: options are top-level keys.
std::string options_file_problem(const std::string& path,
                                 const std::function<OptionKey(const std::string&)>& key_kind);

// CLI11's reader of --config files, with TOML's strings: "..." is a basic
// string, whose escapes (\n, \t, \", \\, \uXXXX, ...) are read, '...' a
// literal one, taken as it is; a '#' inside either is text, not a comment.
// A value is a string, a bare word (a number, true), a [list] (over
// several lines too), or as CLI11 has it several words or strings
// separated by spaces or commas. Reads files options_file_problem passed;
// throws CLI::ConversionError for what it would refuse.
class OptionsFileFormat : public CLI::ConfigTOML {
 public:
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
};

}  // namespace cllm
