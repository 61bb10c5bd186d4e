// Multi-rank training in process: this executable runs as several Open MPI
// ranks under mpiexec (tests/CMakeLists.txt starts it with 3), each running
// the same tests with a real Comm, so a test can look inside every rank's
// Trainer - its gradients after the allreduce, its replica check - where the
// end-to-end tests of test_mpi.cpp see only cllm's output.
//
// Every rank must reach every collective: checks before a collective are
// EXPECTs, never ASSERTs, so a failure on one rank cannot leave the others
// waiting. Failures name the rank (SCOPED_TRACE); ranks other than 0 print
// only their failures (--gtest_brief).
//
// Suites and their labels:
//   MpiRanksThreads.*  "mpi;threads" (ranks of two threads; also run under ThreadSanitizer)
//   MpiRanks.*         "mpi" (and the CLI's agreement on early exits)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cllm/app/exit_report.h"
#include "cllm/base/exit_codes.h"
#include "cllm/base/setting_error.h"
#include "cllm/data/text_dataset.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"
#include "cllm/dist/mpi_env.h"
#include "cllm/dist/node_counters.h"
#include "cllm/kernels/rng.h"
#include "cllm/train/train_config.h"
#include "cllm/train/train_settings.h"
#include "cllm/train/trainer.h"
#include "support/reference_step.h"
#include "support/synthetic_corpus.h"
#include "support/text.h"
#include "support/tiny_model.h"

