// The subcommands: each one's options, bound to the library's config
// structs, and its call to the library. An option's default is the value
// its struct starts with, shown in --help.
#include <CLI/CLI.hpp>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "cli.h"
#include "cllm/app/benchmark.h"
#include "cllm/app/evaluation.h"
#include "cllm/app/exit_report.h"
#include "cllm/app/generate_text.h"
#include "cllm/app/model_transfer.h"
#include "cllm/app/prepare.h"
#include "cllm/app/training_run.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"
#include "cllm/train/stop_signal.h"
#include "cllm/train/thread_limit.h"
#include "cllm/train/train_settings.h"
#include "options_file.h"

namespace cllm {

namespace {

// --config FILE: the app's options from a TOML file, checked strictly
// (options_file.h) before CLI11 reads it.
void add_config_option(CLI::App& app) {
  // Backstop: a key that the check let through but CLI11 cannot place is an
  // error, not silently skipped.
  app.allow_config_extras(CLI::config_extras_mode::error);
  // A key names what CLI11 would find: "--key", "-key" for one letter, or a
  // positional's name.
  const auto key_kind = [&app](const std::string& key) {
    const CLI::Option* opt = app.get_option_no_throw("--" + key);
    if (!opt && key.size() == 1) opt = app.get_option_no_throw("-" + key);
    if (!opt) opt = app.get_option_no_throw(key);
    if (!opt) return OptionKey::unknown;
    return opt->get_configurable() ? OptionKey::settable : OptionKey::not_settable_in_files;
  };
  app.config_formatter(std::make_shared<OptionsFileFormat>());  // TOML's strings, escapes read
  app.set_config("--config", "",
                 "Read options from a TOML file: one 'name = value' per option, the long name "
                 "without its leading dashes (micro-batch = 8); command-line options win")
      ->check(CLI::Validator(
          [key_kind](std::string& path) { return options_file_problem(path, key_kind); }, "",
          "config file"))
      ->trigger_on_parse();  // CLI11 opens the file before it would run validators
}

// CLI11 reads an empty value ("--seed ''", "seed = \"\"") as the type's
// zero, an empty optional or an empty list: --grad-clip "" would turn
// clipping off unseen. Every option that takes a value refuses one: leaving
// the option out is how to ask for its default. (A transform runs first.)
void refuse_empty_values(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_expected_max() == 0) continue;  // a flag
    opt->transform(CLI::Validator(
        [](std::string& text) -> std::string {
          return text.empty() ? "an empty value (leave the option out for its default)" : "";
        },
        ""));
  }
}

// For unsigned fields (seeds, token counts), which CLI11 would read "-1"
// into as 2^64 - 1.
CLI::Validator not_negative() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const auto first = text.find_first_not_of(" \t");
        return first != std::string::npos && text[first] == '-' ? "must not be negative, not " + text : "";
      },
      "");
}

// --threads: no more than the OpenMP runtime can start (thread_limit.h),
// refused while parsing rather than crashing inside the runtime.
CLI::Option* add_threads_option(CLI::App& app, int& threads, const std::string& help) {
  return app.add_option("--threads", threads, help)
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            int n = 0;
            if (!CLI::detail::lexical_cast(text, n)) return "";  // the conversion names it
            return thread_count_problem(n);
          },
          ""))
      ->default_str("");
}

// The default of --threads comes from OMP_NUM_THREADS: held to the same limit.
void check_thread_default(const CLI::Option* option, int threads) {
  if (option->count()) return;  // checked as it was read
  if (const std::string problem = thread_count_problem(threads); !problem.empty())
    throw CommandLineError("OMP_NUM_THREADS (the default of --threads): " + problem);
}

// A choice setting's option: a name (in any case), read as the enum's
// value. Help shows "a|b" and the first as the default; an error says
// "must be a or b, not c".
template <typename Enum>
CLI::Option* add_choice_option(CLI::App& app, const std::string& option, Enum& target, const Setting& row,
                               const std::string& help) {
  const CLI::Validator read_choice(
      [&row](std::string& text) -> std::string {
        const std::optional<int> value = row.choice_value(text);
        if (!value) return "must be " + row.choice_names(" or ") + ", not " + text;
        text = std::to_string(*value);
        return "";
      },
      "");
  return app.add_option(option, target, help)
      ->transform(read_choice)
      ->type_name(row.choice_names("|"))
      ->default_str(row.choices.front().name);
}

