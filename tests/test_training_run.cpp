// TrainingRun in-process, on a one-rank Comm: the loop's cadences as a pure
// function of the step, settings refused before any file is touched, and a
// run stopped at a step and resumed, bitwise equal to one that was not.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "cllm/app/training_run.h"
#include "cllm/base/exit_codes.h"
#include "cllm/base/setting_error.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"
#include "cllm/io/checkpoint_store.h"
#include "support/metrics.h"
#include "support/text.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;

TrainConfig ten_steps() {
  TrainConfig c;
  c.steps = 10;
  return c;
}

RunConfig cadences(int checkpoint_every) {
  RunConfig p;
  p.log_every = 3;
  p.eval_every = 5;
  p.check_every = 4;
  p.checkpoint_every = checkpoint_every;
  return p;
}

// One letter per step: l(og), e(val), c(heck replicas), s(ave checkpoint).
std::string actions_by_step(const TrainConfig& config, const RunConfig& policy, int end) {
  std::string s;
  for (int done = 1; done <= end; ++done) {
    const StepActions a = step_actions(config, policy, done, end);
    s += std::to_string(done) + ":" + (a.log ? "l" : "") + (a.evaluate ? "e" : "") +
         (a.check_replicas ? "c" : "") + (a.checkpoint ? "s" : "") + " ";
  }
  return s;
}

TEST(TrainingRunPolicy, CadencesFollowTheirSettingsAndTheLastStepDoesEverything) {
  EXPECT_EQ(actions_by_step(ten_steps(), cadences(4), 10),
            "1: 2: 3:l 4:cs 5:le 6:l 7: 8:cs 9:l 10:lecs ");
}

TEST(TrainingRunPolicy, StopAtLogsChecksAndCheckpointsItsStep) {
  EXPECT_EQ(actions_by_step(ten_steps(), cadences(0), 7),  // checkpoints only at the end
            "1: 2: 3:l 4:c 5:le 6:l 7:lcs ");
}

TEST(TrainingRunPolicy, ZeroCadencesMeanOnlyAtTheEnd) {
  RunConfig policy = cadences(0);
  policy.eval_every = 0;
  policy.check_every = 0;
  policy.log_every = 100;
  EXPECT_EQ(actions_by_step(ten_steps(), policy, 10), "1: 2: 3: 4: 5: 6: 7: 8: 9: 10:lecs ");
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
    c.batch.micro_batch = 2;
    c.batch.global_batch = 4;
    c.steps = 6;
    c.eval_batches = 1;
    c.optim.warmup_steps = 2;
    return c;
  }
  RunConfig policy(const std::string& name) const {
    RunConfig p;
    p.out = (dir_ / name).string();
    p.log_every = 1;
    p.eval_every = 0;
    p.sample_tokens = 0;
    return p;
  }

  fs::path dir_;
  DataConfig data_;
  Comm one_rank_;
};

TEST_F(TrainingRunTest, ASettingIsRefusedBeforeAnyFileIsTouched) {
  RunConfig p = policy("refused");
  p.stop_at = -1;
  try {
    TrainingRun run(config(), p, data_, one_rank_);
    FAIL() << "a negative stop_at was accepted";
  } catch (const CollectiveFailure& f) {
    EXPECT_EQ(f.exit_code(), kExitUsage);
    EXPECT_TRUE(f.reported_here());
    EXPECT_EQ(f.failed_rank(), 0);
    EXPECT_STREQ(f.what(), "stop_at must not be negative");
  }
  EXPECT_FALSE(fs::exists(p.out));

  // The data's settings too: NaN is not in [0, 0.5] (no comparison with it is true).
  DataConfig nan_fraction = data_;
  nan_fraction.val_fraction = std::numeric_limits<double>::quiet_NaN();
  try {
    TrainingRun run(config(), policy("refused"), nan_fraction, one_rank_);
    FAIL() << "a NaN val_fraction was accepted";
  } catch (const CollectiveFailure& f) {
    EXPECT_EQ(f.exit_code(), kExitUsage);
    EXPECT_STREQ(f.what(), "val_fraction must be in [0, 0.5], not nan");
  }
  EXPECT_FALSE(fs::exists(p.out));
}

