// The cllm executable end to end: input errors, --help, a short training run
// and its metrics.jsonl, --config files, bench --json, and jobs/local.sh
// under a stop signal.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cllm/io/checkpoint_store.h"
#include "support/metrics.h"
#include "support/process.h"
#include "support/run_args.h"

namespace cllm {
namespace {

using test::contains;
using test::number_at;
using test::ProcessResult;
using test::split_lines;
using Args = std::vector<std::string>;
using Json = nlohmann::ordered_json;

const std::string kAusten = std::string(CLLM_SOURCE_DIR) + "/data/austen.txt";

// A tiny, fast `cllm train` command line; `overrides` ("--name", "value",
// ...) replace or add options (an empty value: a flag without a value).
Args train_args(const std::string& out, const Args& overrides = {}) {
  return test::with(test::one_layer_run(kAusten, out), overrides);
}

// A line of JSON parsed; a discarded value (not an object) when it is not JSON.
Json parsed_json(const std::string& line) { return Json::parse(line, nullptr, false); }

class CliTest : public ::testing::Test {
 protected:
  ProcessResult run(const Args& args, const std::vector<std::string>& extra_env = {}) {
    return test::run_cllm(args, tmp.path(), extra_env);
  }
  std::string out_dir(const std::string& name) const { return (tmp / name).string(); }
  test::TempDir tmp;
};

// ---------------------------------------------------------------- errors

struct BadInput {
  Args options;
  std::string names;  // what the one error line must mention
  int exit_code;      // 2: invalid command line, 1: bad input or I/O error (src/cli/cli.h)
};

TEST_F(CliTest, InvalidInputGivesOneErrorLineNamingTheCulprit) {
  const std::vector<BadInput> cases = {
      {{"--heads", "3", "--embd", "256"}, "--heads", 2},
      {{"--global-batch", "10", "--micro-batch", "4"}, "--global-batch", 2},
      {{"--micro-batch", "0"}, "--micro-batch", 2},
      {{"--steps", "-1"}, "--steps", 2},
      {{"--layers", "0"}, "--layers", 2},
      {{"--data", "/nonexistent/file.txt"}, "/nonexistent/file.txt", 1},
      {{"--bogus", ""}, "--bogus", 2},
      {{"--preset", "huge"}, "--preset", 2},
      {{"--precision", "fp16"}, "--precision: must be fp32 or bf16, not fp16", 2},
      {{"--matmul", "openblas", "--precision", "bf16"}, "--precision bf16 needs --matmul onednn", 2},
      {{"--overlap", "sometimes"}, "--overlap: must be on or off, not sometimes", 2},
      {{"--progress-us", "-5"}, "--progress-us", 2},
      {{"--out", "/proc/forbidden"}, "/proc/forbidden", 1},
  };
  for (const BadInput& c : cases) {
    const Args args = train_args(out_dir("bad"), c.options);
    const ProcessResult r = run(args);
    SCOPED_TRACE(test::join(args));
    EXPECT_EQ(r.exit_code, c.exit_code) << "stderr: " << r.err;
    const auto lines = split_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
    EXPECT_TRUE(contains(lines[0], c.names)) << lines[0];
    EXPECT_EQ(lines[0].rfind("cllm: error: ", 0), 0u) << lines[0];
    EXPECT_FALSE(contains(r.out, "step ")) << "it trained anyway:\n" << r.out;
  }
}

// args with option set to value (replaced where args has it, else appended),
// an empty value included.
Args with_value(Args args, const std::string& option, const std::string& value) {
  const auto it = std::find(args.begin(), args.end(), option);
  if (it != args.end() && it + 1 != args.end()) {
    *(it + 1) = value;
  } else {
    args.push_back(option);
    args.push_back(value);
  }
  return args;
}

// args without option and its value.
Args without(Args args, const std::string& option) {
  const auto it = std::find(args.begin(), args.end(), option);
  if (it != args.end() && it + 1 != args.end()) args.erase(it, it + 2);
  return args;
}

// Exactly one line on stderr, "cllm: error: ..." naming every one of names,
// exit 2, and no training.
void expect_usage_error(const ProcessResult& r, const std::vector<std::string>& names) {
  EXPECT_EQ(r.exit_code, 2) << "stderr: " << r.err;
  const auto lines = split_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
  EXPECT_EQ(lines[0].rfind("cllm: error: ", 0), 0u) << lines[0];
  for (const std::string& name : names)
    EXPECT_TRUE(contains(lines[0], name)) << "'" << name << "' missing from: " << lines[0];
  EXPECT_FALSE(contains(r.out, "step ")) << "it trained anyway:\n" << r.out;
}

// CLI11 reads an empty value as the type's zero, an empty optional or an
// empty list: --grad-clip "" turned clipping off, --stall-warn "" the
// inspector, --seed "" was seed 0, and a shape option fell back to the
// preset, all unseen (issue 25). Every command's options refuse one by
// name, flags (--json=) and --config files too.
TEST_F(CliTest, EmptyValuesAreRefusedByNameInEveryCommand) {
  const std::string checkpoint = out_dir("never-read.h5");  // the options fail first
  const Args train = train_args(out_dir("empty"));
  std::vector<std::pair<Args, std::string>> cases;  // the command line, the option named
  for (const char* option : {"--grad-clip", "--stall-warn", "--seed", "--layers", "--preset", "--threads",
                             "--overlap", "--keep", "--data", "--lr", "--resume", "--trace"})
    cases.push_back({with_value(train, option, ""), option});
  const std::vector<std::pair<Args, std::string>> other_commands = {
      {{"bench", "--steps", ""}, "--steps"},
      {{"bench", "--vocab", ""}, "--vocab"},
      {{"bench", "--seed", ""}, "--seed"},
      {{"bench", "--json="}, "--json"},
      {{"prepare", kAusten, "--out", out_dir("x.h5"), "--val-fraction", ""}, "--val-fraction"},
      {{"prepare", "", "--out", out_dir("x.h5")}, "inputs"},
      {{"generate", "--checkpoint", checkpoint, "--tokens", ""}, "--tokens"},
      {{"generate", "--checkpoint", checkpoint, "--seed", ""}, "--seed"},
      {{"generate", "--checkpoint", ""}, "--checkpoint"},
      {{"eval", "--checkpoint", checkpoint, "--data", kAusten, "--split", ""}, "--split"},
      {{"eval", "--checkpoint", checkpoint, "--data", kAusten, "--max-tokens", ""}, "--max-tokens"},
      {{"import", "", "--out", out_dir("x.h5")}, "source"},
      {{"export", "--checkpoint", checkpoint, "--out", out_dir("x"), "--format", ""}, "--format"},
  };
  cases.insert(cases.end(), other_commands.begin(), other_commands.end());
  for (const auto& [args, option] : cases) {
    SCOPED_TRACE(test::join(args));
    expect_usage_error(run(args), {option + ": an empty value"});
  }
  // In a --config file: `key = ""`, `key = ''` and `key =` alike.
  const std::vector<std::pair<std::string, std::string>> lines = {
      {"grad-clip = \"\"", "grad-clip"}, {"stall-warn =", "stall-warn"}, {"seed = ''", "seed"},
      {"layers = \"\"", "layers"},       {"data = [\"\"]", "data"}};
  for (const auto& [line, key] : lines) {
    const std::string toml = (tmp / "empty.toml").string();
    std::ofstream(toml) << "steps = 2\n" << line << "\n";
    SCOPED_TRACE(line);
    expect_usage_error(run(with_value(train, "--config", toml)), {"empty.toml:2", key, "an empty value"});
  }
}

// Negative numbers where they mean nothing: --keep -1 was taken, and an
// unsigned seed or count read "-1" as 2^64 - 1.
TEST_F(CliTest, NegativeValuesAreRefusedWhereTheyMeanNothing) {
  const std::string checkpoint = out_dir("never-read.h5");
  const Args train = train_args(out_dir("negative"));
  const std::vector<std::pair<Args, std::string>> cases = {
      {with_value(train, "--keep", "-1"), "--keep must not be negative"},
      {with_value(train, "--seed", "-1"), "--seed: must not be negative"},
      {{"bench", "--seed", "-1"}, "--seed: must not be negative"},
      {{"generate", "--checkpoint", checkpoint, "--seed", "-1"}, "--seed: must not be negative"},
      {{"eval", "--checkpoint", checkpoint, "--data", kAusten, "--max-tokens", "-1"},
       "--max-tokens: must not be negative"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(test::join(args));
    expect_usage_error(run(args), {message});
  }
  const std::string toml = (tmp / "seed.toml").string();
  std::ofstream(toml) << "seed = -1\n";
  expect_usage_error(run(with_value(train, "--config", toml)), {"--seed: must not be negative"});
}

// --val-fraction 0 on a text file left no validation windows: the run
// failed after reading the data, saying the file was too short. Refused at
// once instead (cllm prepare still takes 0: eval --split train reads such a
// dataset).
TEST_F(CliTest, ValFractionZeroIsRefusedForTraining) {
  expect_usage_error(run(with_value(train_args(out_dir("v")), "--val-fraction", "0")),
                     {"--val-fraction must be above 0"});
  EXPECT_FALSE(std::filesystem::exists(out_dir("v"))) << "refused only after it made --out";
}

// Past what the OpenMP runtime can start, libgomp failed inside its thread
// start: "Thread creation failed" at some counts, a segmentation fault (exit
// 139, no message) at --threads 100000. Refused while parsing, naming the
// option (or OMP_NUM_THREADS, its default) and the limit.
TEST_F(CliTest, ThreadsBeyondWhatTheRuntimeCanStartAreRefusedByName) {
  const std::string checkpoint = out_dir("never-read.h5");
  const Args train = train_args(out_dir("t"));
  for (const Args& args : {with_value(train, "--threads", "100000"),
                           Args{"bench", "--threads", "100000"},
                           Args{"eval", "--checkpoint", checkpoint, "--data", kAusten, "--threads", "100000"}}) {
    SCOPED_TRACE(test::join(args));
    expect_usage_error(run(args), {"--threads: 100000 threads is more than", "at most "});
  }
  expect_usage_error(run(without(train, "--threads"), {"OMP_NUM_THREADS=100000"}),
                     {"OMP_NUM_THREADS", "100000 threads", "at most "});
  expect_usage_error(run(with_value(train, "--threads", "3"), {"OMP_THREAD_LIMIT=2"}),
                     {"--threads: 3 threads", "at most 2", "OMP_THREAD_LIMIT"});
}

TEST_F(CliTest, TrainHelpListsTheOptions) {
  const ProcessResult r = run({"train", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* opt : {"--micro-batch", "--global-batch", "--config", "--threads", "--data",
                          "--max-bad-steps"})
    EXPECT_TRUE(contains(r.out, opt)) << opt << " missing from:\n" << r.out;
}

// ---------------------------------------------------------------- a run

TEST_F(CliTest, ShortRunLogsAndWritesMetrics) {
  const std::string out = out_dir("run");
  const Args args = train_args(out, {"--steps", "6", "--log-every", "2", "--eval-every", "3",
                                     "--threads", "2", "--sample-tokens", "40"});
  const ProcessResult r = run(args);
  ASSERT_EQ(r.exit_code, 0) << test::join(args) << "\nstderr:\n" << r.err;
  EXPECT_EQ(r.err, "");

  // Logged steps: every 2nd, every 3rd (with evaluation), and the last.
  const std::vector<int> want_steps = {2, 3, 4, 6};
  const std::vector<bool> want_val = {false, true, false, true};
  std::vector<std::string> log_lines;
  for (const auto& line : split_lines(r.out))
    if (line.rfind("step ", 0) == 0) log_lines.push_back(line);
  ASSERT_EQ(log_lines.size(), want_steps.size()) << r.out;
  for (std::size_t i = 0; i < log_lines.size(); ++i) {
    const std::string& l = log_lines[i];
    EXPECT_TRUE(contains(l, "step " + std::to_string(want_steps[i]) + "/6")) << l;
    for (const char* word : {"loss", "lr", "grad norm", "tok/s", "ms/step", "ETA"})
      EXPECT_TRUE(contains(l, word)) << "'" << word << "' missing from: " << l;
    EXPECT_EQ(contains(l, "val loss"), want_val[i]) << l;
  }

  // One JSON object per line.
  const auto lines = split_lines(test::read_file(out + "/metrics.jsonl"));
  const auto records = test::read_metrics(out + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), want_steps.size());
  ASSERT_EQ(records.size(), want_steps.size());
  double last_val = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Json& rec = records[i];
    SCOPED_TRACE(lines[i]);
    EXPECT_EQ(lines[i].front(), '{');
    EXPECT_EQ(lines[i].back(), '}');
    EXPECT_EQ(number_at(rec, "step"), want_steps[i]);
    const auto loss = number_at(rec, "loss");
    ASSERT_TRUE(loss);
    EXPECT_GT(*loss, 1.0);
    EXPECT_LT(*loss, 7.0);  // near log(256) = 5.55 for an untrained model
    for (const char* key : {"lr", "grad_norm", "tokens_per_s", "ms_per_step"}) {
      const auto v = number_at(rec, key);
      ASSERT_TRUE(v) << key;
      EXPECT_GT(*v, 0.0) << key;
      EXPECT_TRUE(std::isfinite(*v)) << key;
    }
    const auto val = number_at(rec, "val_loss");
    EXPECT_EQ(val.has_value(), want_val[i]);
    if (val) {
      EXPECT_GT(*val, 1.0);
      EXPECT_LT(*val, 7.0);
      last_val = *val;
    }
  }

  // The final validation loss (the last record's) and a sample.
  const auto pos = r.out.find("final validation loss ");
  ASSERT_NE(pos, std::string::npos) << r.out;
  const double final_val = std::strtod(r.out.c_str() + pos + 22, nullptr);
  EXPECT_NEAR(final_val, last_val, 1e-4);
  const auto sample = r.out.find("sample");
  ASSERT_NE(sample, std::string::npos) << r.out;
  EXPECT_GT(sample, pos);
  const auto sample_text = r.out.find('\n', sample);
  ASSERT_NE(sample_text, std::string::npos);
  EXPECT_GT(r.out.size(), sample_text + 1) << "the sample is empty";
}

// ---------------------------------------------------------------- --config

// CLI11 2.1.2 matches a config key against the long option name without its
// leading dashes, spelled exactly: `micro-batch = 2` works, `micro_batch = 2`
// is silently ignored. So the file uses the dashed names.
TEST_F(CliTest, ConfigFileEqualsTheSameOptionsOnTheCommandLine) {
  const std::string out_cli = out_dir("cli"), out_cfg = out_dir("cfg");
  const Args common = {"--steps", "4", "--log-every", "1", "--threads", "2"};
  const ProcessResult direct = run(train_args(out_cli, common));
  ASSERT_EQ(direct.exit_code, 0) << direct.err;

  const std::string toml = (tmp / "run.toml").string();
  {
    std::ofstream f(toml);
    f << "# cllm train options\n"
      << "data = \"" << kAusten << "\"\n"
      << "out = \"" << out_cfg << "\"\n"
      << "preset = \"small\"\n"
      << "layers = 1\nembd = 32\nheads = 2\nseq-len = 16\n"
      << "micro-batch = 2\nglobal-batch = 4\n"
      << "steps = 4\nlog-every = 1\nthreads = 2\nsample-tokens = 0\n";
  }
  const ProcessResult via_file = run({"train", "--config", toml});
  ASSERT_EQ(via_file.exit_code, 0) << "cllm train --config " << toml << "\nstderr:\n"
                                   << via_file.err;

  const auto a = test::read_metrics(out_cli + "/metrics.jsonl");
  const auto b = test::read_metrics(out_cfg + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), a.size()) << "the config file's steps/log-every were not applied";
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(number_at(b[i], "step"), number_at(a[i], "step"));
    EXPECT_EQ(number_at(b[i], "loss"), number_at(a[i], "loss")) << a[i] << "\n" << b[i];
    EXPECT_EQ(number_at(b[i], "val_loss"), number_at(a[i], "val_loss"));
  }
}

