#include "cllm/app/evaluation.h"

#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "cllm/base/format.h"
#include "cllm/base/setting_error.h"
#include "cllm/dist/busy.h"
#include "cllm/dist/collective.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/dataset_file.h"
#include "cllm/kernels/blas.h"
#include "cllm/model/gpt.h"
#include "cllm/train/trainer.h"

namespace cllm {

namespace {

double tokens_per_s(const SplitEvaluation& e) {
  return e.seconds > 0 ? static_cast<double>(e.tokens) / e.seconds : 0.0;
}

// losses[w] = the loss sum of window w, for the windows [begin, end) of
// `scored` predictions in windows of T.
void score_windows(const Model& model, const TokenSource& source, Split split, std::uint64_t scored,
                   Range windows, int threads, std::vector<double>& losses) {
  const int T = model.config().seq_len;
  kernels::use_single_threaded_blas();  // each window's products run on its own thread
  std::vector<std::unique_ptr<GptActivations>> acts(threads);
  for (auto& a : acts) a = std::make_unique<GptActivations>(model.config(), 1);
  // Windows are read in rounds (HDF5 is read from this thread only): a
  // split of billions of tokens never sits in memory.
  const int per_round = threads * 16;
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(per_round) * (T + 1));
  for (int first = windows.begin; first < windows.end; first += per_round) {
    const int count = std::min(per_round, windows.end - first);
    std::fill(tokens.begin(), tokens.end(), 0);  // the tail window's padding
    for (int w = 0; w < count; ++w) {
      const std::uint64_t start = static_cast<std::uint64_t>(first + w) * T;
      const std::uint64_t n = std::min<std::uint64_t>(T + 1, scored + 1 - start);
      source.read_tokens(split, start, n, tokens.data() + static_cast<std::size_t>(w) * (T + 1));
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int w = 0; w < count; ++w) {
      GptActivations& a = *acts[omp_get_thread_num()];
      const std::int32_t* window = tokens.data() + static_cast<std::size_t>(w) * (T + 1);
      gpt_forward(model, a, window, window + 1);
      const std::uint64_t start = static_cast<std::uint64_t>(first + w) * T;
      const int positions = static_cast<int>(std::min<std::uint64_t>(T, scored - start));
      double sum = 0;
      for (int t = 0; t < positions; ++t) sum += a.losses[t];
      losses[first + w] = sum;
    }
  }
}

}  // namespace

SplitEvaluation evaluate_split(const Model& model, const TokenSource& source, Split split,
                               std::uint64_t max_tokens, int threads, const Comm& comm) {
  const double t0 = omp_get_wtime();
  const int T = model.config().seq_len;
  const std::uint64_t size = source.split_size(split);
  SplitEvaluation result;
  result.tokens = size > 1 ? size - 1 : 0;
  if (max_tokens > 0) result.tokens = std::min(result.tokens, max_tokens);
  result.windows = (result.tokens + T - 1) / T;
  std::vector<double> losses(result.windows, 0.0);
  const Range ours = static_block(static_cast<int>(result.windows), comm.size(), comm.rank());
  // A rank that cannot read its windows fails every rank, not a hang in the sum.
  collectively(comm, [&] {
    const BusyScope busy(comm, Busy::evaluating);  // a rank with fewer windows waits: not a stall
    score_windows(model, source, split, result.tokens, ours, threads, losses);
  }, Collective::evaluation);
  comm.sum(losses, Collective::evaluation);  // each slot has one contributor: exact
  double total = 0;
  for (const double l : losses) total += l;
  result.loss = result.tokens > 0 ? total / static_cast<double>(result.tokens) : 0.0;
  result.seconds = omp_get_wtime() - t0;
  return result;
}

void EvalConfig::validate() const {
  require_setting(!checkpoint.empty(), "{checkpoint}: give the checkpoint to evaluate");
  require_setting(!data.empty(), "{data}: give the dataset to evaluate on");
  require_setting(split == "val" || split == "train",
                  "{split}: '" + SettingError::literal(split) + "' is not val or train");
  require_setting(threads > 0, "{threads} must be positive");
}

namespace {

std::string evaluation_line(const EvalConfig& spec, const SplitEvaluation& e) {
  return printf_string("eval: %s on %s (%s): %llu tokens in %llu windows, loss %.6f, perplexity %.4f "
                       "(%.2f s, %.0f tokens/s)\n",
                       spec.checkpoint.c_str(), spec.data.c_str(), spec.split.c_str(),
                       static_cast<unsigned long long>(e.tokens), static_cast<unsigned long long>(e.windows),
                       e.loss, std::exp(e.loss), e.seconds, tokens_per_s(e));
}

std::string evaluation_json(const EvalConfig& spec, const SplitEvaluation& e, int ranks) {
  const nlohmann::ordered_json j = {{"checkpoint", spec.checkpoint}, {"data", spec.data},
                                    {"split", spec.split},           {"tokens", e.tokens},
                                    {"windows", e.windows},          {"loss", e.loss},
                                    {"perplexity", std::exp(e.loss)}, {"seconds", e.seconds},
                                    {"tokens_per_s", tokens_per_s(e)}, {"ranks", ranks},
                                    {"threads", spec.threads}};
  return j.dump() + "\n";
}

}  // namespace

SplitEvaluation evaluate_checkpoint(const EvalConfig& spec, const Comm& comm) {
  std::unique_ptr<Model> model;
  TrainingData data;
  const Split split = spec.split == "val" ? Split::val : Split::train;
  collectively(comm, [&] {
    spec.validate();
    const CheckpointReader checkpoint(spec.checkpoint);  // every rank: the header
    data = open_training_data(DataConfig{spec.data}, checkpoint.header().model.seq_len);
    checkpoint.check_reads(data.tokenizer, spec.data);
    if (data.source->split_size(split) < 2)
      throw std::runtime_error(spec.data + ": the " + spec.split + " split holds fewer than 2 tokens");
    if (comm.is_root()) {
      const BusyScope busy(comm, Busy::reading_checkpoint);  // the others wait: not a stall
      model = checkpoint.read_model();
    } else {
      model = std::make_unique<Model>(checkpoint.header().model);
    }
  }, Collective::resume);
  if (comm.size() > 1) comm.broadcast(model->params(), Collective::resume);
  return evaluate_split(*model, *data.source, split, spec.max_tokens, spec.threads, comm);
}

std::string eval_command(const EvalConfig& spec, const Comm& comm) {
  const SplitEvaluation e = evaluate_checkpoint(spec, comm);
  if (!comm.is_root()) return "";
  return spec.json ? evaluation_json(spec, e, comm.size()) : evaluation_line(spec, e);
}

}  // namespace cllm
