// Checkpoints and HDF5 datasets, end to end through the cllm executable:
// exact resume (one rank of two threads, and two ranks through mpiexec),
// resume on another layout, --stop-at, --keep, --resume auto past broken
// files, a run killed with SIGKILL while writing, prepare, generate, h5ls,
// and bad input that must leave every existing checkpoint untouched; and, in
// process, metrics.jsonl's records and what a resumed run keeps of them.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cllm/data/bpe_tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/checkpoint_store.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/file_checksum.h"
#include "cllm/io/hdf5.h"
#include "cllm/model/model.h"
#include "cllm/train/metrics.h"
#include "cllm/train/optimizer.h"
#include "cllm/train/run_settings.h"
#include "support/bitwise.h"
#include "support/metrics.h"
#include "support/process.h"
#include "support/run_args.h"
#include "support/tiny_model.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::loss_texts;
using test::run_cllm;
using test::same_bits;
using test::split_lines;
using test::TempDir;
using test::tiny_run;
using test::with;

const std::string kText = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";

// Parameters and both moments of a checkpoint, in one flat vector each.
struct Snapshot {
  std::vector<float> params, m, v;
  std::int64_t step = 0, optimizer_steps = 0;
};

Snapshot load(const fs::path& path) {
  const CheckpointReader checkpoint(path);
  Model model(checkpoint.header().model);
  CheckpointMoments moments;
  checkpoint.read_into(model, &moments);
  return {{model.params().begin(), model.params().end()},
          {moments.m.span().begin(), moments.m.span().end()},
          {moments.v.span().begin(), moments.v.span().end()},
          checkpoint.header().state.step,
          moments.step};
}

void expect_identical(const Snapshot& a, const Snapshot& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.optimizer_steps, b.optimizer_steps);
  EXPECT_TRUE(same_bits(a.params, b.params)) << "parameters differ";
  EXPECT_TRUE(same_bits(a.m, b.m)) << "first moments differ";
  EXPECT_TRUE(same_bits(a.v, b.v)) << "second moments differ";
}

std::string file_bytes(const fs::path& p) { return test::read_file(p); }

// Writes a checkpoint at step 1 of the tiny model, in process: written in an
// instant.
void write_tiny_checkpoint(const fs::path& path, const test::TinyModel& tiny) {
  RunSettings settings = config_settings(tiny.config);
  settings["data"] = std::string("test");
  const OptimizerState optimizer = tiny.optimizer.state();
  write_checkpoint(path, tiny.model, &optimizer, TrainingState{1, 64, 0},
                   TokenizerSpec{}, settings);
}

class CheckpointTest : public ::testing::Test {
 protected:
  CheckpointTest() { h5::silence_error_stack(); }  // the expected failures print nothing
  TempDir dir;
  std::string out(const std::string& name) const { return (dir / name).string(); }
  // Runs cllm on one rank or, for ranks > 1, through mpiexec.
  test::ProcessResult cllm(int ranks, const std::vector<std::string>& args) const {
    return ranks == 1 ? run_cllm(args, dir.path()) : test::run_cllm_mpi(ranks, args, dir.path());
  }
  // 20 steps straight, and 10 + --stop-at + resume: identical parameters,
  // moments and loss lines.
  void expect_exact_resume(int ranks, int threads) {
    const auto whole = cllm(ranks, tiny_run(kText, out("whole"), threads));
    ASSERT_EQ(whole.exit_code, 0) << whole.err;
    const auto first = cllm(ranks, with(tiny_run(kText, out("split"), threads), {"--stop-at", "10"}));
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_TRUE(contains(first.out, "stopped after step 10 of 20")) << first.out;
    EXPECT_TRUE(fs::exists(CheckpointStore(out("split")).path(10)));
    EXPECT_FALSE(fs::exists(CheckpointStore(out("split")).path(20)));
    const auto second = cllm(ranks, tiny_run(kText, out("split"), threads));
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_TRUE(contains(second.out, "resuming from")) << second.out;
    expect_identical(load(CheckpointStore(out("whole")).path(20)),
                     load(CheckpointStore(out("split")).path(20)));
    const auto a = loss_texts(fs::path(out("whole")) / "metrics.jsonl");
    const auto b = loss_texts(fs::path(out("split")) / "metrics.jsonl");
    EXPECT_EQ(a.size(), 20u);
    EXPECT_EQ(a, b);
  }
};