// The option of a setting of train_settings.cpp, bound to its value in
// settings; help replaces the table's.
CLI::Option* add_setting(CLI::App& app, TrainRunConfig& settings, const Setting& row,
                         const char* help = nullptr) {
  return std::visit(
      [&](auto field) {
        auto& target = field(settings);
        const std::string option = option_name(row.name);
        CLI::Option* added = nullptr;
        using Target = std::decay_t<decltype(target)>;
        if constexpr (std::is_enum_v<Target>)
          added = add_choice_option(app, option, target, row, help ? help : row.help);
        else if constexpr (std::is_same_v<Target, int>)
          added = option == "--threads" ? add_threads_option(app, target, help ? help : row.help)
                                        : app.add_option(option, target, help ? help : row.help);
        else
          added = app.add_option(option, target, help ? help : row.help);
        if constexpr (std::is_unsigned_v<Target>) added->check(not_negative());
        return row.shown_default ? added->default_str(row.shown_default) : added;
      },
      row.field);
}
void add_settings(CLI::App& app, TrainRunConfig& settings, OptionGroup group) {
  for (const Setting& row : train_settings())
    if (row.group == group) add_setting(app, settings, row);
}

// Prints what a command reports; by size: byte-level text may hold NULs.
int print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

// The options train and bench share - the model, the batch, the step's
// engines and allreduce, the replica check, watching the run - around the
// command's own options, which own_options adds (in --help's middle).
struct StepOptions {
  TrainRunConfig settings;  // bench reads the shape, the config, --trace and the stall policy
  CLI::Option* global_batch = nullptr;

  void add(CLI::App& app, const char* global_help, const std::function<void()>& own_options) {
    settings.config.batch.threads = omp_get_max_threads();
    add_settings(app, settings, OptionGroup::model);
    add_settings(app, settings, OptionGroup::batch);
    global_batch = app.get_option("--global-batch")->description(global_help);
    own_options();
    add_settings(app, settings, OptionGroup::step);
    add_settings(app, settings, OptionGroup::watch);
    app.get_option("--trace")->type_name("FILE");
    threads_option = app.get_option("--threads");
  }

  void check_parsed() const { check_thread_default(threads_option, settings.config.batch.threads); }

  CLI::Option* threads_option = nullptr;
};

struct Train {
  StepOptions step;

  void add(CLI::App& app) {
    step.add(app, train_setting("global_batch").help,
             [&] { add_settings(app, step.settings, OptionGroup::run); });
  }
  void check_parsed() const { step.check_parsed(); }

  int run(Comm& comm) {
    // The handlers have been in place since the process started (main.cpp;
    // installing again does nothing, but serves a caller of run_cli in
    // process): a signal before the first step stops the run there.
    install_stop_signal_handlers();
    describe_stop_signals(StopAction::checkpoint_at_step);
    const TrainRunConfig& s = step.settings;
    TrainConfig c;
    collectively(comm, [&] { c = s.resolved(); });
    comm.watch_stalls(s.stall, option_name);
    return TrainingRun(c, s.policy, s.data, comm, option_name).run().exit_code();
  }
};

struct Bench {
  StepOptions step;
  BenchmarkConfig bench;

  void add(CLI::App& app) {
    step.add(app, "Sequences per optimizer step [default: micro-batch x threads x ranks]", [&] {
      app.add_option("--steps", bench.steps, "Timed steps");
      app.add_option("--warmup-steps", bench.warmup_steps, "Untimed steps first");
      app.add_flag("--json", bench.json, "Print one JSON object instead of a table");
      app.add_option("--vocab", bench.vocab,
                     "Vocabulary size of the benchmarked model [default: 256, the byte tokenizer's; "
                     "50257 is GPT-2's]");
      app.add_option("--data", bench.data,
                     "Read the windows from this dataset (or text file), as training does [default: random "
                     "tokens in memory]");
      add_setting(app, step.settings, train_setting("seed"), "Seed");
    });
    step.global_batch->default_str("");
  }
  void check_parsed() const { step.check_parsed(); }

  int run(Comm& comm) {
    restore_stop_signals();  // a benchmark stops as the signal says, at once
    BatchConfig& batch = step.settings.config.batch;
    if (!step.global_batch->count()) batch.global_batch = batch.micro_batch * batch.threads * comm.size();
    comm.watch_stalls(step.settings.stall, option_name);
    return print(bench_command(step.settings, bench, comm));
  }
};

// Under mpirun every rank prepares a share of the inputs.
struct Prepare {
  PrepareConfig spec;

