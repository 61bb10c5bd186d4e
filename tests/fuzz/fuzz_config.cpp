// libFuzzer driver: `cllm train --config FILE` with any bytes as the TOML
// file, parsed by the CLI11 app the command line uses and checked as
// run_train checks its options. A thrown exception (CLI11's parse errors,
// std::invalid_argument for a bad value) is a correct answer; a crash, a
// leak or undefined behaviour is a finding.
#include <cstdint>
#include <exception>

#include "cli.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& path = cllm::fuzz::write_input("config.toml", data, size);
  try {
    const cllm::TrainConfig cfg = cllm::parse_train_options({"--config", path.string()});
    (void)cfg;
  } catch (const std::exception&) {
  }
  return 0;
}
