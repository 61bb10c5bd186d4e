// Faults and hostile input, end to end through the cllm executable: files
// that lie about their numbers, token ids outside the vocabulary, a full
// disk, memory that cannot be had, corrupt or foreign checkpoints, a second
// run on the same --out, a changed configuration on resume. Each must end in
// one line naming the file or option and a non-zero exit, or in a warning and
// a run that goes on - never a crash, a hang, or lost progress.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cllm/data/tokenizer.h"
#include "cllm/io/checkpoint.h"
#include "cllm/io/checkpoint_store.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/durable_file.h"
#include "cllm/io/file_checksum.h"
#include "cllm/io/hdf5.h"
#include "cllm/io/output_lock.h"
#include "cllm/train/run_settings.h"
#include "support/metrics.h"
#include "support/process.h"
#include "support/run_args.h"
#include "support/tiny_model.h"

namespace cllm {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::ProcessResult;
using test::split_lines;
using test::TempDir;
using test::tiny_run;
using test::with;

const std::string kText = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";

// The lines cllm itself wrote to stderr (mpiexec adds its own).
std::vector<std::string> cllm_lines(const ProcessResult& r) {
  std::vector<std::string> ours;
  for (const auto& line : split_lines(r.err))
    if (line.rfind("cllm:", 0) == 0) ours.push_back(line);
  return ours;
}

// Exactly one error line, naming every one of `names`, and the exit code.
void expect_one_error(const ProcessResult& r, int exit_code,
                      const std::vector<std::string>& names) {
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  const auto lines = cllm_lines(r);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(contains(lines[0], "cllm: error: ")) << lines[0];
  for (const auto& name : names) EXPECT_TRUE(contains(lines[0], name)) << lines[0];
}

std::vector<std::string> warnings(const ProcessResult& r) {
  std::vector<std::string> w;
  for (const auto& line : cllm_lines(r))
    if (line.rfind("cllm: warning: ", 0) == 0) w.push_back(line);
  return w;
}

// A byte-level dataset as prepare writes it, with root attributes as given
// (each "name" -> value replaces prepare's), written through the library's
// own HDF5 layer.
struct DatasetSpec {
  std::vector<std::uint16_t> train, val;
  std::function<void(hid_t file)> attributes;  // after the defaults
};

void write_dataset(const fs::path& path, const DatasetSpec& d) {
  h5::Handle file = h5::create_memory_file(path.string());
  h5::set_attr(file, "format", std::string(kDatasetFormat));
  h5::set_attr(file, "format_version", kDatasetFormatVersion);
  h5::set_attr(file, "tokenizer", std::string("byte"));
  h5::set_attr(file, "vocab_size", std::int64_t{256});
  h5::set_attr(file, "eot_token", std::int64_t{-1});
  h5::set_attr(file, "sources", std::string("test"));
  h5::set_attr(file, "sources_sha256", std::string("0"));
  h5::set_attr(file, "val_fraction", 0.1);
  if (d.attributes) d.attributes(file);
  h5::create_group(file, "train");
  h5::create_group(file, "val");
  h5::Storage s;
  s.chunk_rows = 4096;
  h5::write_dataset(file, "train/tokens", H5T_STD_U16LE, H5T_NATIVE_UINT16, {d.train.size()},
                    d.train.data(), s);
  h5::write_dataset(file, "val/tokens", H5T_STD_U16LE, H5T_NATIVE_UINT16, {d.val.size()},
                    d.val.data(), s);
  const auto image = h5::file_image(file);
  write_durably(path, image);
}

// Valid byte tokens: the letters a-z over and over.
std::vector<std::uint16_t> letters(std::size_t n) {
  std::vector<std::uint16_t> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<std::uint16_t>('a' + i % 26);
  return t;
}

class FaultTest : public ::testing::Test {
 protected:
  FaultTest() { h5::silence_error_stack(); }
  TempDir dir;
  std::string out(const std::string& name) const { return (dir / name).string(); }
  ProcessResult cllm(const std::vector<std::string>& args, int ranks = 1) const {
    return ranks == 1 ? test::run_cllm(args, dir.path())
                      : test::run_cllm_mpi(ranks, args, dir.path());
  }
};

// ---- memory safety

TEST_F(FaultTest, TokenIdsOutsideTheVocabularyStopTheRun) {
  DatasetSpec d{letters(20000), letters(4000), nullptr};
  for (std::size_t i = 0; i < d.train.size(); i += 50) d.train[i] = 300;  // past the 256 bytes
  const std::string data = out("ids.h5");
  write_dataset(data, d);
  for (int ranks : {1, 2}) {
    const auto r = cllm(tiny_run(data, out("o" + std::to_string(ranks)), 1, 4), ranks);
    EXPECT_NE(r.exit_code, 0) << r.err;
    const auto lines = cllm_lines(r);
    ASSERT_GE(lines.size(), 1u) << r.err;
    EXPECT_TRUE(contains(lines[0], data + ": token id 300 at position ")) << lines[0];
    EXPECT_TRUE(contains(lines[0], "outside the vocabulary of 256 tokens")) << lines[0];
  }
}

TEST_F(FaultTest, NumbersInADatasetAreReadExactlyAndChecked) {
  struct Case {
    std::function<void(hid_t)> attributes;
    std::string names;
  };
  const std::vector<Case> cases = {
      {[](hid_t f) { h5::set_attr(f, "vocab_size", std::int64_t{(1ll << 32) + 256}); },
       "attribute 'vocab_size' = 4294967552 is out of range"},
      {[](hid_t f) { h5::set_attr(f, "vocab_size", 256.7); },
       "attribute 'vocab_size' must be a whole number, not 256.69999999999999"},
      {[](hid_t f) { h5::set_attr(f, "vocab_size", std::int64_t{2147483647}); },
       "tokenizer byte has 256 tokens, but vocab_size is 2147483647"},
      {[](hid_t f) { h5::set_attr(f, "tokenizer", std::string("gpt2-bpe")); },
       "tokenizer gpt2-bpe has 50257 tokens, but vocab_size is 256"},
      {[](hid_t f) { h5::set_attr(f, "eot_token", std::int64_t{256}); },
       "attribute 'eot_token' = 256 is out of range [-1, 255]"},
  };
  int n = 0;
  for (const auto& c : cases) {
    const std::string data = out("bad" + std::to_string(n++) + ".h5");
    write_dataset(data, {letters(20000), letters(4000), c.attributes});
    expect_one_error(cllm(tiny_run(data, out("o"), 1, 2)), 1, {data, c.names});
  }
}

TEST_F(FaultTest, GenerateRefusesACheckpointWhoseTokenizerDisagreesWithItsVocabulary) {
  const test::TinyModel tiny;
  TokenizerSpec gpt2 = tokenizer_spec("gpt2-bpe", std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe");
  gpt2.vocab_size = 256;  // GPT-2's ids reach 50256: they would index past wte
  const fs::path path = out("checkpoint-00000001.h5");
  const OptimizerState optimizer = tiny.optimizer.state();
  write_checkpoint(path, tiny.model, &optimizer, TrainingState{1, 8, 0}, gpt2,
                   config_settings(tiny.config));
  expect_one_error(cllm({"generate", "--checkpoint", path.string(), "--prompt", "Hello world"}),
                   1, {path.string(), "tokenizer gpt2-bpe has 50257 tokens"});
}

TEST_F(FaultTest, NotANumberIsNotAValidFraction) {
  expect_one_error(cllm(with(tiny_run(kText, out("o"), 1, 2), {"--val-fraction", "nan"})), 2,
                   {"--val-fraction"});
  expect_one_error(cllm({"prepare", kText, "--out", out("x.h5"), "--val-fraction", "nan"}), 2,
                   {"--val-fraction"});
}

// A full disk fails the write with one line; the process then ends normally
// (HDF5 used to crash in MPI_Finalize on the handles the failure left open),
// and the last good file stays as it was.
TEST_F(FaultTest, AFullDiskFailsTheWriteAndKeepsTheLastGoodFile) {
  const auto args = [&](const std::string& run) {
    return with(tiny_run(kText, run, 1, 4), {"--checkpoint-every", "2"});
  };
  // A disk with room for one checkpoint and a half.
  ASSERT_EQ(cllm(with(args(out("sized")), {"--stop-at", "2"})).exit_code, 0);
  const auto room = fs::file_size(CheckpointStore(out("sized")).path(2)) * 3 / 2 / 1024;
  const fs::path full = dir / "full";
  fs::create_directories(full);
  if (geteuid() != 0 || std::system(("mount -t tmpfs -o size=" + std::to_string(room) +
                                     "k tmpfs " + full.string() + " 2>/dev/null")
                                        .c_str()) != 0)
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  struct Unmount {
    fs::path at;
    ~Unmount() { [[maybe_unused]] int rc = std::system(("umount " + at.string()).c_str()); }
  } unmount{full};

  const std::string dataset = (full / "austen.h5").string();
  expect_one_error(cllm({"prepare", kText, "--out", dataset}), 1,
                   {dataset, "No space left on device"});
  EXPECT_FALSE(fs::exists(dataset));
  EXPECT_FALSE(fs::exists(temporary_name(dataset)));

  // The first checkpoint fits, the second does not beside it.
  const std::string run = (full / "run").string();
  const CheckpointStore store(run);
  const auto r = cllm(args(run));
  expect_one_error(r, 1, {store.path(4).string(), "No space left on device"});
  const auto files = store.list();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].step, 2);
  EXPECT_NO_THROW(CheckpointReader{files[0].path});
  // Built in memory (no room to reserve), and sealed as one written on disk.
  EXPECT_EQ(verify_file_checksum(files[0].path), FileChecksum::verified);
  EXPECT_FALSE(fs::exists(temporary_name(store.path(4))));
}