TEST_F(CheckpointTest, ResumeIsBitwiseExactOneRankTwoThreads) { expect_exact_resume(1, 2); }

TEST_F(CheckpointTest, ResumeIsBitwiseExactTwoRanksOneThread) { expect_exact_resume(2, 1); }

TEST_F(CheckpointTest, ResumeOnAnotherLayoutContinuesTheSameCurve) {
  // Saved by 2 ranks x 1 thread, resumed by 1 rank x 2 threads.
  const auto whole = cllm(2, tiny_run(kText, out("whole"), 1));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  ASSERT_EQ(cllm(2, with(tiny_run(kText, out("moved"), 1), {"--stop-at", "10"})).exit_code, 0);
  const auto resumed = cllm(1, tiny_run(kText, out("moved"), 2));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto a = loss_texts(fs::path(out("whole")) / "metrics.jsonl");
  const auto b = loss_texts(fs::path(out("moved")) / "metrics.jsonl");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(std::stod(b[i]), std::stod(a[i]), 1e-5 * std::abs(std::stod(a[i]))) << "step " << i + 1;
}

// Flipped bits in the tensors' data fail the file's checksum, before HDF5
// reads them (test_file_checksum.cpp; its FilesWithoutAChecksumLoadAsBefore
// has Fletcher-32 catch them in a file without one). (The folder's side - a
// broken newest set aside, the one before it resumed - is
// TrainingRunTest.KeepsTheNewestAndResumesPastABrokenOne.)
TEST_F(CheckpointTest, FlippedBitsFailTheirChecksums) {
  const test::TinyModel tiny;
  const fs::path last = dir / "checkpoint-00000001.h5";
  write_tiny_checkpoint(last, tiny);
  EXPECT_NO_THROW(load(last));
  // One bit of wte's data, found by its first 64 bytes (random weights).
  std::string bytes = file_bytes(last);
  const auto* wte = reinterpret_cast<const char*>(tiny.model.params().data());
  const std::size_t at = bytes.find(std::string(wte, 64));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 33] = static_cast<char>(bytes[at + 33] ^ 0x40);
  std::ofstream(last, std::ios::binary | std::ios::trunc) << bytes;
  try {
    load(last);
    ADD_FAILURE() << "a corrupted checkpoint loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), last.string() + ": damaged: its checksum does not match")) << e.what();
  }
}

TEST_F(CheckpointTest, KilledWhileWritingLeavesThePreviousCheckpointSelected) {
  // A checkpoint every step of a model big enough that writing takes a
  // while; SIGKILL as soon as a temporary file appears.
  const std::string run_out = out("killed");
  std::vector<std::string> args = {"train", "--data", kText, "--out", run_out, "--preset",
                                   "small", "--micro-batch", "1", "--global-batch", "1",
                                   "--steps", "200", "--checkpoint-every", "1", "--keep", "2",
                                   "--sample-tokens", "0", "--eval-every", "0",
                                   "--eval-batches", "1", "--threads", "1"};
  bool caught = false;
  for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
    fs::remove_all(run_out);
    const test::Running child = test::start_program(CLLM_BINARY, args, dir.path());
    const pid_t pid = child.pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    fs::path tmp;
    while (std::chrono::steady_clock::now() < deadline && tmp.empty()) {
      std::error_code ec;
      // Wait for a finished checkpoint first, then for the next one's temporary file.
      if (!CheckpointStore(run_out).list().empty())
        for (const auto& e : fs::directory_iterator(run_out, ec))
          if (e.path().extension() == ".tmp") tmp = e.path();
      if (tmp.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    kill(pid, SIGKILL);
    test::wait_program(child);
    caught = !tmp.empty() && fs::exists(tmp);  // killed before the rename
    if (!caught) continue;
    const auto finished = CheckpointStore(run_out).list();
    ASSERT_FALSE(finished.empty());
    EXPECT_NO_THROW(load(finished.front().path));  // the previous checkpoint is whole
    const auto r = run_cllm(with(args, {"--stop-at", std::to_string(finished.front().step + 1)}),
                            dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "resuming from " + finished.front().path.string())) << r.out;
    EXPECT_FALSE(fs::exists(tmp)) << "the killed write's temporary file is cleaned up";
  }
  EXPECT_TRUE(caught) << "never caught a checkpoint being written";
}