TEST_F(CliTest, CommandLineOptionsWinOverTheConfigFile) {
  const std::string out_file = out_dir("from-file"), out_cli = out_dir("from-cli");
  const std::string toml = (tmp / "run.toml").string();
  {
    std::ofstream f(toml);
    f << "data = \"" << kAusten << "\"\n"
      << "out = \"" << out_file << "\"\n"
      << "layers = 1\nembd = 32\nheads = 2\nseq-len = 16\n"
      << "micro-batch = 2\nglobal-batch = 4\n"
      << "steps = 4\nlog-every = 1\nthreads = 1\nsample-tokens = 0\n";
  }
  const ProcessResult r = run({"train", "--config", toml, "--steps", "2", "--out", out_cli});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out_file)) << "the file's --out won over the command line";
  const auto records = test::read_metrics(out_cli + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 2u) << "--steps 2 on the command line should win over steps = 4";
  EXPECT_EQ(number_at(records[1], "step"), 2.0);
  // The file's other options applied too: the run found its data through the
  // file's `data` (the default, data/austen.txt, does not exist in the
  // temporary folder it runs in).
}

TEST_F(CliTest, MissingConfigFileIsAnError) {
  const std::string missing = "/nonexistent/cllm.toml";
  const ProcessResult r = run(train_args(out_dir("run"), {"--config", missing}));
  EXPECT_NE(r.exit_code, 0) << "a missing --config file was ignored";
  const auto lines = split_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(contains(lines[0], missing)) << lines[0];
}