  void add(CLI::App& app) {
    app.add_option("inputs", spec.inputs, "Text files (UTF-8), folders (every file below) or quoted glob "
                                          "patterns, in order; .gz files are read through zlib; .bin "
                                          "(llm.c) and .npy token files are copied as they are")
        ->required()
        ->default_str("");
    app.add_option("--jsonl", spec.jsonl_field,
                   "The inputs are JSON Lines: one document per line, its text in this field (a line "
                   "without it is skipped, counted and named)")
        ->type_name("FIELD");
    app.add_option("--out", spec.out, "HDF5 dataset to write (replaced atomically)");
    app.add_option("--tokenizer", spec.tokenizer, "byte (vocab 256) or gpt2-bpe (vocab 50257)");
    app.add_option("--vocab-dir", spec.vocab_dir,
                   "Folder with GPT-2's encoder.json and vocab.bpe (gpt2-bpe)");
    app.add_option("--val-fraction", spec.val_fraction,
                   "Share of the tokens held out for validation, in [0, 0.5]");
    app.add_option("--val-split", spec.val_split,
                   "tail: the last tokens (any corpus, one file included); documents: whole documents, "
                   "chosen by a hash of their text (for corpora of many documents)");
  }

  int run(Comm& comm) {
    restore_stop_signals();  // prepare is not resumable: a stop signal ends it at once
    return print(prepare_command(spec, comm));
  }
};

// generate, import and export work on rank 0; under mpirun the other ranks
// wait.
struct Generate {
  GenerateConfig spec;

  void add(CLI::App& app) {
    app.add_option("--checkpoint", spec.checkpoint, "Checkpoint file (checkpoint-<step>.h5)")
        ->required();
    app.add_option("--prompt", spec.prompt, "Text to continue");
    app.add_option("--tokens", spec.sampling.tokens, "New tokens to generate");
    app.add_option("--temperature", spec.sampling.temperature, "Sampling temperature (> 0)");
    app.add_option("--top-k", spec.sampling.top_k, "Sample among the k likeliest tokens (0: all)");
    app.add_option("--seed", spec.sampling.seed, "Sampling seed")->check(not_negative());
  }

  int run(Comm& comm) {
    // The text streams out as it is sampled; a stop signal ends it after the
    // token being sampled, what was printed kept (generate_text.h).
    install_stop_signal_handlers();  // as train does
    describe_stop_signals(StopAction::end_after_token);
    return generate_command(spec, comm);
  }
};

struct Eval {
  EvalConfig spec;

  void add(CLI::App& app) {
    spec.threads = omp_get_max_threads();
    app.add_option("--checkpoint", spec.checkpoint, "Checkpoint file")->required();
    app.add_option("--data", spec.data, "Dataset (cllm prepare's .h5, or a text file) in the "
                                        "checkpoint's tokenizer")->required();
    app.add_option("--split", spec.split, "val or train");
    app.add_option("--max-tokens", spec.max_tokens, "Score the first N predictions only (0: all)")
        ->check(not_negative());
    threads_option = add_threads_option(app, spec.threads, "OpenMP threads [default: OMP_NUM_THREADS]");
    app.add_flag("--json", spec.json, "Print one JSON object instead of a line");
  }
  void check_parsed() const { check_thread_default(threads_option, spec.threads); }
  CLI::Option* threads_option = nullptr;

  int run(Comm& comm) {
    restore_stop_signals();
    comm.watch_stalls(StallConfig{}, option_name);  // the default: warnings only
    return print(eval_command(spec, comm));
  }
};

struct Import {
  ImportConfig spec;

  void add(CLI::App& app) {
    app.add_option("source", spec.source,
                   "A Hugging Face GPT2LMHeadModel folder (config.json, model.safetensors) or an llm.c "
                   "model file (gpt2_124M.bin)")
        ->required();
    app.add_option("--out", spec.out, "Checkpoint to write (step 0, fresh optimizer state)")->required();
    app.add_option("--vocab-dir", spec.vocab_dir, "Folder with GPT-2's encoder.json and vocab.bpe");
  }

  int run(Comm& comm) {
    restore_stop_signals();
    return print(import_command(spec, comm));
  }
};

struct Export {
  ExportConfig spec;