// Memory that cannot be had ends the run with a line that says for what and
// how much, not with std::bad_alloc escaping an OpenMP region (abort).
TEST_F(FaultTest, MemoryThatCannotBeHadIsNamed) {
#ifdef CLLM_TEST_SANITIZED
  GTEST_SKIP() << "the sanitizers reserve more address space than the limit allows";
#else
  const auto limited = [&](const std::string& limit_kib, const std::vector<std::string>& args) {
    std::vector<std::string> sh = {"-c", "ulimit -v " + limit_kib + " && exec \"$0\" \"$@\"",
                                   test::cllm_binary()};
    sh.insert(sh.end(), args.begin(), args.end());
    // Killed (exit 137) if it hangs, as OpenBLAS did when it was linked.
    return test::wait_program(test::start_program("/bin/sh", sh, dir.path()),
                              std::chrono::seconds(120));
  };
  // Thread contexts of 256 sequences of 256 tokens: several GiB each,
  // reckoned from the settings before anything is allocated.
  expect_one_error(limited("2000000", {"train", "--data", kText, "--out", out("o1"), "--preset",
                                       "medium", "--micro-batch", "256", "--global-batch", "512",
                                       "--threads", "2", "--steps", "1"}),
                   1, {"out of memory: these settings need", "ulimit -v", "GiB for the threads' contexts",
                       "--micro-batch 256"});
  // The model itself.
  expect_one_error(limited("1500000", {"train", "--data", kText, "--out", out("o2"), "--preset",
                                      "medium", "--embd", "3072", "--heads", "8", "--steps", "1"}),
                   1, {"out of memory: these settings need", "GiB for the model", "--embd 3072"});
  // prepare's tokenizer threads: std::bad_alloc inside the OpenMP region
  // ended the process (terminate, exit 134) before; a JSON document of
  // encoder.json freed when memory ran short did too. Austen 8 times over
  // fills a whole block of 16 MiB, which one thread or two cannot tokenize
  // in 170 MB (Austen alone fits in 115 MB on one).
  const std::string austen8 = out("austen8.txt");
  {
    std::ofstream eight(austen8, std::ios::binary);
    const std::string austen = test::read_file(kText);
    for (int i = 0; i < 8; ++i) eight << austen;
  }
  for (int trial = 0; trial < 3; ++trial)
    expect_one_error(limited("170000", {"prepare", austen8, "--tokenizer", "gpt2-bpe", "--vocab-dir",
                                        std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe", "--out",
                                        out("bpe.h5")}),
                     1, {"out of memory: cannot tokenize", austen8, "threads"});
  EXPECT_FALSE(fs::exists(out("bpe.h5")));
#endif
}