// A --config file holds `key = value` lines naming options, comments and
// blank lines, nothing else: anything CLI11 would skip silently (a
// misspelt key, a section, binary junk) is an error naming the file and the
// culprit, exit 2. Only regular files are read: a FIFO, a folder or a
// device is refused without being opened (a FIFO would block forever,
// /dev/zero never end).
TEST_F(CliTest, ConfigFileWithAnythingButKnownOptionsIsRefused) {
  const auto write = [&](const std::string& name, const std::string& contents) {
    const std::string path = (tmp / name).string();
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  };
  const std::string valid = "steps = 2\nthreads = 1\n";
  std::string binary = "\x7f" "ELF\x02\x01\x01";
  binary += std::string(8, '\0') + "\x03\x00\x3e\x00 = \xff\xfe\n";
  const std::string fifo = (tmp / "fifo.toml").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  struct Case {
    std::string file;
    std::vector<std::string> names;  // what the one error line must mention
  };
  const std::vector<Case> cases = {
      {write("key.toml", valid + "stpes = 3\n"), {"key.toml", "'stpes'"}},
      {write("underscore.toml", valid + "micro_batch = 2\n"), {"underscore.toml", "'micro_batch'"}},
      {write("section.toml", valid + "[train]\nlr = 0.01\n"), {"section.toml", "[train]"}},
      {write("dotted.toml", valid + "train.lr = 0.01\n"), {"dotted.toml", "'train.lr'"}},
      {write("junk.toml", valid + "this is not an option\n"), {"junk.toml", ":3:"}},
      {write("binary.toml", binary), {"binary.toml"}},
      {write("latin1.toml", valid + "data = \"caf\xe9.txt\"\n"), {"latin1.toml", "UTF-8"}},
      {write("option.toml", valid + "config = other.toml\n"), {"option.toml", "'config'"}},
      {fifo, {fifo, "not a regular file"}},
      {tmp.str(), {tmp.str(), "not a regular file"}},
      {"/dev/zero", {"/dev/zero", "not a regular file"}},
  };
  for (const Case& c : cases) {
    const Args args = train_args(out_dir("bad"), {"--config", c.file});
    SCOPED_TRACE(test::join(args));
    // A FIFO nobody writes to would block the reader: end a hung cllm
    // rather than wait for ctest's timeout.
    const ProcessResult r = test::wait_program(test::start_program(CLLM_BINARY, args, tmp.path()),
                                               std::chrono::seconds(30));
    EXPECT_FALSE(r.timed_out) << "cllm hung reading the --config file";
    EXPECT_EQ(r.exit_code, 2) << "stderr: " << r.err;
    const auto lines = split_lines(r.err);
    EXPECT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
    if (lines.size() != 1) continue;
    EXPECT_EQ(lines[0].rfind("cllm: error: ", 0), 0u) << lines[0];
    for (const std::string& name : c.names)
      EXPECT_TRUE(contains(lines[0], name)) << "'" << name << "' missing from: " << lines[0];
    EXPECT_FALSE(contains(r.out, "step ")) << "it trained anyway:\n" << r.out;
  }
  // The valid lines alone, with a comment, a blank line and an indented key, are fine.
  const ProcessResult ok = run(train_args(
      out_dir("ok"),
      {"--config", write("ok.toml", "# a comment\n\n" + valid + "  log-every = 1\n")}));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// A --config string is a TOML string: "..." reads its escapes (CLI11 kept
// "\n" as a backslash and an n), '...' is taken as written, and a '#'
// inside either is text (CLI11 cut the line there). A value TOML would
// refuse is an error naming the file, the line and the key.
TEST_F(CliTest, ConfigStringsAreReadAsTomlStrings) {
  const std::string out = out_dir("model");
  ASSERT_EQ(run(train_args(out)).exit_code, 0);
  const std::string checkpoint = CheckpointStore(out).path(2).string();
  const auto generated = [&](const std::string& prompt_line) {
    const std::string toml = (tmp / "prompt.toml").string();
    std::ofstream(toml, std::ios::binary) << "tokens = 0\n" << prompt_line << "\n";
    return run({"generate", "--checkpoint", checkpoint, "--config", toml});
  };
  const ProcessResult basic =
      generated(R"(prompt = "It is\na truth, \"universally\" # acknowledged\t\u00e9\\")");
  EXPECT_EQ(basic.exit_code, 0) << basic.err;
  EXPECT_EQ(basic.out, "It is\na truth, \"universally\" # acknowledged\t\xc3\xa9\\\n");
  const ProcessResult literal = generated(R"(prompt = 'C:\new\t # "x"' # a comment)");
  EXPECT_EQ(literal.exit_code, 0) << literal.err;
  EXPECT_EQ(literal.out, "C:\\new\\t # \"x\"\n");
  for (const auto& [line, message] : std::vector<std::pair<std::string, std::string>>{
           {R"(prompt = "a\qb")", "prompt: unknown escape \\q"},
           {R"(prompt = "\uD800")", "prompt: \\uD800 is not a Unicode character"},
           {R"(prompt = "open)", "prompt: a string without its closing quote"}}) {
    SCOPED_TRACE(line);
    expect_usage_error(generated(line), {"prompt.toml:2: " + message});
  }
}

// ---------------------------------------------------------------- generate

// cllm generate printed nothing until it had sampled every token (--tokens
// 2147483647: days of silence), and Ctrl-C lost it all. Each token is
// printed as it is sampled; SIGINT stops after the token being sampled,
// keeps what was printed, ends the line and exits 4, saying how far it got.
TEST_F(CliTest, GenerateStreamsItsTokensAndKeepsThemWhenInterrupted) {
  const std::string out = out_dir("model");
  ASSERT_EQ(run(train_args(out)).exit_code, 0);
  const std::string prompt = "It is";
  const test::Running child = test::start_program(
      test::cllm_binary(),
      {"generate", "--checkpoint", CheckpointStore(out).path(2).string(), "--prompt", prompt, "--tokens",
       "2147483647"},
      tmp.path());
  // Tokens arrive while it runs (a hang guard only: the old build printed
  // nothing before the end).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline &&
         test::read_file(child.out_path).size() < prompt.size() + 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const std::size_t seen = test::read_file(child.out_path).size();
  kill(child.pid, SIGINT);
  const ProcessResult r = test::wait_program(child, std::chrono::seconds(60));
  ASSERT_GE(seen, prompt.size() + 10) << "no tokens printed while it ran";
  EXPECT_EQ(r.exit_code, 4) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("cllm: generate: stopped by SIGINT after (\\d+) of "
                                                     "2147483647 tokens \\(exit code 4\\)")))
      << r.err;
  // What was printed stays: the prompt, one byte per byte-level token, and
  // the line's end.
  const auto tokens = std::stoull(m[1]);
  EXPECT_GE(r.out.size(), seen);
  EXPECT_EQ(r.out.size(), prompt.size() + tokens + 1);
  EXPECT_EQ(r.out.substr(0, prompt.size()), prompt);
  EXPECT_EQ(r.out.back(), '\n');
}