  void add(CLI::App& app) {
    app.add_option("--checkpoint", spec.checkpoint, "Checkpoint file")->required();
    app.add_option("--out", spec.out,
                   "Folder (hf: config.json, model.safetensors, tokenizer files) or file (llmc)")
        ->required();
    app.add_option("--format", spec.format,
                   "hf (Hugging Face GPT2LMHeadModel, from_pretrained reads it) or llmc (llm.c's "
                   "model file, version 3, fp32)");
  }

  int run(Comm& comm) {
    restore_stop_signals();
    return print(export_command(spec, comm));
  }
};

// Each subcommand parses as a top-level app of its own: CLI11 2.1 reads a
// --config file only for the top-level app, not for a subcommand.
template <class Command>
void add_options(CLI::App& app, Command& command) {
  app.option_defaults()->always_capture_default();
  add_config_option(app);
  command.add(app);
  refuse_empty_values(app);
}

// What a command checks once every option is read: defaults from the
// environment.
template <class Command>
void check_parsed(const Command& command) {
  if constexpr (requires { command.check_parsed(); }) command.check_parsed();
}

// A flag given an empty value (--json=): CLI11 reads it as true, before
// any validator could see it.
void refuse_empty_flag_values(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") return;  // positionals follow
    if (!arg.starts_with("--") || !arg.ends_with('=')) continue;
    const std::string name(arg.substr(0, arg.size() - 1));
    if (const CLI::Option* opt = app.get_option_no_throw(name); opt && opt->get_expected_max() == 0)
      throw CommandLineError(name + ": an empty value (a flag is given alone)");
  }
}

void parse(CLI::App& app, int argc, char** argv) {
  refuse_empty_flag_values(app, argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{app.help()};
  } catch (const CLI::Error& e) {
    throw CommandLineError(e.what());
  }
}

struct Subcommand {
  const char* name;
  const char* about;
  int (*run)(const Subcommand& self, int argc, char** argv, Comm& world);
};

template <class Command>
int run_command(const Subcommand& self, int argc, char** argv, Comm& world) {
  Command command;
  CLI::App app{self.about, std::string("cllm ") + self.name};
  add_options(app, command);
  collectively(world, [&] {
    parse(app, argc - 1, argv + 1);
    check_parsed(command);
  });
  return command.run(world);
}

constexpr Subcommand kSubcommands[] = {
    {"prepare", "Turn text files into an HDF5 token dataset", run_command<Prepare>},
    {"train", "Train a model on a text corpus", run_command<Train>},
    {"generate", "Sample text from a checkpoint", run_command<Generate>},
    {"bench", "Measure training throughput", run_command<Bench>},
    {"eval", "Mean loss and perplexity of a checkpoint over a whole split", run_command<Eval>},
    {"import", "Make a checkpoint of a GPT-2 model from Hugging Face or llm.c", run_command<Import>},
    {"export", "Write a checkpoint's model for Hugging Face or llm.c", run_command<Export>},
};

}  // namespace

int run_cli(int argc, char** argv, [[maybe_unused]] const MpiEnvironment& mpi) {
  // Every rank takes part in each agreement, whatever its arguments (MPMD
  // launches may give ranks different ones).
  Comm world = Comm::world();
  const std::string name = argc > 1 ? argv[1] : "";
  try {
    for (const Subcommand& s : kSubcommands)
      if (name == s.name) return s.run(s, argc, argv, world);
    // No or an unknown subcommand: the top-level app lists the subcommands.
    CLI::App app{"cllm: train GPT-style language models on CPU clusters (MPI + OpenMP)", "cllm"};
    app.require_subcommand(1);
    for (const Subcommand& s : kSubcommands)
      app.add_subcommand(s.name, std::string(s.about) + " (cllm " + s.name + " --help)");
    collectively(world, [&] {
      parse(app, argc, argv);
      throw CommandLineError("a subcommand is required: prepare, train, generate, eval, bench, import or export");
    });
    return kExitUsage;  // not reached: the agreement throws
  } catch (const CollectiveFailure& failure) {
    return report(world, failure, option_name);
  }
}

TrainConfig parse_train_options(std::vector<std::string> args) {
  Train train;
  static_assert(std::string_view(kSubcommands[1].name) == "train");
  CLI::App app{kSubcommands[1].about, "cllm train"};
  add_options(app, train);
  std::reverse(args.begin(), args.end());  // CLI11 takes the last argument first
  app.parse(args);
  check_parsed(train);
  const TrainRunConfig& s = train.step.settings;
  const TrainConfig cfg = s.resolved();
  cfg.validate(1);
  s.policy.validate();
  s.stall.validate();
  return cfg;
}

}  // namespace cllm