// SIGUSR1 (Slurm's warning before a time limit), SIGTERM (preemption) or
// SIGINT (Ctrl-C): the run checkpoints at the next step boundary and exits
// with code 4; the same command then finishes with the parameters of an
// uninterrupted run.
TEST_F(CheckpointTest, StopSignalCheckpointsAndTheRunResumesExactly) {
  const auto run = [&](const std::string& name) {
    return with(tiny_run(kText, out(name), 1, 150), {"--embd", "64", "--seq-len", "64"});
  };
  const auto whole = cllm(1, run("whole"));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  for (const int signal : {SIGUSR1, SIGTERM, SIGINT}) {
    const std::string name = signal == SIGUSR1 ? "usr1" : signal == SIGTERM ? "term" : "int";
    SCOPED_TRACE(name);
    const auto args = run(name);
    const test::Running child = test::start_program(CLLM_BINARY, args, dir.path());
    // Signal once the run is under way (its metrics file has records).
    const fs::path metrics = fs::path(out(name)) / "metrics.jsonl";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline &&
           (!fs::exists(metrics) || fs::file_size(metrics) == 0))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    kill(child.pid, signal);
    const auto stopped = test::wait_program(child);
    ASSERT_EQ(stopped.exit_code, 4) << stopped.out << stopped.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(stopped.out, m, std::regex("stopped after step (\\d+) of 150 by SIG")))
        << stopped.out;
    const int at = std::stoi(m[1]);
    EXPECT_TRUE(fs::exists(CheckpointStore(out(name)).path(at)));
    const auto resumed = cllm(1, args);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    expect_identical(load(CheckpointStore(out(name)).path(150)),
                     load(CheckpointStore(out("whole")).path(150)));
  }
}

// A second Ctrl-C does not wait for the step to end: the run dies of SIGINT
// at once (as a shell expects of a program interrupted twice), writing no
// checkpoint. The first one says so on stderr.
TEST_F(CheckpointTest, SecondSigintStopsAtOnceWithoutACheckpoint) {
  // Steps long enough that the second signal comes well inside the step.
  const auto args =
      with(tiny_run(kText, out("int2"), 1, 100000), {"--embd", "128", "--seq-len", "128"});
  const test::Running child = test::start_program(CLLM_BINARY, args, dir.path());
  const fs::path metrics = fs::path(out("int2")) / "metrics.jsonl";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline &&
         (!fs::exists(metrics) || fs::file_size(metrics) == 0))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(child.pid, SIGINT);
  // Wait for the first one to be handled: two pending SIGINTs would merge into one.
  bool noted = false;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline && !noted) {
    noted = contains(test::read_file(child.err_path), "SIGINT");
    if (!noted) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(child.pid, SIGINT);
  const auto stopped = test::wait_program(child);
  EXPECT_TRUE(noted) << "the first SIGINT printed nothing on stderr:\n" << stopped.err;
  EXPECT_EQ(stopped.exit_code, 128 + SIGINT) << stopped.out << stopped.err;
  EXPECT_FALSE(contains(stopped.out, "stopped after step")) << stopped.out;
  EXPECT_TRUE(CheckpointStore(out("int2")).list().empty());
}