// ---------------------------------------------------------------- jobs/local.sh

// A stop signal to jobs/local.sh (kill, a scheduler's SIGTERM, Ctrl-C in a
// terminal) makes the ranks checkpoint at the step boundary, and the script
// exits with the ranks' code 4 (mpirun itself kills its ranks on SIGTERM and
// SIGINT, within a second, and returns 1).
TEST_F(CliTest, LocalLauncherStopsTheRanksWithACheckpointAndExits4) {
  const std::string local_sh = std::string(CLLM_SOURCE_DIR) + "/jobs/local.sh";
  for (const int signal : {SIGTERM, SIGINT}) {
    const std::string name = signal == SIGTERM ? "term" : "int";
    SCOPED_TRACE(name);
    const std::string out = out_dir(name);
    // Steps that take a while, so that a checkpoint written at the
    // boundary is not the luck of a signal arriving just before it.
    Args args = {local_sh, "-n", "2", "-t", "1", "--"};
    for (const auto& a : train_args(out, {"--steps", "100000", "--log-every", "1", "--embd", "128",
                                          "--seq-len", "128", "--checkpoint-every", "0",
                                          "--eval-every", "0"}))
      args.push_back(a);
    const test::Running child =
        test::start_program("/bin/bash", args, tmp.path(), {std::string("CLLM_BINARY=") + CLLM_BINARY});
    const std::filesystem::path metrics = std::filesystem::path(out) / "metrics.jsonl";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline &&
           (!std::filesystem::exists(metrics) || std::filesystem::file_size(metrics) == 0))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    kill(child.pid, signal);
    const ProcessResult r = test::wait_program(child, std::chrono::seconds(120));
    EXPECT_EQ(r.exit_code, 4) << "stdout:\n" << r.out << "\nstderr:\n" << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex("stopped after step (\\d+) of 100000 by")))
        << r.out;
    EXPECT_TRUE(std::filesystem::exists(CheckpointStore(out).path(std::stoi(m[1])))) << r.out;
  }
}

