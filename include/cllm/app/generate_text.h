// `cllm generate` as a library call: text sampled from a checkpoint's model
// with the tokenizer the checkpoint records.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "cllm/dist/comm.h"
#include "cllm/model/generate.h"

namespace cllm {

struct GenerateConfig {
  std::string checkpoint;  // a checkpoint file
  std::string prompt = "\n";
  SamplingConfig sampling = kReadableSampling;

  // Throws SettingError naming the setting: a negative tokens or top_k, a
  // temperature that is not positive, an empty prompt.
  void validate() const;
};

// Validates spec, reads the checkpoint, and hands write the prompt's text,
// then each new token's text as soon as it is sampled (byte-level text may
// hold NUL bytes; a GPT-2 token may end inside a UTF-8 character, which the
// next completes). write returns false to stop there. Returns the tokens
// sampled. Runs on the calling thread. Throws std::runtime_error naming the
// checkpoint.
std::int64_t stream_generated_text(const GenerateConfig& spec,
                                   const std::function<bool(std::string_view)>& write);

// The prompt and its whole continuation as text.
std::string generate_text(const GenerateConfig& spec);

// cllm generate under mpirun: spec checked on every rank, the text
// generated on rank 0, which prints it to stdout as it comes (flushed per
// token) and a newline at the end. A stop signal (stop_signal.h) ends it
// after the token being sampled: what was printed stays, the line is ended,
// and a note on stderr says how far it got. Returns the exit code, the same
// on every rank: 0, or kExitInterrupted when stopped. A failure throws
// CollectiveFailure on every rank.
int generate_command(const GenerateConfig& spec, const Comm& comm);

}  // namespace cllm
