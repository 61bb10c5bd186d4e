// cllm eval: every window of a split, the tail included, scored once; the
// same bits on every layout of ranks and threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cllm/io/checkpoint.h"
#include "cllm/io/dataset_file.h"
#include "cllm/model/gpt.h"
#include "support/process.h"
#include "support/run_args.h"

namespace cllm {
namespace {

const std::string kData = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";

nlohmann::json eval_json(const test::ProcessResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

class Eval : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<test::TempDir>();  // the suite's tests share its checkpoint
    const test::ProcessResult r = test::run_cllm(test::tiny_run(kData, (*dir_ / "run").string(), 1, 5), dir_->path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  static std::string checkpoint() { return (*dir_ / "run" / "checkpoint-00000005.h5").string(); }
  static inline std::unique_ptr<test::TempDir> dir_;
};

TEST_F(Eval, ScoresEveryWindowAndTheTailAsOneForwardPassPerWindowWould) {
  // 100 predictions in windows of 32: 32, 32, 32 and a tail of 4.
  const nlohmann::json got = eval_json(test::run_cllm(
      {"eval", "--checkpoint", checkpoint(), "--data", kData, "--max-tokens", "100", "--json", "--threads", "2"},
      dir_->path()));
  EXPECT_EQ(got["tokens"], 100);
  EXPECT_EQ(got["windows"], 4);

  // The same sum, composed here: the split's first 101 tokens, each
  // position's loss from a forward pass of its window.
  const CheckpointReader file(checkpoint());
  Model model(file.header().model);
  file.read_into(model);
  const TrainingData data = open_training_data(DataConfig{kData}, 32);
  std::vector<std::int32_t> tokens(101);
  data.source->read_tokens(Split::val, 0, tokens.size(), tokens.data());
  GptActivations acts(model.config(), 1);
  double sum = 0;
  for (int start = 0; start < 100; start += 32) {
    std::vector<std::int32_t> window(33, 0);
    std::copy(tokens.begin() + start, tokens.begin() + std::min(start + 33, 101), window.begin());
    gpt_forward(model, acts, window.data(), window.data() + 1);
    for (int t = 0; t < std::min(32, 100 - start); ++t) sum += acts.losses[t];
  }
  // To float rounding: oneDNN may pick other kernels for eval's batches than
  // for one window (it does on AVX2-only CPUs); a wrong window or tail would
  // be off by far more.
  EXPECT_NEAR(got["loss"].get<double>(), sum / 100, 1e-6);
  EXPECT_NEAR(got["perplexity"].get<double>(), std::exp(sum / 100), 1e-4);
}

TEST_F(Eval, GivesTheSameBitsOnEveryLayout) {
  const std::vector<std::string> args = {"eval", "--checkpoint", checkpoint(), "--data", kData, "--json"};
  const auto with_threads = [&](int threads) {
    return test::with(args, {"--threads", std::to_string(threads)});
  };
  const double one = eval_json(test::run_cllm(with_threads(1), dir_->path()))["loss"];
  EXPECT_EQ(one, eval_json(test::run_cllm(with_threads(2), dir_->path()))["loss"].get<double>()) << "1x2";
  EXPECT_EQ(one, eval_json(test::run_cllm_mpi(2, with_threads(1), dir_->path()))["loss"].get<double>()) << "2x1";
  EXPECT_EQ(one, eval_json(test::run_cllm_mpi(3, with_threads(2), dir_->path()))["loss"].get<double>()) << "3x2";
  EXPECT_GT(one, 1.0);
  EXPECT_LT(one, std::log(256.0) + 0.5) << "a trained byte model scores about uniform or better";
}

TEST_F(Eval, RefusesABadSplitAndAMissingCheckpointInOneLine) {
  test::ProcessResult r = test::run_cllm(
      {"eval", "--checkpoint", checkpoint(), "--data", kData, "--split", "test"}, dir_->path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--split: 'test' is not val or train"), std::string::npos) << r.err;
  r = test::run_cllm({"eval", "--checkpoint", (*dir_ / "missing.h5").string(), "--data", kData}, dir_->path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.h5"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace cllm