// A script that starts jobs/local.sh with & makes it ignore SIGINT (a
// non-interactive shell does that for background commands), and bash cannot
// trap a signal ignored on entry: SIGINT did nothing. The script now runs
// itself again with SIGINT at its default, so its trap works.
TEST_F(CliTest, LocalLauncherStartedInTheBackgroundStopsOnSigint) {
  const std::string local_sh = std::string(CLLM_SOURCE_DIR) + "/jobs/local.sh";
  const std::string out = out_dir("background"), pid_file = out_dir("local.pid");
  Args args = {"-c", "\"$@\" & echo $! > \"$PID_FILE\"; wait $!", "script", "/bin/bash", local_sh,
               "-n", "1", "-t", "1", "--"};
  for (const auto& a : train_args(out, {"--steps", "100000", "--log-every", "1", "--embd", "128",
                                        "--seq-len", "128", "--checkpoint-every", "0", "--eval-every", "0"}))
    args.push_back(a);
  const test::Running script = test::start_program(
      "/bin/bash", args, tmp.path(), {std::string("CLLM_BINARY=") + test::cllm_binary(), "PID_FILE=" + pid_file});
  const std::filesystem::path metrics = std::filesystem::path(out) / "metrics.jsonl";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline &&
         (!std::filesystem::exists(metrics) || std::filesystem::file_size(metrics) == 0))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const pid_t local = std::stoi(test::read_file(pid_file));
  kill(local, SIGINT);
  ProcessResult r = test::wait_program(script, std::chrono::seconds(60));
  if (r.timed_out) {  // SIGINT ignored: stop it another way, wait for it, then fail
    kill(local, SIGTERM);
    for (int i = 0; i < 6000 && kill(local, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(r.timed_out) << "jobs/local.sh ignored SIGINT";
  EXPECT_EQ(r.exit_code, 4) << "stdout:\n" << r.out << "\nstderr:\n" << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("stopped after step (\\d+) of 100000 by"))) << r.out;
  EXPECT_TRUE(std::filesystem::exists(CheckpointStore(out).path(std::stoi(m[1])))) << r.out;
}

