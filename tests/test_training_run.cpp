// TrainingRun in-process, on a one-rank Comm: the loop's cadences as a pure
// function of the step, settings refused before any file is touched, and a
// run stopped at a step and resumed, bitwise equal to one that was not.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cllm/collective.h"
#include "cllm/comm.h"
#include "cllm/setting_error.h"
#include "cllm/training_run.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;

TrainConfig cadence_config() {
  TrainConfig c;
  c.steps = 10;
  c.log_every = 3;
  c.eval_every = 5;
  c.check_every = 4;
  return c;
}

// One letter per step: l(og), e(val), c(heck replicas), s(ave checkpoint).
std::string actions_by_step(const TrainConfig& config, const RunPolicy& policy, int end) {
  std::string s;
  for (int done = 1; done <= end; ++done) {
    const StepActions a = step_actions(config, policy, done, end);
    s += std::to_string(done) + ":" + (a.log ? "l" : "") + (a.evaluate ? "e" : "") +
         (a.check_replicas ? "c" : "") + (a.checkpoint ? "s" : "") + " ";
  }
  return s;
}

TEST(TrainingRunPolicy, CadencesFollowTheirSettingsAndTheLastStepDoesEverything) {
  RunPolicy policy;
  policy.checkpoint_every = 4;
  EXPECT_EQ(actions_by_step(cadence_config(), policy, 10),
            "1: 2: 3:l 4:cs 5:le 6:l 7: 8:cs 9:l 10:lecs ");
}

TEST(TrainingRunPolicy, StopAtLogsChecksAndCheckpointsItsStep) {
  RunPolicy policy;
  policy.checkpoint_every = 0;  // only at the end
  EXPECT_EQ(actions_by_step(cadence_config(), policy, 7),
            "1: 2: 3:l 4:c 5:le 6:l 7:lcs ");
}

TEST(TrainingRunPolicy, ZeroCadencesMeanOnlyAtTheEnd) {
  TrainConfig config = cadence_config();
  config.eval_every = 0;
  config.check_every = 0;
  config.log_every = 100;
  RunPolicy policy;
  policy.checkpoint_every = 0;
  EXPECT_EQ(actions_by_step(config, policy, 10), "1: 2: 3: 4: 5: 6: 7: 8: 9: 10:lecs ");
}

class TrainingRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cllm-training-run-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    data_.path = (dir_ / "corpus.txt").string();
    std::ofstream text(data_.path);
    for (int i = 0; i < 200; ++i) text << "It is a truth universally acknowledged. ";
  }
  void TearDown() override { fs::remove_all(dir_); }

  TrainConfig config() const {
    TrainConfig c;
    c.model.seq_len = 16;
    c.model.n_layer = 1;
    c.model.n_head = 2;
    c.model.n_embd = 16;
    c.micro_batch = 2;
    c.global_batch = 4;
    c.steps = 6;
    c.log_every = 1;
    c.eval_every = 0;
    c.eval_batches = 1;
    c.sample_tokens = 0;
    c.optim.warmup_steps = 2;
    return c;
  }
  RunPolicy policy(const std::string& name) const {
    RunPolicy p;
    p.out = (dir_ / name).string();
    return p;
  }

  fs::path dir_;
  DataSpec data_;
  Comm one_rank_;
};

TEST_F(TrainingRunTest, ASettingIsRefusedBeforeAnyFileIsTouched) {
  RunPolicy p = policy("refused");
  p.stop_at = -1;
  try {
    TrainingRun run(config(), p, data_, one_rank_);
    FAIL() << "a negative stop_at was accepted";
  } catch (const CollectiveFailure& f) {
    EXPECT_TRUE(f.invalid_setting());
    EXPECT_TRUE(f.reported_here());
    EXPECT_EQ(f.failed_rank(), 0);
    EXPECT_STREQ(f.what(), "stop_at must not be negative");
  }
  EXPECT_FALSE(fs::exists(p.out));
}

TEST_F(TrainingRunTest, StoppedAndResumedEqualsUninterruptedBitwise) {
  RunPolicy whole = policy("whole");
  TrainingRun straight(config(), whole, data_, one_rank_);
  const RunEnd end = straight.run();
  EXPECT_EQ(end.why, RunEnd::Why::completed);
  EXPECT_EQ(end.step, 6);

  RunPolicy split = policy("split");
  split.stop_at = 4;
  {
    TrainingRun first(config(), split, data_, one_rank_);
    const RunEnd stopped = first.run();
    EXPECT_EQ(stopped.why, RunEnd::Why::stop_at);
    EXPECT_EQ(stopped.step, 4);
  }
  EXPECT_TRUE(fs::exists(fs::path(split.out) / "checkpoint-00000004.h5"));
  split.stop_at = 0;
  {
    TrainingRun second(config(), split, data_, one_rank_);
    const RunEnd resumed = second.run();
    EXPECT_EQ(resumed.why, RunEnd::Why::completed);
    EXPECT_EQ(resumed.step, 6);
    EXPECT_EQ(checksum(second.trainer().model().params()),
              checksum(straight.trainer().model().params()));
    EXPECT_EQ(checksum(second.trainer().optimizer().v()),
              checksum(straight.trainer().optimizer().v()));
  }  // its lock on the folder goes with it

  TrainingRun again(config(), split, data_, one_rank_);
  EXPECT_EQ(again.run().why, RunEnd::Why::nothing_to_do);
}

TEST(Collectively, OneRankFailureCarriesItsReasonAndKind) {
  const Comm one_rank;
  EXPECT_NO_THROW(collectively(one_rank, [] {}));
  try {
    collectively(one_rank, [] { throw std::runtime_error("disk full"); });
    FAIL();
  } catch (const CollectiveFailure& f) {
    EXPECT_STREQ(f.what(), "disk full");
    EXPECT_FALSE(f.invalid_setting());
  }
}

}  // namespace
}  // namespace cllm

namespace cllm {
namespace {

TEST(SettingError, NamesSettingsAsCheckpointsDoAndLetsAFrontEndRenameThem) {
  ModelConfig m;
  m.n_head = 3;
  m.n_embd = 8;
  try {
    m.validate();
    FAIL() << "3 heads over 8 channels were accepted";
  } catch (const SettingError& e) {
    EXPECT_STREQ(e.what(), "n_head (3) must divide n_embd (8)");
    EXPECT_EQ(e.text([](std::string_view name) { return std::string(name).append("?"); }),
              "n_head? (3) must divide n_embd? (8)");
  }
}

TEST(SettingError, QuotesAValueWithBracesAsItIs) {
  const SettingError e("{out} " + SettingError::literal("a{b}{{c{") + " is an input");
  EXPECT_STREQ(e.what(), "out a{b}{{c{ is an input");
  EXPECT_EQ(e.text([](std::string_view name) { return "--" + std::string(name); }),
            "--out a{b}{{c{ is an input");
}

}  // namespace
}  // namespace cllm
