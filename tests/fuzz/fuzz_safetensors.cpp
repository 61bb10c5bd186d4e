// libFuzzer driver: the input as a safetensors file (`cllm import`'s model
// file). std::runtime_error is a correct answer; a crash, a leak, undefined
// behaviour, or an accepted file whose tensors do not hold exactly their
// shape's values is a finding.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cllm/io/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const cllm::SafetensorsFile file(std::string(reinterpret_cast<const char*>(data), size));
    for (const cllm::SafetensorsTensor& t : file.tensors()) {
      std::uint64_t numel = 1;
      for (const std::int64_t d : t.shape) numel *= static_cast<std::uint64_t>(d);
      if (file.to_floats(t).size() != numel) cllm::fuzz::fail("tensor '" + t.name + "' does not hold its shape");
      if (file.find(t.name) != &t) cllm::fuzz::fail("find does not give tensor '" + t.name + "'");
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