// ---------------------------------------------------------------- bench

TEST_F(CliTest, BenchJson) {
  const Args args = {"bench",         "--preset", "small", "--layers", "1", "--steps", "2",
                     "--warmup-steps", "1",       "--threads", "2",    "--json"};
  const ProcessResult r = run(args);
  ASSERT_EQ(r.exit_code, 0) << test::join(args) << "\nstderr:\n" << r.err;
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << "expected one JSON object:\n" << r.out;
  EXPECT_EQ(lines[0].front(), '{');
  EXPECT_EQ(lines[0].back(), '}');
  const Json obj = parsed_json(lines[0]);
  ASSERT_TRUE(obj.is_object()) << lines[0];
  for (const char* key : {"tokens_per_s", "ms_per_step", "gflops", "params", "ranks", "threads",
                          "thread_context_bytes"}) {
    const auto v = number_at(obj, key);
    ASSERT_TRUE(v) << key << " missing or not a number in " << obj;
    EXPECT_GT(*v, 0.0) << key;
  }
  EXPECT_EQ(number_at(obj, "threads"), 2.0);
  EXPECT_EQ(number_at(obj, "ranks"), 1.0);
  EXPECT_EQ(number_at(obj, "layers"), 1.0);
  // One rank: nothing to wait for after backward, overlap or not.
  EXPECT_EQ(obj.value("overlap", ""), "on");
  EXPECT_EQ(number_at(obj, "comm_exposed_ms"), 0.0);
  EXPECT_EQ(number_at(obj, "comm_exposed_min_ms"), 0.0);
  EXPECT_EQ(number_at(obj, "comm_exposed_max_ms"), 0.0);
  // 1 layer of width 256 over 256 tokens, 128 positions: 12C^2 + 13C + (V + T + 2) C.
  EXPECT_EQ(number_at(obj, "params"), 12.0 * 256 * 256 + 13 * 256 + (256 + 128 + 2) * 256);
  // The time split: shares of the step that add up, and matmul, attention,
  // waiting and the other kernels inside forward+backward (which is largest
  // depends on the build: the sanitizers slow our kernels, not the BLAS).
  const char* phases[] = {"data", "forward_backward", "thread_reduce", "allreduce", "optimizer"};
  const Json split = obj.value("time_split", Json::object());
  double total = 0;
  for (const char* key : phases) {
    const auto v = number_at(split, key);
    ASSERT_TRUE(v) << key << " missing in " << obj;
    EXPECT_GE(*v, 0.0) << key;
    total += *v;
  }
  EXPECT_NEAR(total, 1.0, 0.02) << obj;
  const auto fb = number_at(split, "forward_backward"), mm = number_at(split, "matmul"),
             att = number_at(split, "attention"), wait = number_at(split, "waiting"),
             rest = number_at(split, "other_forward_backward");
  ASSERT_TRUE(mm && att && wait && rest) << obj;
  EXPECT_GT(*mm, 0.0);
  EXPECT_GT(*att, 0.0);
  EXPECT_GE(*wait, 0.0);  // two threads: the first to finish waits for the other
  EXPECT_GT(*rest, 0.0);
  EXPECT_NEAR(*mm + *att + *wait + *rest, *fb, 1e-3) << obj;
}