// Sizes no machine here can hold fail at once, naming the setting, from
// arithmetic on the settings: before, --layers 1000000 built for 90 s and
// 5.8 GB first, and --global-batch 2147483646 blamed the model.
TEST_F(FaultTest, ImpossibleSizesAreNamedBeforeAnythingIsBuilt) {
  const struct {
    std::vector<std::string> options;
    std::vector<std::string> names;
  } cases[] = {
      {{"--layers", "1000000"}, {"GiB for the model", "--layers 1000000"}},
      {{"--global-batch", "2147483646", "--micro-batch", "2"},
       {"for the token windows", "--global-batch 2147483646"}},
      {{"--eval-batches", "2000000000"}, {"for the token windows", "--eval-batches 2000000000"}},
  };
  for (const auto& c : cases) {
    const std::string run = out("huge");
    std::vector<std::string> names = {"out of memory: these settings need at least"};
    names.insert(names.end(), c.names.begin(), c.names.end());
    expect_one_error(cllm(with(tiny_run(kText, run, 1, 2), c.options)), 1, names);
    EXPECT_FALSE(fs::exists(CheckpointStore(run).path(2)));
  }
}

// OpenBLAS maps about 300 MiB as it loads and, short of it, loops forever
// (OpenBLAS issue 5289). Linked, it hung every subcommand under this limit,
// --help included; opened only for --matmul openblas, it is refused by name.
TEST_F(FaultTest, AShortAddressSpaceHangsNothingAndRefusesOpenBlasByName) {
#ifdef CLLM_TEST_SANITIZED
  GTEST_SKIP() << "the sanitizers reserve more address space than the limit allows";
#else
  const auto limited = [&](const std::vector<std::string>& args) {
    std::vector<std::string> sh = {"-c", "ulimit -v 350000 && exec \"$0\" \"$@\"",
                                   test::cllm_binary()};
    sh.insert(sh.end(), args.begin(), args.end());
    // A hang is what this guards against: give up well before ctest does.
    return test::wait_program(test::start_program("/bin/sh", sh, dir.path()),
                              std::chrono::seconds(60));
  };
  const auto help = limited({"train", "--help"});
  EXPECT_FALSE(help.timed_out);
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_TRUE(contains(help.out, "--matmul")) << help.out;

  const auto r = limited(with(tiny_run(kText, out("o"), 1, 2), {"--matmul", "openblas"}));
  EXPECT_FALSE(r.timed_out);
  expect_one_error(r, 1, {"openblas", "ulimit -v", "--matmul onednn"});
  EXPECT_FALSE(fs::exists(out("o") + "/checkpoint-00000002.h5"));
#endif
}

