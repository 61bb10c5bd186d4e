// Watching a run, end to end on real ranks: the Chrome trace (--trace) parses,
// its spans nest, every step has every rank's and thread's spans, and time
// runs forward within a thread; the stall inspector names a rank stopped by
// SIGSTOP (--stall-warn), and the run then ends bitwise as an undisturbed
// one; with --stall-abort every process ends with exit code 5; the log line
// and metrics.jsonl show the wait. A checkpoint written or read for longer
// than the thresholds is busy, not stalled; a rank stopped while busy is
// still named.
#include <gtest/gtest.h>
#include <signal.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "cllm/dist/trace_file.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/checkpoint_store.h"
#include "support/metrics.h"
#include "support/process.h"
#include "support/run_args.h"
#include "support/text.h"

namespace cllm {
namespace {

using nlohmann::json;
using test::contains;
using test::TempDir;
using test::with;

const std::string kData = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";

// ---- the trace

struct Span {
  std::string name;
  double begin, end;  // microseconds
  int step;
};

// Reads a trace file; every event must have what Chrome's format requires.
json read_trace(const std::filesystem::path& path) {
  const std::string text = test::read_file(path);
  json trace = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(trace.is_array()) << path << " is not a JSON array:\n" << text.substr(0, 2000);
  if (!trace.is_array()) return json::array();
  for (const json& e : trace) {
    EXPECT_TRUE(e.contains("name") && e.contains("ph") && e.contains("pid")) << e.dump();
    const std::string ph = e.value("ph", "");
    EXPECT_TRUE(ph == "X" || ph == "M" || ph == "b" || ph == "e") << e.dump();
    if (ph == "X") {
      EXPECT_TRUE(e.contains("ts") && e.contains("dur") && e.contains("tid")) << e.dump();
    }
  }
  return trace;
}

// The complete events of each (rank, thread), in file order.
std::map<std::pair<int, int>, std::vector<Span>> spans_by_thread(const json& trace) {
  std::map<std::pair<int, int>, std::vector<Span>> threads;
  for (const json& e : trace)
    if (e.value("ph", "") == "X") {
      const double ts = e["ts"].get<double>();
      threads[{e["pid"].get<int>(), e["tid"].get<int>()}].push_back(
          {e["name"].get<std::string>(), ts, ts + e["dur"].get<double>(),
           e["args"].value("step", -1)});
    }
  return threads;
}

// Within each thread: start times never go back, and any two spans are
// nested or disjoint (the microsecond figures are rounded to 1 ns).
void expect_monotonic_and_nested(const json& trace) {
  constexpr double kRounding = 0.002;
  for (const auto& [where, spans] : spans_by_thread(trace)) {
    const std::string who = "rank " + std::to_string(where.first) + " thread " +
                            std::to_string(where.second);
    std::vector<const Span*> open;
    for (std::size_t i = 0; i < spans.size(); ++i) {
      const Span& s = spans[i];
      EXPECT_GE(s.end, s.begin) << who << ": " << s.name;
      if (i > 0) {
        EXPECT_GE(s.begin, spans[i - 1].begin)
            << who << ": " << s.name << " starts before the span before it";
      }
      while (!open.empty() && s.begin >= open.back()->end - kRounding) open.pop_back();
      if (!open.empty()) {
        EXPECT_LE(s.end, open.back()->end + kRounding)
            << who << ": " << s.name << " [" << s.begin << ", " << s.end << ") overlaps "
            << open.back()->name << " [" << open.back()->begin << ", " << open.back()->end
            << ") without nesting in it";
      }
      open.push_back(&s);
    }
  }
}

// How many spans of each (name, rank, thread, step) the trace holds.
using SpanKey = std::tuple<std::string, int, int, int>;
std::map<SpanKey, int> span_counts(const json& trace) {
  std::map<SpanKey, int> counts;
  for (const auto& [where, spans] : spans_by_thread(trace))
    for (const Span& s : spans) ++counts[{s.name, where.first, where.second, s.step}];
  return counts;
}

// A tiny model over 2 ranks x 2 threads: 4 micro-batches a step, several
// allreduce buckets, an evaluation and a checkpoint at step 4.
std::vector<std::string> traced_run(const std::string& out, const std::string& trace) {
  return with(test::tiny_run(kData, out, 2, 6),
              {"--eval-every", "4", "--checkpoint-every", "4", "--log-every", "2", "--bucket-mb",
               "0.01", "--trace", trace});
}

TEST(Trace, EveryStepHasEveryRanksAndThreadsSpansNestedInTimeOrder) {
  TempDir dir;
  const auto trace_path = dir / "trace.json";
  const auto r = test::run_cllm_mpi(2, traced_run((dir / "out").string(), trace_path), dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json trace = read_trace(trace_path);
  ASSERT_FALSE(trace.empty());
  expect_monotonic_and_nested(trace);

  const auto counts = span_counts(trace);
  const auto count = [&](const std::string& name, int rank, int thread, int step) {
    const auto it = counts.find({name, rank, thread, step});
    return it == counts.end() ? 0 : it->second;
  };
  for (int step = 1; step <= 6; ++step)
    for (int rank = 0; rank < 2; ++rank) {
      const std::string at = "rank " + std::to_string(rank) + " step " + std::to_string(step);
      for (const char* main_span : {"step", "read windows", "optimizer", "wait: gradient allreduce",
                                    "wait: loss sum"})
        EXPECT_EQ(count(main_span, rank, 0, step), 1) << main_span << ", " << at;
      // After the last step there is nothing left to stop.
      EXPECT_EQ(count("wait: stop agreement", rank, 0, step), step < 6 ? 1 : 0) << at;
      for (int thread = 0; thread < 2; ++thread) {
        // 4 micro-batches over 2 ranks x 2 threads: one each.
        for (const char* name : {"micro-batch", "forward", "output head", "backward"})
          EXPECT_EQ(count(name, rank, thread, step), 1) << name << ", thread " << thread << ", " << at;
        // One in-rank sum a block, inside the thread's backward pass.
        EXPECT_GE(count("reduce layer", rank, thread, step), 2) << "thread " << thread << ", " << at;
      }
    }
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(count("evaluate", rank, 0, 4), 1) << "rank " << rank;
    EXPECT_EQ(count("checkpoint", rank, 0, 4), 1) << "rank " << rank;
    EXPECT_EQ(count("wait: checkpoint agreement", rank, 0, 4), 1) << "rank " << rank;
  }

  // Each step's micro-batches, 0-3, each run once over the ranks.
  std::map<int, std::multiset<int>> micro_batches;
  std::map<std::string, int> async_open;  // allreduce spans: "b" and "e" pair up
  std::set<int> named_ranks;
  for (const json& e : trace) {
    if (e["name"] == "micro-batch") micro_batches[e["args"]["step"]].insert(e["args"]["micro_index"].get<int>());
    if (e["ph"] == "b") ++async_open[e["id2"].dump() + e["pid"].dump()];
    if (e["ph"] == "e") --async_open[e["id2"].dump() + e["pid"].dump()];
    if (e["name"] == "process_name") named_ranks.insert(e["pid"].get<int>());
  }
  EXPECT_EQ(micro_batches.size(), 6u);
  for (const auto& [step, ids] : micro_batches)
    EXPECT_EQ(ids, (std::multiset<int>{0, 1, 2, 3})) << "step " << step;
  EXPECT_GE(async_open.size(), 2u * 6 * 2) << "an allreduce span per bucket, step and rank";
  for (const auto& [id, balance] : async_open) EXPECT_EQ(balance, 0) << id;
  EXPECT_EQ(named_ranks, (std::set<int>{0, 1}));
}

// A trace must not change what the run computes.
TEST(Trace, TracedRunEqualsAnUntracedOneBitwise) {
  TempDir dir;
  const auto traced = traced_run((dir / "a").string(), (dir / "trace.json").string());
  std::vector<std::string> untraced = traced;
  untraced.resize(untraced.size() - 2);  // drop --trace FILE
  untraced = with(untraced, {"--out", (dir / "b").string()});
  ASSERT_EQ(test::run_cllm_mpi(2, traced, dir.path()).exit_code, 0);
  ASSERT_EQ(test::run_cllm_mpi(2, untraced, dir.path()).exit_code, 0);
  EXPECT_EQ(test::loss_texts(dir / "a" / "metrics.jsonl"),
            test::loss_texts(dir / "b" / "metrics.jsonl"));
}

TEST(Trace, BenchWritesEveryTimedAndWarmUpStep) {
  TempDir dir;
  const auto trace_path = dir / "bench.json";
  const auto r = test::run_cllm({"bench", "--layers", "1", "--heads", "2", "--embd", "32",
                                 "--seq-len", "32", "--micro-batch", "2", "--threads", "2",
                                 "--steps", "3", "--warmup-steps", "1", "--trace",
                                 trace_path.string()},
                                dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json trace = read_trace(trace_path);
  expect_monotonic_and_nested(trace);
  const auto counts = span_counts(trace);
  for (int step = 1; step <= 4; ++step) {
    EXPECT_EQ(counts.count({"step", 0, 0, step}), 1u) << step;
    for (int thread = 0; thread < 2; ++thread)
      EXPECT_EQ(counts.count({"micro-batch", 0, thread, step}), 1u) << step;
  }
}

TEST(Trace, UnwritableTraceFileIsOneLineNamingIt) {
  TempDir dir;
  const std::string bad = (dir / "no-such-folder" / "trace.json").string();
  const auto r = test::run_cllm(with(test::one_layer_run(kData, (dir / "out").string()),
                                     {"--trace", bad}),
                                dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::split_lines(r.err).size(), 1u) << r.err;
  EXPECT_TRUE(contains(r.err, bad + ": cannot write the trace")) << r.err;
}

TEST(Trace, StallOptionsMustNotBeNegative) {
  TempDir dir;
  for (const char* option : {"--stall-warn", "--stall-abort"}) {
    const auto r = test::run_cllm(with(test::one_layer_run(kData, (dir / "out").string()),
                                       {option, "-1"}),
                                  dir.path());
    EXPECT_EQ(r.exit_code, 2) << option;
    EXPECT_TRUE(contains(r.err, std::string(option) + " must be 0 (off) or positive")) << r.err;
  }
}

// The lines of text that hold what.
std::vector<std::string> lines_with(const std::string& text, const std::string& what) {
  std::vector<std::string> found;
  for (const auto& line : test::split_lines(text))
    if (contains(line, what)) found.push_back(line);
  return found;
}

// ---- the trace file: the trace's alone, whole after any fault

// The events of a trace that a kill or a full disk may have left without its
// closing bracket: the file must parse as it is or with "]" appended.
json read_cut_trace(const std::filesystem::path& path) {
  const std::string text = test::read_file(path);
  json trace = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (trace.is_discarded()) trace = json::parse(text + "]", nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(trace.is_array()) << path << " does not parse, even with a ] appended; it ends:\n"
                                << text.substr(text.size() > 400 ? text.size() - 400 : 0);
  return trace.is_array() ? trace : json::array();
}

// The steps whose "step" span rank 0's main thread holds.
std::set<int> traced_steps(const json& trace) {
  std::set<int> steps;
  for (const json& e : trace)
    if (e.value("name", "") == "step" && e.value("pid", -1) == 0)
      steps.insert(e["args"]["step"].get<int>());
  return steps;
}

std::string file_bytes(const std::filesystem::path& path) { return test::read_file(path); }

// --trace naming a file that the run reads or that cllm writes in --out:
// refused in one line (exit 2) before anything is written; the file keeps
// its bytes. Before, --trace truncated each of them to "[\n...".
TEST(Trace, APathThatIsAnotherFileOfTheRunIsRefusedAndTheFileKept) {
  TempDir dir;
  namespace fs = std::filesystem;
  const fs::path data = dir / "austen.txt";  // a copy: the repository's is not ours to risk
  fs::copy_file(kData, data);
  const std::string out = (dir / "out").string();
  const auto run = [&](const std::vector<std::string>& options) {
    return test::run_cllm(with(test::one_layer_run(data.string(), out), options), dir.path());
  };
  ASSERT_EQ(run({}).exit_code, 0);
  const fs::path checkpoint = dir / "out" / "checkpoint-00000002.h5";
  ASSERT_TRUE(fs::exists(checkpoint));
  fs::create_symlink(checkpoint, dir / "link.json");
  fs::create_hard_link(data, dir / "hard.json");
  std::ofstream(dir / "notes.txt") << "not a trace\n";
  const std::map<fs::path, std::string> before = [&] {
    std::map<fs::path, std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(dir.path()))
      if (entry.is_regular_file() && entry.path().filename().string().rfind("std", 0) != 0)
        files[entry.path()] = file_bytes(entry.path());
    return files;
  }();

  struct Refusal {
    fs::path trace;
    std::vector<std::string> options;  // besides --trace
    std::string says;
  };
  const std::vector<Refusal> refusals = {
      {data, {}, "is the file of --data " + data.string()},
      {dir / "hard.json", {}, "is the file of --data"},
      {checkpoint, {"--steps", "4"}, "is inside --out " + out},
      {dir / "link.json", {"--steps", "4"}, "is inside --out " + out},
      {dir / "out" / "metrics.jsonl", {"--steps", "4"}, "is inside --out " + out},
      {dir / "out" / ".lock", {"--steps", "4"}, "is inside --out " + out},
      {dir / "out" / "checkpoint-00000004.h5", {"--steps", "4"}, "is inside --out " + out},
      {dir / "notes.txt", {}, "exists and is not a cllm trace"},
      {checkpoint, {"--out", (dir / "other").string(), "--resume", checkpoint.string()},
       "is the file of --resume " + checkpoint.string()},
  };
  for (const Refusal& refusal : refusals) {
    std::vector<std::string> options = refusal.options;
    options.insert(options.end(), {"--trace", refusal.trace.string()});
    const auto r = run(options);
    EXPECT_EQ(r.exit_code, 2) << refusal.trace << "\n" << r.err;
    const auto lines = test::split_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << refusal.trace << "\n" << r.err;
    EXPECT_TRUE(contains(lines[0], "--trace " + refusal.trace.string() + " " + refusal.says))
        << lines[0];
  }
  for (const auto& [path, bytes] : before) EXPECT_EQ(file_bytes(path), bytes) << path << " changed";
  EXPECT_FALSE(fs::exists(checkpoint.string() + ".bad"));
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoint-00000004.h5"));
  EXPECT_FALSE(fs::exists(dir / "other"));
  // A .json file inside --out is the trace's: cllm writes none there.
  const auto r = run({"--steps", "4", "--trace", (dir / "out" / "trace.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(traced_steps(read_trace(dir / "out" / "trace.json")), (std::set<int>{3, 4}));
}

// A trace that cannot be written is one warning naming the file and the
// error, then no trace: the run goes on and exits 0, its checkpoint whole.
// Before: bench said nothing, and train exited 1 after the whole run.
TEST(Trace, AWriteErrorIsOneWarningAndTheRunGoesOn) {
  TempDir dir;
  const auto bench = test::run_cllm({"bench", "--layers", "1", "--heads", "2", "--embd", "32",
                                     "--seq-len", "32", "--micro-batch", "2", "--threads", "1",
                                     "--steps", "3", "--warmup-steps", "1", "--trace", "/dev/full"},
                                    dir.path());
  EXPECT_EQ(bench.exit_code, 0) << bench.err;
  const auto bench_warnings = lines_with(bench.err, "cllm: warning:");
  ASSERT_EQ(bench_warnings.size(), 1u) << bench.err;
  const std::string no_space = "/dev/full: cannot write the trace: No space left on device";
  EXPECT_TRUE(contains(bench_warnings[0], no_space)) << bench_warnings[0];

  const std::string out = (dir / "out").string();
  const auto train = test::run_cllm_mpi(
      2, with(test::tiny_run(kData, out, 1, 6), {"--checkpoint-every", "3", "--trace", "/dev/full"}),
      dir.path());
  EXPECT_EQ(train.exit_code, 0) << train.err;
  const auto warnings = lines_with(train.err, "cllm: warning:");
  ASSERT_EQ(warnings.size(), 1u) << train.err;
  EXPECT_TRUE(contains(warnings[0], no_space)) << warnings[0];
  EXPECT_TRUE(contains(train.out, "final validation loss")) << train.out;
  EXPECT_EQ(test::read_metrics(dir / "out" / "metrics.jsonl").size(), 6u);
  EXPECT_NO_THROW(CheckpointReader(CheckpointStore(out).path(6)));
}

// A disk that fills up midway (a small tmpfs, as root): one warning naming
// the step, the run ends with exit 0, and the file holds whole events only.
// Before: exit 1 at the end, and a file cut mid-event.
TEST(Trace, ADiskThatFillsUpLeavesWholeEvents) {
  TempDir dir;
  namespace fs = std::filesystem;
  const fs::path full = dir / "full";
  fs::create_directories(full);
  if (geteuid() != 0 || std::system(("mount -t tmpfs -o size=48k tmpfs " + full.string() +
                                     " 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  struct Unmount {
    fs::path at;
    ~Unmount() { [[maybe_unused]] int rc = std::system(("umount " + at.string()).c_str()); }
  } unmount{full};
  const fs::path trace = full / "trace.json";
  const auto r = test::run_cllm(with(test::tiny_run(kData, (dir / "out").string(), 2, 60),
                                     {"--log-every", "7", "--trace", trace.string()}),
                                dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto warnings = lines_with(r.err, "cllm: warning:");
  ASSERT_EQ(warnings.size(), 1u) << r.err;
  const std::regex full_disk("^cllm: warning: step [0-9]+: " + trace.string() +
                             ": cannot write the trace: No space left on device");
  EXPECT_TRUE(std::regex_search(warnings[0], full_disk)) << warnings[0];
  EXPECT_TRUE(contains(r.out, "final validation loss")) << r.out;
  const json events = read_cut_trace(trace);
  const std::set<int> steps = traced_steps(events);
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(*steps.begin(), 1);
  EXPECT_LT(*steps.rbegin(), 60) << "48 KiB hold all 60 steps?";
}

// A resumed run keeps the interrupted run's trace (FILE.1), and a third
// run the second's (FILE.2). Before: each run truncated the one before.
TEST(Trace, AResumedRunKeepsTheInterruptedRunsTrace) {
  TempDir dir;
  const auto trace = dir / "trace.json";
  const auto args = with(test::tiny_run(kData, (dir / "out").string(), 1, 6),
                         {"--checkpoint-every", "2", "--trace", trace.string()});
  ASSERT_EQ(test::run_cllm(with(args, {"--stop-at", "2"}), dir.path()).exit_code, 0);
  ASSERT_EQ(test::run_cllm(with(args, {"--stop-at", "4"}), dir.path()).exit_code, 0);
  const auto r = test::run_cllm(args, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(traced_steps(read_trace(trace.string() + ".1")), (std::set<int>{1, 2}));
  EXPECT_EQ(traced_steps(read_trace(trace.string() + ".2")), (std::set<int>{3, 4}));
  EXPECT_EQ(traced_steps(read_trace(trace)), (std::set<int>{5, 6}));
  EXPECT_FALSE(std::filesystem::exists(trace.string() + ".3"));
}

// --trace-max-mb bounds the file: tracing stops with one warning, the file
// closed and whole.
TEST(Trace, MaxMbBoundsTheFile) {
  TempDir dir;
  const auto trace = dir / "trace.json";
  const auto r = test::run_cllm(with(test::tiny_run(kData, (dir / "out").string(), 1, 30),
                                     {"--trace", trace.string(), "--trace-max-mb", "0.02"}),
                                dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto warnings = lines_with(r.err, "cllm: warning:");
  ASSERT_EQ(warnings.size(), 1u) << r.err;
  const std::regex bound("^cllm: warning: step [0-9]+: " + trace.string() +
                         " would grow past --trace-max-mb 0.02; tracing stops");
  EXPECT_TRUE(std::regex_search(warnings[0], bound)) << warnings[0];
  EXPECT_LE(std::filesystem::file_size(trace), 0.02 * 1048576);
  const std::set<int> steps = traced_steps(read_trace(trace));  // closed: parses as it is
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(*steps.begin(), 1);
  EXPECT_LT(*steps.rbegin(), 30);
  EXPECT_TRUE(contains(r.out, "final validation loss")) << r.out;
}

// A run killed (SIGKILL) midway leaves whole events, written at least every
// Timeline::kFlushSteps steps whatever --log-every: the file plus "]"
// parses. Before: nothing before the first log line, here the last step.
TEST(Trace, AKilledRunLeavesWholeEventsOfItsLastSteps) {
  TempDir dir;
  const auto trace = dir / "trace.json";
  auto running = test::start_program(
      test::cllm_binary(),
      with(test::tiny_run(kData, (dir / "out").string(), 1, 100000),
           {"--log-every", "100000", "--eval-every", "0", "--trace", trace.string()}),
      dir.path());
  // Events of 30 steps or more, or at most 120 s (a bound against a hang).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline &&
         !contains(test::read_file(trace), "\"step\":30}"))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(running.pid, SIGKILL);
  const auto r = test::wait_program(running);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  const std::set<int> steps = traced_steps(read_cut_trace(trace));
  ASSERT_GE(steps.size(), 30u);
  EXPECT_EQ(*steps.begin(), 1);
  EXPECT_EQ(*steps.rbegin(), static_cast<int>(steps.size())) << "a step missing";
}

// The host name goes into the trace as a JSON string, escaped (a UTS
// namespace of its own, as root). Before, a quote in it broke the file.
TEST(Trace, TheHostNameIsEscaped) {
  TempDir dir;
  const std::string host = "we\"ird\\host";
  if (geteuid() != 0 || std::system("unshare --uts true 2>/dev/null") != 0)
    GTEST_SKIP() << "needs root to name the host in a UTS namespace";
  const auto trace = dir / "trace.json";
  std::vector<std::string> sh = {"--uts", "sh", "-c",
                                 "printf %s \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"",
                                 host, test::cllm_binary()};
  const auto args =
      with(test::one_layer_run(kData, (dir / "out").string()), {"--trace", trace.string()});
  sh.insert(sh.end(), args.begin(), args.end());
  const auto r = test::run_program("/usr/bin/unshare", sh, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string name;
  for (const json& e : read_trace(trace))
    if (e.value("name", "") == "process_name") name = e["args"]["name"].get<std::string>();
  EXPECT_EQ(name, "rank 0 (" + host + ")");
}

TEST(TraceFile, JsonStringEscapesWhatJsonRequires) {
  EXPECT_EQ(json_string("node-7"), "\"node-7\"");
  EXPECT_EQ(json_string("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_string(std::string("t\ta\nb\x01\x7f", 7)), R"("t\u0009a\u000ab\u0001\u007f")");
  EXPECT_EQ(json_string("caf\xc3\xa9"), "\"caf??\"");
  for (const std::string s : {"a\"b\\c", "x\ny", "\x1f"})
    EXPECT_EQ(json::parse(json_string(s)).get<std::string>(), s);
}

// Two ranks of two threads record their timelines, the main threads also
// the allreduces in flight: the tsan preset runs this (label threads).
TEST(TraceThreads, TwoThreadsRecordWithoutARace) {
  TempDir dir;
  const auto trace_path = dir / "trace.json";
  const auto r =
      test::run_cllm_mpi(2, traced_run((dir / "out").string(), trace_path.string()), dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(contains(r.err, "ThreadSanitizer")) << r.err;
  expect_monotonic_and_nested(read_trace(trace_path));
}

// ---- the stall inspector

// Ranks of a run long enough to be stopped midway (three, by default); each
// rank runs under a shell that says its pid and, at the end, its exit code.
// The shell ignores SIGTERM, and mpiexec waits, so that a rank's own exit
// code is seen even when mpiexec ends the job (it does once a rank ends
// without MPI_Finalize, as a rank that gives up must).
struct WatchedRanks {
  test::Running mpiexec;
  std::filesystem::path err;

  WatchedRanks(const std::vector<std::string>& args, const TempDir& dir, int ranks = 3) {
    std::vector<std::string> full = {"-n", std::to_string(ranks), "--oversubscribe", "--bind-to", "none",
                                     "--mca", "orte_abort_on_non_zero_status", "0",
                                     "--mca", "odls_base_sigkill_timeout", "5",
                                     "-x", "ASAN_OPTIONS", "-x", "OMP_WAIT_POLICY=passive"};
    if (std::getenv("TSAN_OPTIONS")) full.insert(full.end(), {"-x", "TSAN_OPTIONS"});
    full.insert(full.end(),
                {"sh", "-c",
                 "trap '' TERM; \"$0\" \"$@\" & echo \"test: rank $OMPI_COMM_WORLD_RANK pid $!\" "
                 ">&2; wait $!; echo \"test: rank $OMPI_COMM_WORLD_RANK exit $?\" >&2",
                 test::cllm_binary()});
    full.insert(full.end(), args.begin(), args.end());
    mpiexec = test::start_program(CLLM_MPIEXEC, full, dir.path());
    err = mpiexec.err_path;
  }

  // Waits for the run's first log line, then returns rank `rank`'s pid.
  pid_t pid_once_training(int rank) {
    return pid_once(rank, "a first log line", [&](const std::string&) {
      return contains(test::read_file(mpiexec.out_path), "| loss ");
    });
  }

  // Waits until stderr holds `text`, then returns rank `rank`'s pid.
  pid_t pid_once_said(int rank, const std::string& text) {
    return pid_once(rank, "'" + text + "' on stderr",
                    [&](const std::string& err_text) { return contains(err_text, text); });
  }

  template <typename Seen>
  pid_t pid_once(int rank, const std::string& what, Seen seen) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    const std::regex pid_line("test: rank " + std::to_string(rank) + " pid ([0-9]+)");
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      const std::string err_text = test::read_file(err);
      if (seen(err_text) && std::regex_search(err_text, m, pid_line))
        return static_cast<pid_t>(std::stoi(m[1]));
      if (contains(err_text, "test: rank " + std::to_string(rank) + " exit")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ADD_FAILURE() << "no " << what << " within 60 s, or rank " << rank << " ended:\n"
                  << test::read_file(err);
    return -1;
  }

  test::ProcessResult wait() { return test::wait_program(mpiexec, std::chrono::seconds(120)); }
};

std::vector<std::string> long_run(const std::string& out) {
  return {"train", "--data", kData, "--out", out, "--layers", "1", "--heads", "2", "--embd", "32",
          "--seq-len", "32", "--micro-batch", "2", "--global-batch", "6", "--steps", "1500",
          "--log-every", "50", "--eval-every", "0", "--checkpoint-every", "0", "--threads", "1",
          "--sample-tokens", "0"};
}

TEST(Stall, WarningNamesTheStoppedRankAndTheRunEndsAsIfUndisturbed) {
  TempDir dir;
  const auto undisturbed = test::run_cllm_mpi(3, long_run((dir / "calm").string()), dir.path());
  ASSERT_EQ(undisturbed.exit_code, 0) << undisturbed.err;

  WatchedRanks run(with(long_run((dir / "stalled").string()), {"--stall-warn", "1"}), dir);
  const pid_t rank1 = run.pid_once_training(1);
  ASSERT_GT(rank1, 0);
  ASSERT_EQ(kill(rank1, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  ASSERT_EQ(kill(rank1, SIGCONT), 0);
  const auto r = run.wait();
  ASSERT_FALSE(r.timed_out) << r.err;
  for (int rank = 0; rank < 3; ++rank)
    EXPECT_TRUE(contains(r.err, "test: rank " + std::to_string(rank) + " exit 0")) << r.err;

  // One warning a second while rank 1 is stopped, each naming rank 1 alone.
  const auto warnings = lines_with(r.err, "cllm: warning:");
  EXPECT_GE(warnings.size(), 2u) << r.err;
  EXPECT_LE(warnings.size(), 4u) << r.err;
  const std::regex named(R"(cllm: warning: step [0-9]+: waiting ([0-9.]+) s in the [a-z -]+ for rank 1, which does not answer \(--stall-warn 1\))");
  double last = 0;
  for (const auto& w : warnings) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(w, m, named)) << w;
    const double waited = std::stod(m[1]);
    EXPECT_GE(waited, last + 0.95) << "warned twice within an interval:\n" << r.err;
    last = waited;
  }

  // Bitwise the run that was not stopped.
  EXPECT_EQ(test::loss_texts(dir / "stalled" / "metrics.jsonl"),
            test::loss_texts(dir / "calm" / "metrics.jsonl"));
  std::smatch a, b;
  const std::regex checksum("parameter checksum ([0-9a-f]{16})");
  ASSERT_TRUE(std::regex_search(undisturbed.out, a, checksum));
  ASSERT_TRUE(std::regex_search(r.out, b, checksum)) << r.out;
  EXPECT_EQ(a[1], b[1]);

  // The log interval that held the stop shows the wait: 3.5 s over 50 steps.
  double most = 0;
  for (const auto& record : test::read_metrics(dir / "stalled" / "metrics.jsonl"))
    most = std::max(most, test::number_at(record, "comm_wait_s").value_or(0));
  EXPECT_GT(most, 0.03) << "comm_wait_s of the interval with the stall";
  EXPECT_FALSE(lines_with(r.out, "slowest)").empty()) << r.out;
}

TEST(Stall, AbortEndsEveryProcessWithExitCode5NamingTheStoppedRank) {
  TempDir dir;
  WatchedRanks run(with(long_run((dir / "out").string()), {"--stall-abort", "2"}), dir);
  const pid_t rank1 = run.pid_once_training(1);
  ASSERT_GT(rank1, 0);
  const auto stopped_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(rank1, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  kill(rank1, SIGCONT);  // mpiexec may have continued and ended it already
  const auto r = run.wait();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count();
  ASSERT_FALSE(r.timed_out) << r.err;
  for (int rank = 0; rank < 3; ++rank)
    EXPECT_TRUE(contains(r.err, "test: rank " + std::to_string(rank) + " exit 5")) << r.err;
  EXPECT_LT(seconds, 15.0) << r.err;
  // Rank 0 names rank 1; each other rank says so too, once.
  const auto gave_up = lines_with(r.err, "gave up after");
  ASSERT_EQ(gave_up.size(), 1u) << r.err;
  EXPECT_TRUE(std::regex_search(gave_up[0], std::regex(R"(^cllm: error: rank 0: step [0-9]+: gave up after 2\.[0-9] s waiting in the [a-z -]+ for rank 1, which does not answer \(--stall-abort 2\); every rank ends with exit code 5$)")))
      << gave_up[0];
  for (int rank : {1, 2})
    EXPECT_EQ(lines_with(r.err, "cllm: error: rank " + std::to_string(rank) +
                                    ": step").size(), 1u) << r.err;
  EXPECT_EQ(lines_with(r.err, "rank 0 gave up waiting in").size(), 2u) << r.err;
}

// A model whose checkpoint (parameters and AdamW's two moments: 14.3M
// floats, 170 MB, with 2 layers) takes rank 0 well over the thresholds below
// to write and to read, however fast the disk (HDF5 builds the file in
// memory, with checksums), while a step of 16 tokens stays short.
std::vector<std::string> big_checkpoint_run(const std::string& out, const char* layers = "2") {
  return {"train", "--data", kData, "--out", out, "--layers", layers, "--heads", "4", "--embd",
          "768", "--seq-len", "8", "--micro-batch", "1", "--global-batch", "2", "--log-every",
          "1", "--eval-every", "0", "--check-every", "0", "--threads", "1", "--sample-tokens",
          "0"};
}

TEST(Stall, ACheckpointWrittenOrReadIsBusyNotStalled) {
  TempDir dir;
  const auto out = (dir / "out").string();
  // --stall-warn far below every write and read (1-5 s here), which the
  // notes below show; --stall-abort above the silences of healthy ranks
  // under load (a first step, rank 1 inside the resume's large broadcasts:
  // up to 2.3 s seen with ctest -j2 on two busy cores).
  const std::vector<std::string> low = {"--stall-warn", "0.05", "--stall-abort", "5"};
  // Stopped after step 1 with its checkpoint, then resumed from it to step 2,
  // which writes another: rank 1 waits for each write and for the read.
  // Four layers (340 MB): with two, rank 0 read the checkpoint in about the
  // 0.25 s rank 1 waits before it asks, and under load (ctest -j2 beside the
  // fuzzers) rank 1 sometimes asked after the read, with no note to show.
  const auto first = test::run_cllm_mpi(
      2, with(with(big_checkpoint_run(out, "4"), {"--steps", "2", "--stop-at", "1"}), low), dir.path());
  const auto resumed =
      test::run_cllm_mpi(2, with(with(big_checkpoint_run(out, "4"), {"--steps", "2"}), low), dir.path());
  for (const auto* r : {&first, &resumed}) {
    ASSERT_EQ(r->exit_code, 0) << r->err;
    EXPECT_TRUE(lines_with(r->err, "gave up").empty()) << r->err;
    // Never on the busy rank 0 (rank 0 may warn of rank 1, late by this
    // machine's load, or still copying the broadcast).
    for (const auto& w : lines_with(r->err, "cllm: warning:"))
      for (const char* wait : {"in the checkpoint agreement for rank 0",
                               "in the resume broadcast for rank 0"})
        EXPECT_FALSE(contains(w, wait)) << r->err;
  }
  EXPECT_TRUE(contains(resumed.out, "resuming from")) << resumed.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "checkpoint-00000002.h5"));
  // Rank 1 saw rank 0 busy writing (each write takes longer than the
  // question's 0.25 s, so the note shows the check ran), once per wait.
  const std::regex note(R"(^cllm: note: rank 1: step [12]: waiting [0-9.]+ s in the checkpoint agreement for rank 0, busy writing a checkpoint \([0-9.]+ s so far\)$)");
  for (const auto* r : {&first, &resumed}) {
    const auto notes = lines_with(r->err, "busy writing a checkpoint");
    ASSERT_EQ(notes.size(), 1u) << r->err;
    EXPECT_TRUE(std::regex_match(notes[0], note)) << notes[0];
  }
  // And reading the one it resumes from.
  const auto reading = lines_with(resumed.err, "busy reading a checkpoint");
  ASSERT_EQ(reading.size(), 1u) << resumed.err;
  EXPECT_TRUE(std::regex_match(reading[0], std::regex(R"(^cllm: note: rank 1: setting up: waiting [0-9.]+ s in the resume broadcast for rank 0, busy reading a checkpoint \([0-9.]+ s so far\)$)")))
      << reading[0];
}

TEST(Stall, ARankStoppedWhileBusyIsNamedAndTheRunEnds) {
  TempDir dir;
  // Two ranks: rank 1 waits for rank 0, and no more ranks than cores keep
  // the steps' own waits short of --stall-abort.
  WatchedRanks run(with(big_checkpoint_run((dir / "out").string()),
                        {"--steps", "20", "--checkpoint-every", "1", "--stall-warn", "0.05",
                         "--stall-abort", "5"}),
                   dir, 2);
  // Rank 1 has seen rank 0 busy writing step 1's checkpoint (which takes
  // seconds): stop rank 0 there, its answering thread with it.
  const pid_t rank0 = run.pid_once_said(0, "busy writing a checkpoint");
  ASSERT_GT(rank0, 0);
  ASSERT_EQ(kill(rank0, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::seconds(8));  // rank 1 gives up after 5 + 1 s
  kill(rank0, SIGCONT);  // mpiexec may have ended it already
  const auto r = run.wait();
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_TRUE(contains(r.err, "test: rank 1 exit 5")) << r.err;
  const auto gave_up = lines_with(r.err, "gave up after");
  ASSERT_EQ(gave_up.size(), 1u) << r.err;
  EXPECT_TRUE(std::regex_match(gave_up[0], std::regex(R"(^cllm: error: rank 1: step 1: gave up after [0-9.]+ s waiting in the checkpoint agreement for rank 0, which does not answer \(--stall-abort 5\); every rank ends with exit code 5$)")))
      << gave_up[0];
}

}  // namespace
}  // namespace cllm