// Resume compares the checkpoint's settings with the run's (run_settings.h):
// those that define the run are refused, each named with both values, and
// nothing is written; those that only steer it apply, with a warning each,
// the settings named as the front end names them.
TEST_F(TrainingRunTest, ResumeRefusesSettingsThatDefineTheRunAndWarnsAboutTheRest) {
  RunConfig p = policy("run");
  p.stop_at = 2;
  TrainConfig bf16 = config();
  bf16.batch.matmul.precision = kernels::Precision::bf16;
  TrainingRun(bf16, p, data_, one_rank_).run();
  p.stop_at = 4;
  const CheckpointStore store(p.out);
  const auto refusal = [&](const TrainConfig& c, const DataConfig& d) -> std::string {
    try {
      TrainingRun(c, p, d, one_rank_).run();
    } catch (const CollectiveFailure& f) {
      EXPECT_EQ(f.exit_code(), kExitUsage) << f.what();
      return f.what();
    }
    return "(resumed)";
  };
  TrainConfig seed = config();
  seed.seed = 7;
  EXPECT_EQ(refusal(seed, data_), store.path(2).string() +
                                      " belongs to a run with other settings: seed 1337 "
                                      "(checkpoint) vs 7 (now); use the checkpoint's values, "
                                      "or another out");
  TrainConfig shape = seed;
  shape.model.n_head = 4;
  shape.batch.micro_batch = 1;
  shape.batch.global_batch = 8;
  const std::string why = refusal(shape, data_);
  for (const char* named : {"n_head 2 (checkpoint) vs 4 (now)", "micro_batch 2 (checkpoint) vs 1 (now)",
                            "global_batch 4 (checkpoint) vs 8 (now)", "seed 1337 (checkpoint) vs 7 (now)"})
    EXPECT_TRUE(test::contains(why, named)) << why;
  DataConfig other = data_;
  other.path = (dir_ / "other.txt").string();
  std::ofstream(other.path) << test::read_file(data_.path).substr(0, 5000);
  EXPECT_TRUE(test::contains(refusal(config(), other),
                             "data " + data_.path + " (checkpoint) vs " + other.path + " (now)"));
  EXPECT_EQ(store.list().size(), 1u);

  // The data file moved (same contents, another path), the schedule,
  // --keep and the products' precision changed: fine.
  DataConfig moved = data_;
  moved.path = (dir_ / "moved.txt").string();
  fs::copy_file(data_.path, moved.path);
  TrainConfig faster = config();
  faster.optim.lr = 2e-3f;
  p.keep = 5;
  testing::internal::CaptureStderr();
  const RunEnd end = TrainingRun(faster, p, moved, one_rank_, [](std::string_view name) {
                       return "<" + std::string(name) + ">";
                     }).run();
  const std::string warnings = testing::internal::GetCapturedStderr();
  EXPECT_EQ(end.why, RunEnd::Why::stop_at);
  EXPECT_EQ(end.step, 4);
  EXPECT_EQ(warnings,  // in --help's order (train_settings.cpp), the choices last
            "cllm: warning: resuming with <keep> 3 -> 5 (the checkpoint's run used the first)\n"
            "cllm: warning: resuming with <lr> 0.001 -> 0.002 (the checkpoint's run used the first)\n"
            "cllm: warning: resuming with <precision> bf16 -> fp32 (the checkpoint's run used the "
            "first)\n");
}

// In fp32 and in bf16 (whose weights' bf16 copy a resumed run makes afresh
// from the loaded fp32 parameters).
TEST_F(TrainingRunTest, StoppedAndResumedEqualsUninterruptedBitwise) {
  for (const auto precision : {kernels::Precision::fp32, kernels::Precision::bf16}) {
    SCOPED_TRACE(kernels::to_string(precision));
    TrainConfig c = config();
    c.batch.matmul.precision = precision;
    const std::string name = kernels::to_string(precision);
    RunConfig whole = policy(name + "-whole");
    TrainingRun straight(c, whole, data_, one_rank_);
    const RunEnd end = straight.run();
    EXPECT_EQ(end.why, RunEnd::Why::completed);
    EXPECT_EQ(end.step, 6);

    RunConfig split = policy(name + "-split");
    split.stop_at = 4;
    {
      TrainingRun first(c, split, data_, one_rank_);
      const RunEnd stopped = first.run();
      EXPECT_EQ(stopped.why, RunEnd::Why::stop_at);
      EXPECT_EQ(stopped.step, 4);
    }
    EXPECT_TRUE(fs::exists(fs::path(split.out) / "checkpoint-00000004.h5"));
    split.stop_at = 0;
    {
      TrainingRun second(c, split, data_, one_rank_);
      const RunEnd resumed = second.run();
      EXPECT_EQ(resumed.why, RunEnd::Why::completed);
      EXPECT_EQ(resumed.step, 6);
      EXPECT_EQ(checksum(second.trainer().model().params()),
                checksum(straight.trainer().model().params()));
      EXPECT_EQ(checksum(second.trainer().optimizer().v()),
                checksum(straight.trainer().optimizer().v()));
    }  // its lock on the folder goes with it

    TrainingRun again(c, split, data_, one_rank_);
    EXPECT_EQ(again.run().why, RunEnd::Why::nothing_to_do);
  }
}

