// Multi-rank training, end to end: real Open MPI ranks started by mpiexec,
// each running OpenMP threads. Layouts (ranks x threads) of the same global
// batch must give the same loss curve, every rank must hold bitwise the same
// parameters (cllm checks its replicas' checksums and fails otherwise), runs
// must be reproducible, and a failure on one rank must end every rank.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "cllm/dist/comm.h"
#include "support/metrics.h"
#include "support/process.h"
#include "support/run_args.h"
#include "support/text.h"

namespace cllm {
namespace {

using test::contains;
using test::run_cllm_mpi;
using test::TempDir;
using test::with;

const std::string kData = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";

// A tiny model, 20 steps, a global batch of 8 sequences in micro-batches of
// 2, the replicas compared every 5 steps, several allreduce buckets.
std::vector<std::string> tiny_run(int threads, const std::string& out) {
  return with(test::tiny_run(kData, out, threads), {"--check-every", "5", "--bucket-mb", "0.01"});
}

std::vector<double> losses(const std::string& metrics_path) {
  return test::metric_values(metrics_path, "loss");
}

std::string final_checksum(const std::string& out) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(out, m, std::regex("parameter checksum ([0-9a-f]{16})"))) << out;
  return m.size() > 1 ? m[1].str() : "";
}

struct Layout {
  int ranks, threads;
};

// 1x2, 2x1, 1x4, 2x2 and 4x1 ranks x threads: each sums the gradients in
// its own order, so the loss curves agree to a tolerance, and every layout's
// replicas are bitwise identical.
void expect_layouts_agree(const std::vector<std::string>& extra, double tolerance) {
  TempDir dir;
  std::vector<std::vector<double>> curves;
  for (Layout l : {Layout{1, 4}, Layout{1, 2}, Layout{2, 1}, Layout{2, 2}, Layout{4, 1}}) {
    const std::string out =
        (dir / ("run" + std::to_string(l.ranks) + "x" + std::to_string(l.threads))).string();
    const auto r = run_cllm_mpi(l.ranks, with(tiny_run(l.threads, out), extra), dir.path());
    // Exit 0 includes the final cross-rank checksum comparison: every rank's
    // parameters were bitwise identical.
    ASSERT_EQ(r.exit_code, 0) << l.ranks << "x" << l.threads << ": " << r.err;
    EXPECT_TRUE(contains(r.out, "the same on all " + std::to_string(l.ranks) + " rank(s)"));
    curves.push_back(losses(out + "/metrics.jsonl"));
    ASSERT_EQ(curves.back().size(), 20u);
  }
  double worst = 0;
  for (std::size_t k = 1; k < curves.size(); ++k)
    for (std::size_t s = 0; s < curves[0].size(); ++s) {
      const double rel = std::abs(curves[k][s] - curves[0][s]) / std::abs(curves[0][s]);
      worst = std::max(worst, rel);
      EXPECT_LE(rel, tolerance) << "layout " << k << " step " << s + 1;
    }
  std::printf("largest relative loss difference between layouts: %.3g\n", worst);
  EXPECT_LT(curves[0].back(), curves[0].front() - 0.1) << "the loss should fall";
}

TEST(Mpi, LayoutsGiveTheSameLossCurveAndIdenticalReplicas) { expect_layouts_agree({}, 1e-5); }

// bf16 products round the weights each step, so a last-bit difference in a
// sum can move a weight by a bf16 step: 2e-4 (about 2e-5 seen).
TEST(Mpi, Bf16LayoutsAgreeWithinTheirToleranceAndReplicasMatch) {
  expect_layouts_agree({"--precision", "bf16"}, 2e-4);
}