// ---- lost progress

TEST_F(FaultTest, ACorruptNewestCheckpointIsSetAsideAndNeverDisplacesNewOnes) {
  const std::string run = out("run");
  const CheckpointStore store(run);
  const auto args = with(tiny_run(kText, run, 1, 8), {"--checkpoint-every", "2", "--keep", "1"});
  ASSERT_EQ(cllm(with(args, {"--stop-at", "6"})).exit_code, 0);
  const fs::path six = store.path(6);
  fs::resize_file(six, fs::file_size(six) / 2);
  // Rewound to step 4 by hand (as after a bad stretch of training): --keep 1
  // must not delete what it writes because the corrupt 6 outranks it.
  fs::rename(six, store.path(60));
  const auto r = cllm(with(args, {"--stop-at", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto w = warnings(r);
  ASSERT_EQ(w.size(), 1u) << r.err;
  EXPECT_TRUE(contains(w[0], "skipping checkpoint " + store.path(60).string())) << w[0];
  EXPECT_TRUE(fs::exists(store.path(60).string() + ".bad"));
  const auto files = store.list();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].step, 2);
  // The next run continues from it.
  const auto next = cllm(args);
  ASSERT_EQ(next.exit_code, 0) << next.err;
  EXPECT_TRUE(contains(next.out, "resuming from " + store.path(2).string())) << next.out;
}

TEST_F(FaultTest, ACheckpointWhoseNameAndStepDisagreeIsSetAside) {
  const std::string run = out("run");
  const CheckpointStore store(run);
  ASSERT_EQ(cllm(with(tiny_run(kText, run, 1, 8), {"--stop-at", "4"})).exit_code, 0);
  fs::copy_file(store.path(4), store.path(9));
  const auto r = cllm(tiny_run(kText, run, 1, 8));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(warnings(r).size(), 1u) << r.err;
  EXPECT_TRUE(contains(warnings(r)[0], "its name says step 9, its /state/step says 4"));
  EXPECT_TRUE(contains(r.out, "resuming from " + store.path(4).string())) << r.out;
  EXPECT_TRUE(fs::exists(store.path(9).string() + ".bad"));

  // A negative step (which would train with a negative learning rate).
  const fs::path negative = out("negative.h5");
  fs::copy_file(store.path(4), negative);
  {
    h5::Handle file(H5Fopen(negative.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::set_attr(file, "step", std::int64_t{-100});
    h5::Handle state = h5::open_group(file, "state");
    h5::set_attr(state, "step", std::int64_t{-100});
  }
  write_file_checksum(negative);  // as a writer's bug would: the checksum passes, the check after it must not
  expect_one_error(cllm(with(tiny_run(kText, out("o"), 1, 8), {"--resume", negative.string()})),
                   1, {negative.string(), "'step' = -100 is out of range"});
}

TEST_F(FaultTest, PrepareRefusesToOverwriteItsInput) {
  const fs::path text = out("x.txt");
  fs::copy_file(kText, text);
  const std::string before = test::read_file(text);
  expect_one_error(cllm({"prepare", text.string(), "--out", text.string()}), 2,
                   {"--out " + text.string() + " is also an input"});
  fs::create_symlink(text, out("link.h5"));
  expect_one_error(cllm({"prepare", text.string(), "--out", out("link.h5")}), 2,
                   {"is also an input"});
  EXPECT_EQ(test::read_file(text), before);
  // Braces in a file name are the name's, not an option's.
  const fs::path braced = out("{out}.txt");
  fs::copy_file(kText, braced);
  expect_one_error(cllm({"prepare", braced.string(), "--out", braced.string()}), 2,
                   {"--out " + braced.string() + " is also an input (" + braced.string() + ")"});
}

TEST_F(FaultTest, GenerateNamesTheOptionThatCannotBeUsed) {
  const std::string checkpoint = out("never-read.h5");  // the options fail first
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tokens", "-1"}, "--tokens must not be negative"},
      {{"--temperature", "0"}, "--temperature must be positive"},
      {{"--temperature", "nan"}, "--temperature must be positive"},
      {{"--top-k", "-1"}, "--top-k must not be negative"},
  };
  for (const auto& [options, message] : cases)
    expect_one_error(cllm(with({"generate", "--checkpoint", checkpoint}, options)), 2,
                     {"cllm: error: " + message});
  // An empty value is refused by name, on the command line and in a --config file.
  expect_one_error(cllm({"generate", "--checkpoint", checkpoint, "--prompt", ""}), 2,
                   {"cllm: error: --prompt: an empty value"});
  const std::string config = out("empty-prompt.toml");
  std::ofstream(config) << "prompt = \"\"\n";
  expect_one_error(cllm({"generate", "--checkpoint", checkpoint, "--config", config}), 2,
                   {"empty-prompt.toml:1: prompt: an empty value"});
}

// ---- stop signals while a run starts

// Whether pid has a handler for signal (/proc/PID/status, SigCgt) and runs
// the cllm under test (not the forked copy of this test before its exec).
bool catches(pid_t pid, int signal) {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  if (ec || exe != fs::canonical(test::cllm_binary())) return false;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (signal - 1)) & 1;
  return false;
}

// No checkpoint and no metrics in folder: the run stopped before its first step.
void expect_nothing_saved(const fs::path& folder) {
  if (!fs::exists(folder)) return;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name.rfind("checkpoint-", 0) != 0 && name != "metrics.jsonl") << "written: " << name;
  }
}

