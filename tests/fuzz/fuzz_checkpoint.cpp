// libFuzzer driver: the checkpoint reader (CheckpointReader's header and the
// settings a resume compares, then read_into a model and moments of the
// shape the file declares),
// given any bytes as the file, then what `cllm generate` does with what it
// read: the stored tokenizer encodes a prompt, the model samples one token,
// the tokenizer decodes. Throwing std::exception is a correct answer; a
// crash, a leak, undefined behaviour or a huge allocation is a finding. An
// input that starts with a checksum header is read as it is (a damaged file
// must be refused by the checksum) and with its checksum written afresh
// (fuzz_common.h).
#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <vector>

#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/hdf5.h"
#include "cllm/model/generate.h"
#include "cllm/model/model.h"
#include "cllm/train/optimizer.h"
#include "cllm/train/run_settings.h"
#include "fuzz_common.h"

namespace {

// Models larger than this are not built: the fuzzer is after the reader, and
// a file may declare any shape. Counted in doubles from the config, before
// gpt_parameter_layout, which would build one entry per declared layer.
constexpr double kMaxParams = 4e6;

double parameters(const cllm::ModelConfig& m) {
  const double V = m.vocab_size, T = m.seq_len, L = m.n_layer, C = m.n_embd;
  return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
}

// Reads the checkpoint at path as a resume and `cllm generate` do; throws
// std::exception on a bad file.
void read_checkpoint(const std::filesystem::path& path) {
  const cllm::CheckpointReader checkpoint(path);
  const cllm::CheckpointContents& header = checkpoint.header();
  (void)checkpoint.settings(cllm::compared_setting_names());  // as a resume reads them
  if (parameters(header.model) > kMaxParams) return;
  cllm::Model model(header.model);
  cllm::CheckpointMoments moments;
  checkpoint.read_into(model, &moments);
  cllm::AdamW optimizer(cllm::OptimizerConfig{}, model.layout());
  optimizer.restore(moments.state());
  // As generate_text does (generate_text.h): cllm generate's default
  // prompt, one sampled token. A prompt id outside the model's vocabulary
  // must be refused: reading its embedding row would stay inside the
  // parameter buffer, where ASan sees nothing.
  const auto tok = cllm::make_tokenizer(header.tokenizer);
  const std::vector<std::int32_t> prompt = tok->encode("\n");
  const bool fits = std::all_of(prompt.begin(), prompt.end(), [&](std::int32_t id) {
    return id >= 0 && id < header.model.vocab_size;
  });
  cllm::SamplingConfig so;
  so.tokens = 1;
  so.temperature = 0.8f;
  so.top_k = 40;
  std::vector<std::int32_t> ids;
  try {
    ids = cllm::generate(model, prompt, so);
  } catch (const std::exception&) {
    if (fits) throw;
    return;
  }
  if (!fits) cllm::fuzz::fail("generate took a prompt id outside the model's vocabulary");
  (void)tok->decode(ids);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cllm::h5::silence_error_stack();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  cllm::fuzz::read_each_way("checkpoint.h5", data, size, read_checkpoint);
  return 0;
}
