// Command lines of the end-to-end tests: small training runs, and options
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

// A smaller, faster one for tests of the command line: the small preset cut
// to one layer of width 32 over 16-token windows, 2 steps of 4 sequences,
// one thread.
inline std::vector<std::string> one_layer_run(const std::string& data, const std::string& out) {
  return {"train", "--data", data, "--out", out, "--preset", "small", "--layers", "1", "--embd",
          "32", "--heads", "2", "--seq-len", "16", "--micro-batch", "2", "--global-batch", "4",
          "--steps", "2", "--threads", "1", "--sample-tokens", "0"};
}

// args with options set: options is a list of "--name", "value" pairs. Each
// replaces the option's value where args has it (CLI11 refuses an option
// given twice), else is appended; an empty value appends "--name" alone (a
// flag).
inline std::vector<std::string> with(std::vector<std::string> args,
                                     const std::vector<std::string>& options) {
  for (std::size_t i = 0; i + 1 < options.size(); i += 2) {
    const std::string &name = options[i], &value = options[i + 1];
    const auto it = std::find(args.begin(), args.end(), name);
    if (value.empty()) {
      args.push_back(name);
    } else if (it != args.end() && it + 1 != args.end()) {
      *(it + 1) = value;
    } else {
      args.push_back(name);
      args.push_back(value);
    }
  }
  return args;
}

}  // namespace cllm::test
