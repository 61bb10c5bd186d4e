// The checkpoint store on plain files in a temporary folder (no HDF5, no
// MPI, no cllm process): names and their steps, the listing, --resume
// auto's choice of the newest checkpoint that loads, and --keep's pruning.
#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cllm/io/checkpoint_store.h"
#include "cllm/io/durable_file.h"
#include "support/process.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

class CheckpointStoreTest : public ::testing::Test {
 protected:
  TempDir dir;
  CheckpointStore store{dir.path()};

  fs::path touch(const std::string& name) const {
    std::ofstream(dir / name) << name;
    return dir / name;
  }
  fs::path touch_step(std::int64_t step) const { return touch(store.path(step).filename()); }
  std::vector<std::int64_t> listed_steps() const {
    std::vector<std::int64_t> steps;
    for (const CheckpointFile& f : store.list()) steps.push_back(f.step);
    return steps;
  }
  bool exists(const std::string& name) const { return fs::exists(dir / name); }
};

TEST_F(CheckpointStoreTest, NamesAndStepsRoundTrip) {
  EXPECT_EQ(store.path(0), dir / "checkpoint-00000000.h5");
  EXPECT_EQ(store.path(1000), dir / "checkpoint-00001000.h5");
  EXPECT_EQ(store.path(123456789), dir / "checkpoint-123456789.h5");  // wider, never cut
  for (const std::int64_t step : {0LL, 7LL, 1000LL, 123456789LL, 999999999999999999LL})
    EXPECT_EQ(CheckpointStore::step_of(store.path(step).filename().string()), step);
  EXPECT_EQ(CheckpointStore::step_of("checkpoint-7.h5"), 7);  // fewer digits: still a step
  for (const char* other :
       {"checkpoint-.h5", "checkpoint-00000001.h5.bad", ".checkpoint-00000001.h5.tmp",
        "checkpoint-0000001x.h5", "checkpoint--0000001.h5", "checkpoint-+0000001.h5",
        "checkpoint-00000001.hdf5", "Checkpoint-00000001.h5", "metrics.jsonl",
        "checkpoint-1000000000000000000.h5"})  // 19 digits: might not fit
    EXPECT_EQ(CheckpointStore::step_of(other), std::nullopt) << other;
}

// durable_file.h owns the temporary-name scheme; the store asks it.
TEST_F(CheckpointStoreTest, TemporaryNamesGiveBackTheirFinalNames) {
  const fs::path tmp = temporary_name(store.path(3));
  EXPECT_EQ(tmp.parent_path(), dir.path());
  EXPECT_EQ(final_name(tmp.filename().string()), "checkpoint-00000003.h5");
  for (const char* other : {"checkpoint-00000003.h5", ".tmp", "..tmp", "x.tmp", ".x.h5"})
    EXPECT_EQ(final_name(other), std::nullopt) << other;
}

TEST_F(CheckpointStoreTest, ListsFinishedCheckpointsNewestFirst) {
  EXPECT_TRUE(CheckpointStore(dir / "missing").list().empty());
  EXPECT_TRUE(store.list().empty());
  touch_step(2);
  touch_step(10);
  touch_step(6);
  touch(temporary_name(store.path(12)).filename());  // a write in progress or killed
  touch("checkpoint-00000011.h5.bad");
  touch("metrics.jsonl");
  fs::create_directory(store.path(99));  // a folder of a checkpoint's name is no checkpoint
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{10, 6, 2}));
  EXPECT_EQ(store.list().front().path, store.path(10));
}

TEST_F(CheckpointStoreTest, ACorruptNewestIsSetAsideAndTheNextLoads) {
  for (const int step : {2, 4, 6}) touch_step(step);
  std::vector<std::int64_t> tried;
  testing::internal::CaptureStderr();
  const auto loaded = store.load_newest([&](const CheckpointFile& f) {
    tried.push_back(f.step);
    if (f.step == 6) throw std::runtime_error(f.path.string() + ": corrupt");
  });
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->step, 4);
  EXPECT_EQ(loaded->path, store.path(4));
  EXPECT_EQ(tried, (std::vector<std::int64_t>{6, 4}));
  EXPECT_EQ(err, "cllm: warning: skipping checkpoint " + store.path(6).string() +
                     ": corrupt; renamed to " + store.path(6).string() + ".bad\n");
  EXPECT_TRUE(exists("checkpoint-00000006.h5.bad"));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{4, 2}));
}

TEST_F(CheckpointStoreTest, AnotherRunsCheckpointPropagatesAndIsNotSetAside) {
  for (const int step : {2, 4}) touch_step(step);
  int calls = 0;
  testing::internal::CaptureStderr();
  EXPECT_THROW(store.load_newest([&](const CheckpointFile&) {
    ++calls;
    throw std::invalid_argument("other settings");
  }),
               std::invalid_argument);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{4, 2}));
  EXPECT_FALSE(exists("checkpoint-00000004.h5.bad"));
}

TEST_F(CheckpointStoreTest, NoneLoadsOrNoneThere) {
  int calls = 0;
  EXPECT_EQ(store.load_newest([&](const CheckpointFile&) { ++calls; }), std::nullopt);
  EXPECT_EQ(calls, 0);
  for (const int step : {2, 4}) touch_step(step);
  testing::internal::CaptureStderr();
  EXPECT_EQ(store.load_newest([](const CheckpointFile&) { throw std::runtime_error("bad"); }),
            std::nullopt);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("skipping checkpoint bad; renamed to " + store.path(4).string() + ".bad"),
            std::string::npos)
      << err;
  EXPECT_TRUE(store.list().empty());
  EXPECT_TRUE(exists("checkpoint-00000002.h5.bad"));
  EXPECT_TRUE(exists("checkpoint-00000004.h5.bad"));
}

TEST_F(CheckpointStoreTest, PruneKeepsTheNewest) {
  for (int step = 1; step <= 5; ++step) touch_step(step);
  store.prune(3, store.path(5));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{5, 4, 3}));
  store.prune(1, store.path(5));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{5}));
}

TEST_F(CheckpointStoreTest, PruneWithKeepZeroKeepsAll) {
  for (int step = 1; step <= 5; ++step) touch_step(step);
  store.prune(0, store.path(5));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{5, 4, 3, 2, 1}));
}

// A run rewound by hand writes step 2 beside older files of higher steps:
// what it just wrote counts as one of --keep and survives.
TEST_F(CheckpointStoreTest, PruneNeverDeletesTheOneJustWritten) {
  for (const int step : {60, 50, 2}) touch_step(step);
  store.prune(2, store.path(2));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{60, 2}));
  store.prune(1, store.path(2));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{2}));
}

TEST_F(CheckpointStoreTest, PruneDeletesKilledWritesAndNothingElse) {
  touch_step(1);
  const fs::path killed = touch(temporary_name(store.path(2)).filename());
  const std::vector<std::string> others = {
      "checkpoint-00000009.h5.bad", "metrics.jsonl", temporary_name("metrics.jsonl").string(),
      "notes.txt", ".checkpoint-notes.tmp"};
  for (const auto& name : others) touch(name);
  store.prune(0, store.path(1));  // keep 0 keeps every checkpoint, not the temporaries
  EXPECT_FALSE(fs::exists(killed));
  EXPECT_EQ(listed_steps(), (std::vector<std::int64_t>{1}));
  touch(killed.filename());
  store.prune(1, store.path(1));
  EXPECT_FALSE(fs::exists(killed));
  for (const auto& name : others) EXPECT_TRUE(exists(name)) << name;
}

}  // namespace
}  // namespace cllm