namespace cllm {
namespace {

// A small corpus over 32 tokens, the same on every rank (a fixed seed):
// mostly a fixed successor function with some noise.
const TokenDataset& corpus() {
  static const TokenDataset data = test::synthetic_corpus(7, 5000, 1000);
  return data;
}

// A tiny model; every rank of `ranks` runs micro_per_rank micro-batches of 2
// sequences of 16 tokens on `threads` threads.
TrainConfig tiny_config(int ranks, int threads, int micro_per_rank) {
  TrainConfig c = test::tiny_train_config(threads);
  c.model.seq_len = 16;
  c.batch.global_batch = c.batch.micro_batch * micro_per_rank * ranks;
  c.seed = 2024;
  c.batch.bucket_mb = 0.01;  // several allreduce buckets
  return c;
}

std::string hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

using test::contains;

TEST(MpiRanksThreads, GradientIsTheMeanLossGradientOverEveryRanksMicroBatches) {
  // 4 micro-batches per rank, 2 per thread: each rank sums its threads'
  // dloss-1 gradients, the ranks sum theirs with MPI_Iallreduce bucket by
  // bucket, then every rank scales by 1/N, N the step's tokens over all
  // ranks. The reference runs all of the step's micro-batches on one thread
  // with dloss 1/N. Scaling by a rank's tokens instead of the step's, or not
  // at all, or losing a bucket's allreduce, is off by a factor.
  const Comm comm = Comm::world();
  SCOPED_TRACE("rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()));
  const TrainConfig cfg = tiny_config(comm.size(), 2, 4);
  const int step = 3;
  Trainer trainer(cfg, corpus(), comm);
  const StepResult r = trainer.train_step(step);
  // Every rank holds the same summed gradient, bit for bit.
  const auto sums = comm.all_gather(checksum(trainer.gradients()), Collective::replica_check);
  for (int k = 1; k < comm.size(); ++k)
    EXPECT_EQ(sums[k], sums[0]) << "rank " << k << "'s gradient differs from rank 0's";

  const test::ReferenceStep ref = test::reference_step(cfg, corpus(), step);
  if (comm.is_root())
    std::printf("%d ranks: loss %.6f (reference %.6f), grad norm %.6g (reference %.6g)\n",
                comm.size(), r.loss, ref.loss, r.grad_norm, ref.grad_norm);
  test::expect_step_matches_reference(r, trainer.gradients(), ref);
  EXPECT_TRUE(r.applied);
}

// What prepare's chunk rounds rest on: every thread of every rank takes
// from a counter they all map, and each value is taken exactly once; a
// counter set between two collectives starts again from its new value.
TEST(MpiRanksThreads, NodeCountersHandEachValueToExactlyOneThreadOfOneRank) {
  const Comm comm = Comm::world();
  SCOPED_TRACE("rank " + std::to_string(comm.rank()));
  ASSERT_TRUE(comm.on_one_node());
  const NodeCounters counters(comm, 2, Collective::prepare);
  constexpr std::uint64_t kValues = 20000;
  const auto take_all = [&](std::size_t counter, std::uint64_t end) {
    std::vector<std::uint64_t> taken;
#pragma omp parallel num_threads(2)
    {
      std::vector<std::uint64_t> mine;
      for (std::uint64_t v = counters.fetch_add(counter, 1); v < end; v = counters.fetch_add(counter, 1))
        mine.push_back(v);
#pragma omp critical
      taken.insert(taken.end(), mine.begin(), mine.end());
    }
    std::string bytes(taken.size() * sizeof(std::uint64_t), '\0');
    if (!taken.empty()) std::memcpy(bytes.data(), taken.data(), bytes.size());
    std::vector<int> times(end, 0);
    for (const std::string& rank : comm.gather_text(bytes, Collective::prepare))
      for (std::size_t i = 0; i < rank.size(); i += sizeof(std::uint64_t)) {
        std::uint64_t v = 0;
        std::memcpy(&v, rank.data() + i, sizeof v);
        ++times.at(v);
      }
    return times;
  };
  const std::vector<int> first = take_all(0, kValues);
  if (comm.is_root()) {
    for (std::uint64_t v = 0; v < kValues; ++v) EXPECT_EQ(first[v], 1) << "value " << v;
    counters.store(1, kValues - 100);
  }
  comm.synchronized_now(Collective::prepare);
  const std::vector<int> second = take_all(1, kValues);
  if (comm.is_root()) {
    for (std::uint64_t v = 0; v < kValues; ++v) EXPECT_EQ(second[v], v >= kValues - 100 ? 1 : 0) << "value " << v;
  }
}

TEST(MpiRanks, ReplicaCheckPassesWhileReplicasAgree) {
  const Comm comm = Comm::world();
  SCOPED_TRACE("rank " + std::to_string(comm.rank()));
  Trainer trainer(tiny_config(comm.size(), 1, 1), corpus(), comm);
  EXPECT_NO_THROW(trainer.check_replicas(0)) << "freshly initialised replicas";
  for (int s = 0; s < 3; ++s) EXPECT_TRUE(trainer.train_step(s).applied);
  EXPECT_NO_THROW(trainer.check_replicas(3)) << "replicas after 3 steps";
}

TEST(MpiRanks, OneRankOffByOneUlpFailsTheReplicaCheckOnEveryRank) {
  const Comm comm = Comm::world();
  SCOPED_TRACE("rank " + std::to_string(comm.rank()));
  Trainer trainer(tiny_config(comm.size(), 1, 1), corpus(), comm);
  EXPECT_TRUE(trainer.train_step(0).applied);
  const int step = 12;  // any step number: the message must carry it
  float& p = trainer.mutable_model().tensor("transformer.h.1.mlp.c_fc.weight")[5];
  const float original = p;
  // All replicas hold the same parameters: each rank works out both
  // checksums, the agreed one and the one with the nudge, by itself.
  const std::uint64_t agreed = checksum(trainer.model().params());
  p = std::nextafter(original, std::numeric_limits<float>::infinity());
  const std::uint64_t nudged = checksum(trainer.model().params());
  p = original;
  ASSERT_NE(agreed, nudged);  // (before any collective: the same on every rank)

  // Each rank in turn is the one that drifted by one ulp. The check compares
  // every rank with rank 0, so the rank named is the drifted one, or rank 1
  // when rank 0 drifted.
  for (int victim = 0; victim < comm.size(); ++victim) {
    SCOPED_TRACE("rank " + std::to_string(victim) + " perturbed");
    if (comm.rank() == victim) p = std::nextafter(original, std::numeric_limits<float>::infinity());
    const int named = victim == 0 ? 1 : victim;
    std::string message;
    bool threw = false;
    try {
      trainer.check_replicas(step);
    } catch (const std::runtime_error& e) {
      threw = true;
      message = e.what();
    }
    EXPECT_TRUE(threw) << "check_replicas returned on this rank";
    // Every rank, not only the drifted one or rank 0, must stop.
    EXPECT_TRUE(comm.all_ok(threw, Collective::agreement)) << "some rank's check_replicas returned";
    if (threw) {
      EXPECT_TRUE(contains(message, "step " + std::to_string(step))) << message;
      EXPECT_TRUE(contains(message, "rank 0 checksum " + hex(victim == 0 ? nudged : agreed)))
          << message;
      EXPECT_TRUE(contains(
          message, "rank " + std::to_string(named) + " " + hex(victim == 0 ? agreed : nudged)))
          << message;
      if (comm.is_root() && victim == comm.size() - 1)
        std::printf("message: %s\n", message.c_str());
    }
    // Restored, the replicas agree again.
    p = original;
    EXPECT_NO_THROW(trainer.check_replicas(step + 1));
  }
}

// Early exits (dist/collective.h, app/exit_report.h): whichever ranks stop,
// every rank returns the exit code of the lowest one, which alone prints why.
TEST(MpiRanks, EarlyExitsAreAgreedAndReportedOnce) {
  const Comm comm = Comm::world();
  SCOPED_TRACE("rank " + std::to_string(comm.rank()));
  const int last = comm.size() - 1;
  struct Outcome {
    std::optional<int> code;
    std::string out, err;
  };
  const auto outcome = [&](const std::function<void()>& work) {
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    Outcome o;
    try {
      collectively(comm, work);
    } catch (const CollectiveFailure& failure) {
      o.code = report(comm, failure, option_name);
    }
    o.out = testing::internal::GetCapturedStdout();
    o.err = testing::internal::GetCapturedStderr();
    return o;
  };
  const std::string me = "rank " + std::to_string(comm.rank()) + ": ";

  Outcome o = outcome([] {});
  EXPECT_FALSE(o.code.has_value());
  EXPECT_EQ(o.out + o.err, "");

  // A setting named by the option that sets it, on the last rank only.
  o = outcome([&] {
    if (comm.rank() == last) throw SettingError("{n_layer} must be positive");
  });
  EXPECT_EQ(o.code, std::optional<int>(kExitUsage));
  EXPECT_EQ(o.err, comm.rank() == last ? "cllm: error: " + me + "--layers must be positive\n" : "");

  // The lowest stopping rank wins: rank 0's I/O error over the last rank's --help.
  o = outcome([&] {
    if (comm.rank() == 0) throw std::runtime_error("disk\nfull");
    if (comm.rank() == last) throw HelpRequested{"usage\n"};
  });
  EXPECT_EQ(o.code, std::optional<int>(kExitError));
  EXPECT_EQ(o.err, comm.rank() == 0 ? "cllm: error: " + me + "disk full\n" : "");
  EXPECT_EQ(o.out, "");

  // --help alone: exit 0 everywhere, the text once, on stdout.
  o = outcome([&] {
    if (comm.rank() == last) throw HelpRequested{"usage\n"};
  });
  EXPECT_EQ(o.code, std::optional<int>(kExitOk));
  EXPECT_EQ(o.out, comm.rank() == last ? "usage\n" : "");

  // A command-line error names no rank: every rank shares the command line.
  o = outcome([&] {
    if (comm.rank() == 1) throw CommandLineError("The following argument was not expected: --bogus");
  });
  EXPECT_EQ(o.code, std::optional<int>(kExitUsage));
  EXPECT_EQ(o.err, comm.rank() == 1 ? "cllm: error: The following argument was not expected: --bogus\n" : "");

  // A failure the library agreed on itself is reported by the rank that had it.
  o = outcome([&] {
    collectively(comm, [&] {
      if (comm.rank() == 1) throw std::runtime_error("no such file");
    });
  });
  EXPECT_EQ(o.code, std::optional<int>(kExitError));
  EXPECT_EQ(o.err, comm.rank() == 1 ? "cllm: error: " + me + "no such file\n" : "");
}

}  // namespace
}  // namespace cllm

int main(int argc, char** argv) {
  cllm::MpiEnvironment mpi(argc, argv);
  // Before InitGoogleTest, which picks the result printer (a command-line
  // --gtest_brief still wins).
  if (mpi.rank() != 0) GTEST_FLAG_SET(brief, true);
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.size() < 2 && !GTEST_FLAG_GET(list_tests)) {
    std::fprintf(stderr, "%s: run under mpiexec with 2 or more ranks (this is %d)\n", argv[0],
                 mpi.size());
    return 1;
  }
  return RUN_ALL_TESTS();
}
