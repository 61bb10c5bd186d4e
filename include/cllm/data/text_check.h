// Whether bytes are plain text: UTF-8 (RFC 3629: no overlong forms,
// surrogates or code points above U+10FFFF) without NUL or control bytes
// other than white space. For files a person writes, such as --config
// files, whose stray binary would otherwise be skipped in silence.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cllm {

struct TextProblem {
  std::size_t offset;  // of the first offending byte
  std::string what;    // "a NUL byte: not a text file", "not UTF-8 text", ...
};

std::optional<TextProblem> text_problem(std::string_view bytes);

}  // namespace cllm