TEST_F(CheckpointTest, PreparedDatasetTrainsAndGenerates) {
  const std::string h5 = out("austen.h5");
  const auto p = cllm(1, {"prepare", kText, "--out", h5});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  // The splits are the file's bytes, in order.
  const std::string text = file_bytes(kText);
  const auto train = read_split(h5, Split::train);
  const auto val = read_split(h5, Split::val);
  ASSERT_EQ(train.size() + val.size(), text.size());
  for (std::size_t i = 0; i < text.size(); i += 997) {
    const auto byte = static_cast<std::int32_t>(static_cast<unsigned char>(text[i]));
    EXPECT_EQ(i < train.size() ? train[i] : val[i - train.size()], byte) << i;
  }
  const auto t = cllm(2, tiny_run(h5, out("h5run"), 1));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const fs::path ckpt = CheckpointStore(out("h5run")).path(20);
  const std::vector<std::string> gen = {"generate", "--checkpoint", ckpt.string(), "--prompt",
                                        "It is a truth", "--tokens", "40", "--seed", "7"};
  const auto g1 = cllm(1, gen);
  const auto g2 = cllm(1, gen);
  ASSERT_EQ(g1.exit_code, 0) << g1.err;
  EXPECT_EQ(g1.out.rfind("It is a truth", 0), 0u) << g1.out;
  EXPECT_EQ(g1.out.size(), std::string("It is a truth").size() + 40 + 1);  // bytes + newline
  EXPECT_EQ(g1.out, g2.out);  // same seed, same text
}

