#include "cllm/app/generate_text.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "cllm/base/exit_codes.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/model/model.h"
#include "cllm/train/stop_signal.h"
#include "on_rank_zero.h"

namespace cllm {

void GenerateConfig::validate() const {
  require_setting(sampling.tokens >= 0, "{tokens} must not be negative");
  require_setting(sampling.temperature > 0, "{temperature} must be positive");  // NaN too
  require_setting(sampling.top_k >= 0, "{top_k} must not be negative");
  // Every tokenizer gives text of one byte or more a token or more.
  require_setting(!prompt.empty(), "{prompt}: give at least one character of text");
}

std::int64_t stream_generated_text(const GenerateConfig& spec,
                                   const std::function<bool(std::string_view)>& write) {
  spec.validate();
  const CheckpointReader checkpoint(spec.checkpoint);
  const CheckpointContents& header = checkpoint.header();
  const std::unique_ptr<Model> model = checkpoint.read_model();
  const auto tok = make_tokenizer(header.tokenizer);
  std::vector<std::int32_t> prompt = tok->encode(spec.prompt);
  if (!write(tok->decode(prompt))) return 0;
  // A token's text is its bytes: the pieces make the whole text's decoding.
  return generate(*model, std::move(prompt), spec.sampling,
                  [&](std::int32_t id) { return write(tok->decode(std::span(&id, 1))); });
}

std::string generate_text(const GenerateConfig& spec) {
  std::string text;
  stream_generated_text(spec, [&text](std::string_view piece) {
    text += piece;
    return true;
  });
  return text;
}

int generate_command(const GenerateConfig& spec, const Comm& comm) {
  struct Outcome {
    std::int64_t tokens = 0;
    int signal = 0;  // the stop signal that ended it early, if one did
  };
  const Outcome outcome = on_rank_zero(comm, spec, [&] {
    Outcome o;
    o.tokens = stream_generated_text(spec, [&o](std::string_view piece) {
      // Written by size: byte-level text may hold NUL bytes. Flushed, so that
      // a reader (or a person) has each token as it comes.
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      o.signal = stop_signal_received();
      return o.signal == 0;
    });
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (o.signal)
      std::fprintf(stderr, "cllm: generate: stopped by SIG%s after %lld of %d tokens (exit code %d)\n",
                   sigabbrev_np(o.signal), static_cast<long long>(o.tokens), spec.sampling.tokens,
                   kExitInterrupted);
    return o;
  });
  // Rank 0's outcome is every rank's exit code.
  return comm.all_ok(outcome.signal == 0, Collective::stop_agreement) ? kExitOk : kExitInterrupted;
}

}  // namespace cllm