// Slurm may preempt a job the moment it starts. The handlers were installed
// only once the command line was read (0.25 s in), and SIGTERM before then
// ended the process with exit 143, which the job script does not requeue.
// Now they are in place before the libraries start (cli/main.cpp): a
// SIGTERM pending at the first instruction, or one sent as soon as the
// handler is there, stops the run before its first step with exit 4 and
// nothing to save.
TEST_F(FaultTest, ASigtermWhileARunStartsExits4WithNothingToSave) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    SCOPED_TRACE("pending at exec, attempt " + std::to_string(attempt));
    const std::string o = out("pending" + std::to_string(attempt));
    const test::Running child =
        test::start_program(test::cllm_binary(), tiny_run(kText, o, 1, 2), dir.path(), {}, SIGTERM);
    const ProcessResult r = test::wait_program(child, std::chrono::seconds(120));
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "stopped by SIGTERM before step 1 of 2: nothing new to save")) << r.out;
    expect_nothing_saved(o);
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    SCOPED_TRACE("sent on arrival, attempt " + std::to_string(attempt));
    const std::string o = out("early" + std::to_string(attempt));
    const test::Running child = test::start_program(test::cllm_binary(), tiny_run(kText, o, 1, 2), dir.path());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!catches(child.pid, SIGTERM) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    kill(child.pid, SIGTERM);
    const ProcessResult r = test::wait_program(child, std::chrono::seconds(120));
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "stopped by SIGTERM before step 1 of 2: nothing new to save")) << r.out;
    expect_nothing_saved(o);
  }
}

