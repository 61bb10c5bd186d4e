// Tokenizing a large text on all cores: the text is cut where every
// tokenizer we have ends one token and starts the next, and the pieces are
// encoded on separate threads. The ids are those of encoding the whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "cllm/data/tokenizer.h"

namespace cllm {

// Pieces of about piece_bytes (more where no cut is near) that concatenate
// to text and tokenize exactly as the whole does: each cut falls between a
// letter and " letter", where GPT-2's pre-tokenizer always ends one piece
// and starts the next (and bytes are bytes).
std::vector<std::string_view> split_for_encoding(std::string_view text, std::size_t piece_bytes);

// The first place at or after from where split_for_encoding may cut, or
// npos: the ranks' shares of a file are cut there.
std::size_t first_encoding_cut(std::string_view text, std::size_t from);

// The last place in text where split_for_encoding may cut (0 if none): text
// read in blocks is cut there, and the rest carried to the next block.
std::size_t last_encoding_cut(std::string_view text);

// A text's ids in the pieces it was encoded in: joined, tok.encode(text).
using PieceIds = std::vector<std::vector<std::int32_t>>;

// tok.encode of each text, on all OpenMP threads: the texts, and the pieces
// of those longer than a piece (split_for_encoding), are encoded in
// parallel. The pieces' ids are not joined: that would copy every id once
// more, on one thread. beside, when given, runs meanwhile on the calling
// thread, which then joins the encoding.
std::vector<PieceIds> encode_each(const Tokenizer& tok, const std::vector<std::string_view>& texts,
                                  const std::function<void()>& beside = {});

// tok.encode(text), on all OpenMP threads.
std::vector<std::int32_t> encode_in_parallel(const Tokenizer& tok, std::string_view text);

}  // namespace cllm
