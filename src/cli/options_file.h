// Files of options (cllm's --config): TOML as CLI11 2.1 reads it, one
// `option = value` line per option (the long name without its dashes).
//
// CLI11 reads such files leniently: it skips keys that name no option,
// sections, short lines and junk without a word, and it opens whatever path
// it is given (a FIFO blocks it, /dev/zero never ends). This check comes
// first and refuses, naming the file and the line, anything that would not
// be read as written.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace cllm {

inline constexpr std::size_t kMaxOptionsFileBytes = std::size_t{1} << 20;

// What a key of the file names, as the reader of the options says.
enum class OptionKey { unknown, not_settable_in_files, settable };

// Why path is not an options file ("FILE:LINE: unknown option 'stpes'"), or
// "" when it is one: a regular file of at most kMaxOptionsFileBytes of UTF-8
// text (no NUL or other control bytes, no byte-order mark) whose lines are
// blank, comments (# or ;), or `key = value` with a key that key_kind calls
// settable. Sections are refused: options are top-level keys.
std::string options_file_problem(const std::string& path,
                                 const std::function<OptionKey(const std::string&)>& key_kind);

}  // namespace cllm
