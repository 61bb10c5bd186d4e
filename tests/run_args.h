// Command lines of the end-to-end tests: a tiny training run, and options
// set on a command line.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace cllm::test {

// A tiny model on the byte-level Austen text: 20 steps, 8 sequences a step.
inline std::vector<std::string> tiny_run(const std::string& data, const std::string& out,
                                         int threads, int steps = 20) {
  return {"train", "--data", data, "--out", out, "--layers", "2", "--heads", "2", "--embd", "32",
          "--seq-len", "32", "--micro-batch", "2", "--global-batch", "8", "--steps",
          std::to_string(steps), "--lr", "3e-3", "--warmup", "5", "--log-every", "1",
          "--eval-every", "10", "--sample-tokens", "0", "--checkpoint-every", "0", "--threads",
          std::to_string(threads)};
}

// args with options set: each "--name value" pair replaces the option's
// value where args has it (CLI11 refuses an option given twice), else is
// appended.
inline std::vector<std::string> with(std::vector<std::string> args,
                              const std::vector<std::string>& options) {
  for (std::size_t i = 0; i + 1 < options.size(); i += 2) {
    const auto it = std::find(args.begin(), args.end(), options[i]);
    if (it != args.end() && it + 1 != args.end()) {
      *(it + 1) = options[i + 1];
    } else {
      args.push_back(options[i]);
      args.push_back(options[i + 1]);
    }
  }
  return args;
}

}  // namespace cllm::test
