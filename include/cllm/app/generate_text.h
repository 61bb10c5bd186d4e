// `cllm generate` as a library call: text sampled from a checkpoint's model
// with the tokenizer the checkpoint records.
#pragma once

#include <string>

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

// Validates spec, reads the checkpoint and returns the prompt and its
// continuation as text (byte-level text may hold NUL bytes). Runs on the
// calling thread. Throws std::runtime_error naming the checkpoint.
std::string generate_text(const GenerateConfig& spec);

// cllm generate under mpirun: spec checked on every rank, the text
// generated on rank 0. Returns what rank 0 prints (the text and a newline,
// "" elsewhere); a failure throws CollectiveFailure on every rank.
std::string generate_command(const GenerateConfig& spec, const Comm& comm);

}  // namespace cllm