// --keep 2 of checkpoints every 3 steps; a truncated newest is set aside as
// .bad, named on stderr, and the run resumes from the one before it.
TEST_F(TrainingRunTest, KeepsTheNewestAndResumesPastABrokenOne) {
  TrainConfig c = config();
  c.steps = 12;
  RunConfig p = policy("run");
  p.checkpoint_every = 3;
  p.keep = 2;
  p.stop_at = 9;
  {
    TrainingRun first(c, p, data_, one_rank_);
    ASSERT_EQ(first.run().why, RunEnd::Why::stop_at);
  }
  const CheckpointStore store(p.out);
  const auto files = store.list();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].step, 9);
  EXPECT_EQ(files[1].step, 6);
  const fs::path newest = files[0].path;
  fs::resize_file(newest, fs::file_size(newest) / 2);

  p.stop_at = 0;
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  RunEnd end;
  {
    TrainingRun second(c, p, data_, one_rank_);
    end = second.run();
  }
  const std::string out = ::testing::internal::GetCapturedStdout();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(end.why, RunEnd::Why::completed);
  EXPECT_NE(err.find("skipping checkpoint " + newest.string()), std::string::npos) << err;
  EXPECT_NE(err.find("renamed to " + newest.string() + ".bad"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(newest.string() + ".bad"));
  EXPECT_NE(out.find("resuming from " + store.path(6).string()), std::string::npos) << out;
  // The two newest of those written since: the .bad file is not counted.
  const auto kept = store.list();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].step, 12);
  EXPECT_EQ(kept[1].step, 9);
}

TEST_F(TrainingRunTest, ResumeNoneRefusesAFolderWithCheckpoints) {
  RunConfig p = policy("run");
  {
    TrainingRun first(config(), p, data_, one_rank_);
    ASSERT_EQ(first.run().why, RunEnd::Why::completed);
  }
  p.resume = "none";
  TrainingRun again(config(), p, data_, one_rank_);
  try {
    again.run();
    FAIL() << "--resume none started afresh beside checkpoints";
  } catch (const CollectiveFailure& f) {
    EXPECT_EQ(f.exit_code(), kExitError);
    EXPECT_NE(std::string(f.what()).find("already holds checkpoints"), std::string::npos)
        << f.what();
  }
}

// A record cut short by a kill in the middle of its write is dropped on
// resume; every line after it is one whole record, steps 1 to 8 in order.
TEST_F(TrainingRunTest, MetricsKeepWholeRecordsOnlyAcrossAResume) {
  TrainConfig c = config();
  c.steps = 8;
  RunConfig p = policy("run");
  p.stop_at = 6;
  {
    TrainingRun first(c, p, data_, one_rank_);
    ASSERT_EQ(first.run().why, RunEnd::Why::stop_at);
  }
  const fs::path metrics = fs::path(p.out) / "metrics.jsonl";
  std::ofstream(metrics, std::ios::app) << "{\"step\": 3, \"loss\": 5.5";
  p.stop_at = 0;
  {
    TrainingRun second(c, p, data_, one_rank_);
    ASSERT_EQ(second.run().why, RunEnd::Why::completed);
  }
  const auto records = test::read_metrics(metrics);
  const auto lines = test::split_lines(test::read_file(metrics));
  ASSERT_EQ(records.size(), 8u) << test::read_file(metrics);
  ASSERT_EQ(lines.size(), 8u);
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].begin().key(), "step") << lines[i];
    EXPECT_EQ(test::number_at(records[i], "step"), static_cast<double>(i + 1)) << lines[i];
    EXPECT_EQ(lines[i].back(), '}') << lines[i];
  }
}

TEST(Collectively, OneRankFailureCarriesItsReasonAndKind) {
  const Comm one_rank;
  EXPECT_NO_THROW(collectively(one_rank, [] {}));
  try {
    collectively(one_rank, [] { throw std::runtime_error("disk full"); });
    FAIL();
  } catch (const CollectiveFailure& f) {
    EXPECT_STREQ(f.what(), "disk full");
    EXPECT_EQ(f.exit_code(), kExitError);
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