// Byte-level text may hold any byte: a model trained on text that is mostly
// NUL bytes samples NULs, and generate and the sample at the end of
// training print every byte they decode (printf's %s would stop at the first).
// The text holds the sample's prompt, a newline, so that the sample starts
// from a context the model has seen.
TEST_F(CheckpointTest, GeneratedNulBytesArePrinted) {
  std::string text;
  for (int i = 0; i < 1500; ++i) text += std::string("\n\0\0\0a\0\0\0b\0\0\0", 12);
  const std::string data = out("nul.txt");
  std::ofstream(data, std::ios::binary) << text;
  const auto t = cllm(1, with(tiny_run(data, out("run"), 1, 30), {"--sample-tokens", "64"}));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const std::string header = "sample (temperature 0.8, top-k 40):\n";
  const auto at = t.out.find(header);
  ASSERT_NE(at, std::string::npos) << t.out;
  const std::string sample = t.out.substr(at + header.size());
  EXPECT_EQ(sample.size(), 64u + 1) << "the sample, 64 bytes and a newline, was cut short";
  EXPECT_NE(sample.find('\0'), std::string::npos) << "no NUL sampled: the test proves nothing";

  const auto g = cllm(1, {"generate", "--checkpoint", CheckpointStore(out("run")).path(30).string(),
                          "--prompt", "a", "--tokens", "64", "--seed", "7"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.out.size(), 1u + 64 + 1) << "prompt, 64 bytes and a newline";
  EXPECT_NE(g.out.find('\0'), std::string::npos) << "no NUL generated: the test proves nothing";
}

TEST_F(CheckpointTest, Gpt2DatasetHoldsGpt2IdsAndItsCheckpointsGenerateText) {
  const std::string vocab = std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe";
  const std::string h5 = out("gpt2.h5");
  const auto p = cllm(1, {"prepare", kText, "--out", h5, "--tokenizer", "gpt2-bpe", "--vocab-dir",
                          vocab, "--val-fraction", "0.05"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  // The stream is the whole text's GPT-2 ids and one <|endoftext|>: the
  // pieces prepare encodes in parallel cut nothing GPT-2 would join.
  std::vector<std::int32_t> expected = Gpt2BpeTokenizer(vocab).encode(file_bytes(kText));
  expected.push_back(Gpt2BpeTokenizer::kEndOfText);
  std::vector<std::int32_t> stored = read_split(h5, Split::train);
  const auto val = read_split(h5, Split::val);
  stored.insert(stored.end(), val.begin(), val.end());
  EXPECT_EQ(val.size(), static_cast<std::size_t>(expected.size() * 0.05));
  EXPECT_TRUE(stored == expected) << stored.size() << " vs " << expected.size() << " tokens";

  const auto t = cllm(1, tiny_run(h5, out("run"), 2, 2));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "vocab 50257")) << t.out;
  const auto g = cllm(1, {"generate", "--checkpoint", CheckpointStore(out("run")).path(2).string(),
                          "--prompt", "It is a truth", "--tokens", "10"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.out.rfind("It is a truth", 0), 0u) << g.out;
  EXPECT_GT(g.out.size(), std::string("It is a truth").size() + 1);
}

TEST_F(CheckpointTest, H5lsListsTheSchema) {
  const std::string h5 = out("austen.h5");
  ASSERT_EQ(cllm(1, {"prepare", kText, "--out", h5}).exit_code, 0);
  ASSERT_EQ(cllm(1, tiny_run(h5, out("run"), 1, 2)).exit_code, 0);
  const auto d = test::run_program("/usr/bin/h5ls", {"-r", h5}, dir.path());
  ASSERT_EQ(d.exit_code, 0) << d.err;
  for (const char* path : {"/train/tokens", "/val/tokens"})
    EXPECT_TRUE(contains(d.out, path)) << d.out;
  const auto c = test::run_program(
      "/usr/bin/h5ls", {"-r", CheckpointStore(out("run")).path(2).string()}, dir.path());
  ASSERT_EQ(c.exit_code, 0) << c.err;
  for (const char* path :
       {"/model/transformer.wte.weight", "/model/transformer.wpe.weight",
        "/model/transformer.h.0.attn.c_attn.weight", "/model/transformer.h.1.mlp.c_proj.bias",
        "/model/transformer.ln_f.weight", "/optimizer/m/transformer.wte.weight",
        "/optimizer/v/transformer.h.1.ln_2.bias", "/state", "/tokenizer"})
    EXPECT_TRUE(contains(c.out, std::string(path) + " ")) << path << "\n" << c.out;
}

// Bad input: one line naming the file, a non-zero exit on every rank, and no
// existing checkpoint touched.
TEST_F(CheckpointTest, BadInputNamesTheFileAndTouchesNoCheckpoint) {
  const std::string run = out("run");
  const CheckpointStore store(run);
  ASSERT_EQ(cllm(1, tiny_run(kText, run, 1, 4)).exit_code, 0);
  const fs::path ckpt = store.path(4);
  const std::string before = file_bytes(ckpt);

  const std::string not_h5 = out("notes.h5");
  std::ofstream(not_h5) << "just text\n";
  fs::path truncated = out("truncated.h5");
  fs::copy_file(ckpt, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 3);
  const std::string gpt2 = out("gpt2.h5"), some_text = out("some.txt");
  std::ofstream(some_text) << file_bytes(kText).substr(0, 100000);
  ASSERT_EQ(cllm(1, {"prepare", some_text, "--out", gpt2, "--tokenizer", "gpt2-bpe",
                     "--vocab-dir", std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe"})
                .exit_code,
            0);
  std::ofstream(out("a-file")) << "x";

  struct Case {
    std::vector<std::string> args;
    std::string names;  // what the message must name
  };
  const std::vector<Case> cases = {
      {tiny_run(not_h5, out("o1"), 1, 8), not_h5},
      {with(tiny_run(kText, out("o2"), 1, 8), {"--resume", not_h5}), not_h5},
      {with(tiny_run(kText, out("o3"), 1, 8), {"--resume", truncated.string()}), truncated.string()},
      {with(tiny_run(gpt2, out("o4"), 1, 8), {"--resume", ckpt.string()}), "vocab"},
      {with(tiny_run(kText, run, 1, 8), {"--embd", "64"}), "--embd 32 (checkpoint) vs 64 (now)"},
      {tiny_run(kText, out("a-file") + "/sub", 1, 8), out("a-file")},
      {{"generate", "--checkpoint", truncated.string()}, truncated.string()},
      {{"prepare", out("missing.txt"), "--out", out("x.h5")}, out("missing.txt")},
  };
  for (const auto& c : cases) {
    for (int ranks : {1, 2}) {
      const auto r = cllm(ranks, c.args);
      EXPECT_NE(r.exit_code, 0) << test::join(c.args);
      EXPECT_FALSE(contains(r.err, "HDF5-DIAG")) << r.err;  // no library diagnostics
      if (ranks == 1) {
        EXPECT_EQ(split_lines(r.err).size(), 1u) << r.err;
      }
      // mpiexec adds its own lines about the exit code; ours is one.
      std::vector<std::string> ours;
      for (const auto& line : split_lines(r.err))
        if (line.rfind("cllm:", 0) == 0) ours.push_back(line);
      ASSERT_EQ(ours.size(), 1u) << test::join(c.args) << "\n" << r.err;
      EXPECT_TRUE(contains(ours[0], c.names)) << ours[0];
      EXPECT_TRUE(contains(ours[0], "cllm: error: ")) << ours[0];
    }
  }
  EXPECT_EQ(file_bytes(ckpt), before);
  EXPECT_EQ(store.list().size(), 1u);
}

// Loading checks the format and the version before any tensor.
TEST_F(CheckpointTest, LoadingChecksFormatAndVersion) {
  const test::TinyModel tiny;
  const fs::path path = dir / "checkpoint-00000001.h5";
  write_tiny_checkpoint(path, tiny);
  EXPECT_EQ(load(path).step, 1);
  EXPECT_TRUE(same_bits(load(path).params, tiny.model.params()));

  const auto expect_error = [&](const std::string& what) {
    Model other(tiny.config.model);
    try {
      CheckpointReader(path).read_into(other);
      ADD_FAILURE() << "loaded a checkpoint with " << what;
    } catch (const std::runtime_error& e) {
      EXPECT_TRUE(contains(e.what(), path.string())) << e.what();
      EXPECT_TRUE(contains(e.what(), what)) << e.what();
    }
  };
  // Edited through HDF5 and sealed with a new checksum, as a writer's own
  // mistake would be: the checks past the checksum must catch it.
  const auto set_root_attr = [&](const char* name, auto value) {
    {
      h5::Handle file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
      h5::set_attr(file, name, value);
    }
    write_file_checksum(path);
  };
  set_root_attr("format_version", std::int64_t{2});
  expect_error("format_version 2");
  set_root_attr("format_version", kCheckpointFormatVersion);
  set_root_attr("format", std::string("cllm-dataset"));
  expect_error("not a CLLM checkpoint");
}

// Reading into a model of another shape names the first tensor that differs
// and the checkpoint's model, once, before any tensor is read; the model and
// the moments stay as they were.
TEST_F(CheckpointTest, AnotherShapeNamesTheFirstDifferingTensor) {
  const test::TinyModel tiny;
  const ModelConfig& mc = tiny.config.model;
  const fs::path path = dir / "checkpoint-00000001.h5";
  write_tiny_checkpoint(path, tiny);

  const auto expect_mismatch = [&](ModelConfig other_config, const std::string& what) {
    Model other(other_config);
    other.init_gpt2(2);
    const std::vector<float> before(other.params().begin(), other.params().end());
    CheckpointMoments moments;
    moments.step = 7;
    try {
      CheckpointReader(path).read_into(other, &moments);
      ADD_FAILURE() << "read a checkpoint into " << what;
    } catch (const CheckpointMismatch& e) {
      EXPECT_TRUE(contains(e.what(), path.string() + ": " + what +
                                         " (checkpoint of a 1-layer, 8-wide model with vocab 256)"))
          << e.what();
    }
    EXPECT_TRUE(same_bits(before, other.params()));
    EXPECT_EQ(moments.step, 7);
    EXPECT_EQ(moments.m.size(), 0u);
  };
  ModelConfig wider = mc;
  wider.n_embd = 16;
  expect_mismatch(wider, "tensor /model/transformer.wte.weight has shape [256, 8], the model "
                         "needs [256, 16]");
  ModelConfig deeper = mc;
  deeper.n_layer = 2;
  expect_mismatch(deeper, "tensor /model/transformer.h.1.ln_1.weight has shape (none), the model "
                          "needs [8]");
}

// String attributes as other writers store them: h5py writes a Python str
// as a variable-length UTF-8 string, and tools may write fixed-length or
// ASCII ones; string_attr reads all four kinds, bytes unchanged, and refuses
// an array of strings.
TEST_F(CheckpointTest, StringAttributesOfEitherLengthAndCharacterSetReadBack) {
  const fs::path path = dir / "strings.h5";
  const std::string text = "Jane Austen \xe2\x80\x94 Emma";  // an em dash: UTF-8 beyond ASCII
  const std::string ascii = "byte";
  {
    h5::Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create");
    h5::Handle space(H5Screate(H5S_SCALAR), "scalar space");
    const auto write = [&](const char* name, const std::string& value, bool variable,
                           H5T_cset_t cset) {
      h5::Handle type(H5Tcopy(H5T_C_S1), "string type");
      h5::check(H5Tset_size(type, variable ? H5T_VARIABLE : value.size()), "size");
      h5::check(H5Tset_cset(type, cset), "cset");
      h5::Handle attr(H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT), name);
      const char* chars = value.c_str();
      h5::check(H5Awrite(attr, type, variable ? static_cast<const void*>(&chars) : chars), name);
    };
    write("vlen_utf8", text, true, H5T_CSET_UTF8);
    write("vlen_ascii", ascii, true, H5T_CSET_ASCII);
    write("fixed_utf8", text, false, H5T_CSET_UTF8);
    write("fixed_ascii", ascii, false, H5T_CSET_ASCII);
    // A list of strings, as h5py writes a Python list: not one string.
    const hsize_t two = 2;
    h5::Handle pair_space(H5Screate_simple(1, &two, nullptr), "space");
    h5::Handle type(H5Tcopy(H5T_C_S1), "string type");
    h5::check(H5Tset_size(type, H5T_VARIABLE), "size");
    h5::Handle attr(H5Acreate2(file, "pair", type, pair_space, H5P_DEFAULT, H5P_DEFAULT), "pair");
    const char* pair[] = {"a", "b"};
    h5::check(H5Awrite(attr, type, pair), "pair");
  }
  h5::Handle file = h5::open_file(path);
  EXPECT_EQ(h5::string_attr(file, "vlen_utf8"), text);
  EXPECT_EQ(h5::string_attr(file, "vlen_ascii"), ascii);
  EXPECT_EQ(h5::string_attr(file, "fixed_utf8"), text);
  EXPECT_EQ(h5::string_attr(file, "fixed_ascii"), ascii);
  EXPECT_THROW(h5::string_attr(file, "pair"), std::runtime_error);
}

// ---------------------------------------------------------------- metrics.jsonl

LogRecord log_record(int step) {
  LogRecord r;
  r.step = step;
  r.total_steps = 10;
  r.loss = 5.5 - step / 16.0;
  r.lr = 1e-3f;
  r.grad_norm = 0.5;
  r.tokens_per_s = 1000;
  r.ms_per_step = 250;
  r.eta_s = 10 - step;
  if (step % 2 == 0) r.val_loss = r.loss + 0.01;
  return r;
}

// The log line names the wait only with several ranks, and the slowest rank
// only when the others waited a tenth of the step or more.
TEST(MetricsFormat, LogLineShowsTheWaitForOtherRanks) {
  LogRecord r;
  r.step = 10;
  r.total_steps = 100;
  r.ms_per_step = 200;
  r.comm_wait_s = 0.05;
  EXPECT_FALSE(test::contains(format_log_line(r), "comm wait")) << format_log_line(r);
  r.ranks = 4;
  r.slowest_rank = 3;
  r.comm_wait_s = 0.0199;
  EXPECT_TRUE(test::contains(format_log_line(r), "| comm wait 19.9 ms")) << format_log_line(r);
  EXPECT_FALSE(test::contains(format_log_line(r), "slowest")) << format_log_line(r);
  r.comm_wait_s = 0.05;
  EXPECT_TRUE(test::contains(format_log_line(r), "| comm wait 50.0 ms (rank 3 slowest)"))
      << format_log_line(r);
  r.val_loss = 2.5;
  EXPECT_TRUE(test::contains(format_log_line(r), "(rank 3 slowest) | val loss 2.5000"))
      << format_log_line(r);
}

// One JSON object a record, keys in a fixed order, each number with the
// digits the log has always given it; JSON has no NaN: null.
TEST(MetricsFormat, RecordsKeepTheirKeysOrderAndDigits) {
  LogRecord r;
  r.step = 100;
  r.total_steps = 1000;
  r.loss = 2.401234567891;
  r.lr = 1e-3f;
  r.grad_norm = 0.41234567;
  r.tokens_per_s = 5282.06;
  r.ms_per_step = 775.2004;
  r.eta_s = 698.04;
  r.val_loss = 2.3871;
  EXPECT_EQ(format_json_line(r),
            "{\"step\":100,\"loss\":2.4012346,\"lr\":0.001,\"grad_norm\":0.412346,"
            "\"tokens_per_s\":5282.1,\"ms_per_step\":775.2,\"eta_s\":698.0,\"val_loss\":2.3871,"
            "\"precision\":\"fp32\",\"comm_wait_s\":0.0}");
  r.loss = std::numeric_limits<double>::quiet_NaN();
  r.grad_norm = std::numeric_limits<double>::infinity();
  r.val_loss.reset();
  r.precision = kernels::Precision::bf16;
  // Several ranks: the longest wait to the microsecond, and who kept the others waiting.
  r.ranks = 3;
  r.comm_wait_s = 0.01234567;
  r.slowest_rank = 2;
  EXPECT_EQ(format_json_line(r),
            "{\"step\":100,\"loss\":null,\"lr\":0.001,\"grad_norm\":null,"
            "\"tokens_per_s\":5282.1,\"ms_per_step\":775.2,\"eta_s\":698.0,"
            "\"precision\":\"bf16\",\"comm_wait_s\":0.012346,\"slowest_rank\":2}");
}

// A resumed run's MetricsFile keeps the records through the checkpoint's
// step as they were written (also in the older spaced format, also with a
// null loss), drops those past it, a line cut short by a kill (no newline)
// and lines that are not records (not JSON, no step, a step that is not an
// integer), and appends what the run writes next.
TEST(MetricsFile, ResumeKeepsWholeRecordsThroughTheCheckpointsStep) {
  TempDir dir;
  const fs::path path = dir / "metrics.jsonl";
  {
    MetricsFile metrics(path);
    for (int step = 1; step <= 3; ++step) {
      LogRecord r = log_record(step);
      if (step == 2) r.loss = std::numeric_limits<double>::quiet_NaN();
      metrics.write(r);
    }
  }
  const std::vector<std::string> written = split_lines(test::read_file(path));
  ASSERT_EQ(written.size(), 3u);
  EXPECT_TRUE(contains(written[1], "\"loss\":null")) << written[1];
  const std::string spaced = "{\"step\": 4, \"loss\": 5.25, \"lr\": 0.001}";
  std::ofstream(path, std::ios::app) << "not json at all\n"
                                     << spaced << "\n"
                                     << "{\"loss\": 5.0}\n"
                                     << "{\"step\": \"4\", \"loss\": 5.0}\n"
                                     << "{\"step\": 4.5, \"loss\": 5.0}\n"
                                     << "[4, 5.0]\n"
                                     << format_json_line(log_record(5)) << "\n"
                                     << format_json_line(log_record(6)) << "\n"
                                     << "{\"step\": 3, \"loss\": 5.5";
  {
    MetricsFile metrics(path, 4);  // resumed from step 4's checkpoint
    metrics.write(log_record(5));
    metrics.write(log_record(6));
  }
  const std::string text = test::read_file(path);
  EXPECT_EQ(text.back(), '\n');
  const std::vector<std::string> want = {written[0], written[1], written[2], spaced,
                                         format_json_line(log_record(5)),
                                         format_json_line(log_record(6))};
  EXPECT_EQ(split_lines(text), want) << text;
  // Nothing to keep: a fresh run starts the file afresh.
  { MetricsFile metrics(path); }
  EXPECT_EQ(test::read_file(path), "");
}

}  // namespace
}  // namespace cllm