// bench --data: the windows come from the dataset, as in training, and the
// model takes its vocabulary (GPT-2's here, not the byte default); --vocab
// beside it is refused.
TEST_F(CliTest, BenchReadsADatasetWithItsVocabulary) {
  const std::string vocab_dir = std::string(CLLM_SOURCE_DIR) + "/data/gpt2-bpe";
  const ProcessResult prep = run({"prepare", kAusten, "--out", "bpe.h5", "--tokenizer", "gpt2-bpe",
                                  "--vocab-dir", vocab_dir});
  ASSERT_EQ(prep.exit_code, 0) << prep.err;
  const Args args = {"bench", "--preset", "small", "--layers", "1", "--steps", "1", "--warmup-steps", "0",
                     "--json", "--data", "bpe.h5"};
  const ProcessResult r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json obj = parsed_json(r.out);
  ASSERT_TRUE(obj.is_object()) << r.out;
  EXPECT_EQ(number_at(obj, "vocab"), 50257.0);
  EXPECT_EQ(number_at(obj, "params"), 12.0 * 256 * 256 + 13 * 256 + (50257 + 128 + 2) * 256);
  Args both = args;
  both.insert(both.end(), {"--vocab", "256"});
  const ProcessResult refused = run(both);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_EQ(refused.err, "cllm: error: --vocab is the dataset's when --data is given: give one of them\n");
}

