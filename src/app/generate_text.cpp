#include "cllm/app/generate_text.h"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cllm/base/setting_error.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/model/model.h"
#include "on_rank_zero.h"

namespace cllm {

void GenerateConfig::validate() const {
  require_setting(sampling.tokens >= 0, "{tokens} must not be negative");
  require_setting(sampling.temperature > 0, "{temperature} must be positive");  // NaN too
  require_setting(sampling.top_k >= 0, "{top_k} must not be negative");
  // Every tokenizer gives text of one byte or more a token or more.
  require_setting(!prompt.empty(), "{prompt}: give at least one character of text");
}

std::string generate_text(const GenerateConfig& spec) {
  spec.validate();
  const CheckpointReader checkpoint(spec.checkpoint);
  const CheckpointContents& header = checkpoint.header();
  const std::unique_ptr<Model> model = checkpoint.read_model();
  const auto tok = make_tokenizer(header.tokenizer);
  const std::vector<std::int32_t> ids = generate(*model, tok->encode(spec.prompt), spec.sampling);
  return tok->decode(ids);
}

std::string generate_command(const GenerateConfig& spec, const Comm& comm) {
  const std::string text = on_rank_zero(comm, spec, [&] { return generate_text(spec); });
  return comm.is_root() ? text + "\n" : "";
}

}  // namespace cllm