TEST_F(FaultTest, OneRunPerOutputFolder) {
  const std::string run = out("run");
  fs::create_directories(run);
  {
    OutputLock held(run);  // another run, as far as cllm can tell
    const auto r = cllm(tiny_run(kText, run, 1, 2));
    expect_one_error(r, 1, {run + ": in use by another cllm run", "pid " + std::to_string(getpid())});
    EXPECT_TRUE(CheckpointStore(run).list().empty());
  }
  // A lock file left by a run that died holds nothing.
  std::ofstream(fs::path(run) / ".lock") << "host elsewhere, pid 1\n";
  const auto r = cllm(tiny_run(kText, run, 1, 2));
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// ---- silent drift

// Which settings a resume refuses and which it applies is tested in-process
// (TrainingRunTest.ResumeRefusesSettingsThatDefineTheRunAndWarnsAboutTheRest);
// here, what the command line makes of it: the options named, with both
// values, on one line and exit 2; and one warning line per changed option.
TEST_F(FaultTest, ResumeNamesTheOptionsItRefusesAndWarnsAboutTheRest) {
  const std::string run = out("run");
  const CheckpointStore store(run);
  const auto args = tiny_run(kText, run, 1, 8);
  ASSERT_EQ(cllm(with(args, {"--stop-at", "4"})).exit_code, 0);
  expect_one_error(cllm(with(args, {"--seed", "7", "--embd", "64", "--micro-batch", "4"})), 2,
                   {store.path(4).string(), "--seed 1337 (checkpoint) vs 7 (now)",
                    "--embd 32 (checkpoint) vs 64 (now)", "--micro-batch 2 (checkpoint) vs 4 (now)",
                    "another --out"});
  EXPECT_EQ(store.list().size(), 1u);
  const auto r = cllm(with(args, {"--lr", "2e-3", "--keep", "5", "--stop-at", "6"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto w = warnings(r);
  ASSERT_EQ(w.size(), 2u) << r.err;  // in --help's order
  EXPECT_TRUE(contains(w[0], "resuming with --keep 3 -> 5")) << w[0];
  EXPECT_TRUE(contains(w[1], "resuming with --lr 0.003 -> 0.002")) << w[1];
}

// The validation windows are fixed: exactly --eval-batches micro-batches,
// split over the ranks, so the val loss does not depend on the rank count.
TEST_F(FaultTest, ValidationLossIsTheSameOnOneToFourRanks) {
  std::vector<double> losses;
  for (int ranks : {1, 2, 3, 4}) {
    const std::string run = out("r" + std::to_string(ranks));
    const auto r = cllm(with(tiny_run(kText, run, 1, 2),
                             {"--micro-batch", "1", "--global-batch", "12", "--eval-batches", "5"}),
                        ranks);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto v = test::metric_values(fs::path(run) / "metrics.jsonl", "val_loss");
    ASSERT_EQ(v.size(), 1u);
    losses.push_back(v[0]);
  }
  for (int i = 1; i < 4; ++i)
    EXPECT_NEAR(losses[i], losses[0], 1e-6 * losses[0]) << i + 1 << " ranks";
}

}  // namespace
}  // namespace cllm