// OpenBLAS before 0.3.25 runs its SSE3 (Prescott) kernels on Intel CPUs newer
// than it knows; OPENBLAS_CORETYPE=Prescott makes it do so here. cllm names
// the kernels and says, once, what to set; with AVX2 kernels it says nothing.
TEST_F(CliTest, SlowBlasKernelsGetOneWarningWithTheFix) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "this CPU has no AVX2 and FMA: the Prescott kernels are no worse";
  const Args args = {"bench", "--preset", "small", "--layers", "1", "--steps", "1",
                     "--warmup-steps", "0", "--json", "--matmul", "openblas"};
  const ProcessResult slow = run(args, {"OPENBLAS_CORETYPE=Prescott"});
  ASSERT_EQ(slow.exit_code, 0) << slow.err;
  const Json slow_json = parsed_json(slow.out);
  ASSERT_TRUE(slow_json.is_object()) << slow.out;
  EXPECT_EQ(slow_json.value("matmul", "").rfind("OpenBLAS ", 0), 0u) << slow.out;
  EXPECT_TRUE(contains(slow.out, "(Prescott kernels)")) << slow.out;
  const auto lines = split_lines(slow.err);
  ASSERT_EQ(lines.size(), 1u) << slow.err;
  EXPECT_TRUE(contains(lines[0], "cllm: warning: OpenBLAS")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "Prescott kernels")) << lines[0];
  EXPECT_TRUE(contains(lines[0], "OPENBLAS_CORETYPE=SkylakeX") ||
              contains(lines[0], "OPENBLAS_CORETYPE=Haswell"))
      << lines[0];

  const ProcessResult fast = run(args, {"OPENBLAS_CORETYPE=Haswell"});
  ASSERT_EQ(fast.exit_code, 0) << fast.err;
  EXPECT_TRUE(contains(fast.out, "(Haswell kernels)")) << fast.out;
  EXPECT_EQ(fast.err, "");

  // OpenBLAS's kernels do not matter when oneDNN multiplies (the default).
  Args onednn = args;
  onednn.resize(onednn.size() - 2);
  const ProcessResult other = run(onednn, {"OPENBLAS_CORETYPE=Prescott"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(parsed_json(other.out).value("matmul", "").rfind("oneDNN ", 0), 0u) << other.out;
  EXPECT_EQ(other.err, "");
}

// bf16 on a CPU without bf16 instructions (as oneDNN sees it): one warning
// line, then a correct run. ONEDNN_MAX_CPU_ISA=AVX2 leaves oneDNN 2.6
// without a bf16 product: the engine multiplies bf16-rounded inputs in fp32.
TEST_F(CliTest, Bf16WithoutBf16InstructionsWarnsOnceAndTrains) {
  const std::string out = out_dir("bf16-avx2");
  const ProcessResult r = run(train_args(out, {"--precision", "bf16", "--steps", "4"}),
                              {"ONEDNN_MAX_CPU_ISA=AVX2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = split_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(contains(lines[0], "cllm: warning: this CPU has no bf16 instructions")) << lines[0];
  EXPECT_TRUE(contains(r.out, "matmul: oneDNN ")) << r.out;
  EXPECT_TRUE(contains(r.out, "(avx2), bf16")) << r.out;
  EXPECT_TRUE(contains(r.out, "tok/s bf16")) << r.out;
  // The losses are those of the native bf16 run (the same rounded inputs,
  // summed in another order).
  const std::string native = out_dir("bf16-native");
  ASSERT_EQ(run(train_args(native, {"--precision", "bf16", "--steps", "4"})).exit_code, 0);
  const auto emulated = test::metric_values(out + "/metrics.jsonl", "loss");
  const auto expected = test::metric_values(native + "/metrics.jsonl", "loss");
  ASSERT_EQ(emulated.size(), expected.size());
  ASSERT_FALSE(emulated.empty());
  for (std::size_t i = 0; i < emulated.size(); ++i)
    EXPECT_NEAR(emulated[i], expected[i], 1e-4 * expected[i]) << "record " << i;
}

}  // namespace
}  // namespace cllm