// Two runs of one layout, the second with `second_extra`: the same final
// parameters (checksum) and the same metrics, bit for bit.
void expect_bitwise_same_runs(int ranks, int threads, const std::vector<std::string>& second_extra) {
  TempDir dir;
  std::string checksums[2], metrics[2];
  for (int i = 0; i < 2; ++i) {
    const std::string out = (dir / ("run" + std::to_string(i))).string();
    const auto r = run_cllm_mpi(
        ranks, with(tiny_run(threads, out), i == 1 ? second_extra : std::vector<std::string>{}),
        dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    checksums[i] = final_checksum(r.out);
    // Losses, learning rates and norms; timings differ, so drop them.
    for (auto record : test::read_metrics(out + "/metrics.jsonl")) {
      for (const char* timing :
           {"tokens_per_s", "ms_per_step", "eta_s", "comm_wait_s", "slowest_rank"})
        record.erase(timing);
      metrics[i] += record.dump() + "\n";
    }
  }
  EXPECT_EQ(checksums[0], checksums[1]);
  EXPECT_EQ(metrics[0], metrics[1]);
  EXPECT_FALSE(metrics[0].empty());
}

TEST(Mpi, SameLayoutTwiceIsBitwiseReproducible) { expect_bitwise_same_runs(2, 2, {}); }

// The allreduce posted layer by layer during backward, or all of it after:
// the same buckets summed in the same order. 2 ranks x 1 thread run two
// rounds of micro-batches a step; 2 x 3, one round with thread 2 idle.
TEST(Mpi, OverlapOffGivesTheBitsOfOverlapOn) {
  expect_bitwise_same_runs(2, 1, {"--overlap", "off"});
  expect_bitwise_same_runs(2, 3, {"--overlap", "off"});
}

// The progress thread posts the units in the order the main thread marked
// them ready, the same on every rank (posted in another order, the ranks'
// collectives mismatch and Open MPI fails them); the sums are the same.
TEST(Mpi, ProgressThreadGivesTheBitsOfTheMainThreadsTests) {
  expect_bitwise_same_runs(2, 2, {"--progress-us", "20"});
}

// Runs rank 0 with `good` and rank 1 with `bad` arguments (an MPMD launch);
// expects every rank to stop on its own, soon and non-zero, with `reason`
// printed once. mpiexec would kill the other ranks once one fails, hiding a
// rank left waiting for the failed one; here it is told not to, and each
// rank runs under a shell that prints the rank's own exit code.
void expect_one_rank_failure_ends_all(const std::vector<std::string>& good,
                                      const std::vector<std::string>& bad,
                                      const std::string& reason, const TempDir& dir) {
  const auto rank = [](const std::vector<std::string>& args) {
    std::vector<std::string> r = {"-n", "1", "-x", "ASAN_OPTIONS", "sh", "-c",
                                  "\"$0\" \"$@\"; echo \"rank exit $?\" >&2", CLLM_BINARY};
    r.insert(r.end(), args.begin(), args.end());
    return r;
  };
  std::vector<std::string> full = {"--mca", "orte_abort_on_non_zero_status", "0"};
  for (const auto& part : {rank(good), std::vector<std::string>{":"}, rank(bad)})
    full.insert(full.end(), part.begin(), part.end());
  const auto r = test::wait_program(test::start_program(CLLM_MPIEXEC, full, dir.path()),
                                    std::chrono::seconds(60));
  ASSERT_FALSE(r.timed_out) << "a rank hung waiting for the failed one:\n" << r.err;
  std::vector<std::string> exits;
  for (const auto& line : test::split_lines(r.err))
    if (line.rfind("rank exit ", 0) == 0) exits.push_back(line);
  ASSERT_EQ(exits.size(), 2u) << r.err;
  for (const auto& line : exits) EXPECT_NE(line, "rank exit 0") << r.err;
  const auto first = r.err.find(reason);
  ASSERT_NE(first, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(reason, first + 1), std::string::npos) << "reported twice: " << r.err;
  EXPECT_FALSE(contains(r.err, "rank 0:")) << r.err;
}

TEST(Mpi, UnreadableFileOnOneRankStopsEveryRankAndIsReportedOnce) {
  TempDir dir;
  // Rank 1 is given a folder where its data file should be.
  const auto good = tiny_run(1, (dir / "out").string());
  expect_one_rank_failure_ends_all(good, with(good, {"--data", dir.str()}),
                                   "rank 1: " + dir.str() + ": not a regular file", dir);
}

TEST(Mpi, BadOptionOnOneRankStopsEveryRank) {
  TempDir dir;
  const auto good = tiny_run(1, (dir / "out").string());
  expect_one_rank_failure_ends_all(good, with(good, {"--heads", "3"}),
                                   "rank 1: --heads (3) must divide --embd (32)", dir);
  expect_one_rank_failure_ends_all(good, with(good, {"--bogus", "1"}),
                                   "not expected: 1 --bogus", dir);
}

TEST(Mpi, GlobalBatchMustSplitOverRanks) {
  TempDir dir;
  // 3 micro-batches over 2 ranks
  const auto args = with(tiny_run(1, (dir / "out").string()), {"--global-batch", "6"});
  const auto r = run_cllm_mpi(2, args, dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "--global-batch (6) must be a multiple of ranks x --micro-batch"))
      << r.err;
}

// Two ranks of two threads each: the tsan preset runs this one under
// ThreadSanitizer (label "threads").
TEST(MpiThreads, TwoRanksOfTwoThreadsTrain) {
  // With and without the progress thread (on one node it is off unless
  // asked for): under ThreadSanitizer, its hand-over of MPI with the main
  // thread and the queue of units it posts are checked too.
  for (const char* progress_us : {"0", "50"}) {
    TempDir dir;
    const auto r = run_cllm_mpi(
        2, with(tiny_run(2, (dir / "out").string()), {"--steps", "4", "--progress-us", progress_us}),
        dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(contains(r.err, "ThreadSanitizer")) << r.err;
    EXPECT_EQ(losses((dir / "out" / "metrics.jsonl").string()).size(), 4u);
  }
}

TEST(MpiChecksum, OneFlippedBitChangesTheChecksum) {
  std::vector<float> a(1001, 0.5f), b = a;
  EXPECT_EQ(checksum(a), checksum(b));
  reinterpret_cast<unsigned char*>(b.data())[4000] ^= 1;  // the last float's low bit
  EXPECT_NE(checksum(a), checksum(b));
}

}  // namespace
}  // namespace cllm
