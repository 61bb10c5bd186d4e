#include "cllm/data/text_check.h"

#include <cstdio>

namespace cllm {

namespace {

// Offset of the first byte that is not part of well-formed UTF-8, or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    int continuation = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the range of the first continuation byte
    if (lead >= 0xc2 && lead <= 0xdf) {
      continuation = 1;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      continuation = 2;
      if (lead == 0xe0) lo = 0xa0;  // overlong
      if (lead == 0xed) hi = 0x9f;  // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      continuation = 3;
      if (lead == 0xf0) lo = 0x90;  // overlong
      if (lead == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return i;
    }
    for (int k = 1; k <= continuation; ++k) {
      if (i + k >= s.size()) return i;
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf)) return i;
    }
    i += static_cast<std::size_t>(continuation) + 1;
  }
  return std::string_view::npos;
}

}  // namespace

std::optional<TextProblem> text_problem(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0) return TextProblem{i, "a NUL byte: not a text file"};
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", c);
      return TextProblem{i, std::string("control byte ") + hex + ": not a text file"};
    }
  }
  if (const auto bad = invalid_utf8_at(text); bad != std::string_view::npos)
    return TextProblem{bad, "not UTF-8 text"};
  return std::nullopt;
}

}  // namespace cllm
