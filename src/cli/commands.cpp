// The subcommands: each one's options, bound to the library's config
// structs, and its call to the library. An option's default is the value
// its struct starts with, shown in --help.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agreement.h"
#include "cli.h"
#include "cllm/app/benchmark.h"
#include "cllm/app/evaluation.h"
#include "cllm/app/generate_text.h"
#include "cllm/app/model_transfer.h"
#include "cllm/app/prepare.h"
#include "cllm/app/training_run.h"
#include "cllm/dist/comm.h"
#include "cllm/train/stop_signal.h"
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
  app.set_config("--config", "",
                 "Read options from a TOML file: one 'name = value' per option, the long name "
                 "without its leading dashes (micro-batch = 8); command-line options win")
      ->check(CLI::Validator(
          [key_kind](std::string& path) { return options_file_problem(path, key_kind); }, "",
          "config file"))
      ->trigger_on_parse();  // CLI11 opens the file before it would run validators
}

// The shape: a preset, and the options given over it.
struct ModelOptions {
  std::string preset = "small";
  std::optional<int> layers, heads, embd, seq_len;
  CLI::Option* preset_option = nullptr;

  void add(CLI::App& app) {
    preset_option = app.add_option("--preset", preset, "Model shape: small (4 layers, 4 heads, 256 wide, seq "
                                                       "128) or medium (6, 6, 384, seq 256)");
    app.add_option("--layers", layers, "Transformer blocks (overrides the preset)");
    app.add_option("--heads", heads, "Attention heads; must divide --embd");
    app.add_option("--embd", embd, "Model width C");
    app.add_option("--seq-len", seq_len, "Tokens per training window (context length)");
  }
  bool preset_given() const { return preset_option && preset_option->count() > 0; }
  // Throws SettingError for an unknown preset; TrainConfig::validate checks the shape.
  ModelConfig resolve() const {
    ModelConfig c = preset_config(preset);
    c.n_layer = layers.value_or(c.n_layer);
    c.n_head = heads.value_or(c.n_head);
    c.n_embd = embd.value_or(c.n_embd);
    c.seq_len = seq_len.value_or(c.seq_len);
    return c;
  }
};

// The option of a setting of train_settings.cpp, bound to its value in
// settings; help replaces the table's.
CLI::Option* add_setting(CLI::App& app, TrainRunConfig& settings, std::string_view name,
                         const char* help = nullptr) {
  const Setting& row = train_setting(name);
  return std::visit(
      [&](auto field) { return app.add_option(option_name(row.name), field(settings), help ? help : row.help); },
      row.field);
}

// An option whose value is one of choices' names (in any case), read as
// its enum value; the first choice is the default. Help shows "a|b"; an
// error says "must be a or b, not c".
template <typename Value>
void add_choice_option(CLI::App& app, const std::string& name, Value& target,
                       const std::vector<std::pair<std::string, Value>>& choices,
                       const std::string& help) {
  std::string alternatives, either;
  for (const auto& [key, value] : choices) {
    alternatives += (alternatives.empty() ? "" : "|") + key;
    either += (either.empty() ? "" : " or ") + key;
  }
  const CLI::Validator read_choice(
      [choices, either](std::string& text) -> std::string {
        for (const auto& [key, value] : choices)
          if (CLI::detail::to_lower(text) == key) {
            text = std::to_string(static_cast<int>(value));
            return "";
          }
        return "must be " + either + ", not " + text;
      },
      "");
  app.add_option(name, target, help)
      ->transform(read_choice)
      ->type_name(alternatives)
      ->default_str(choices.front().first);
}

void add_overlap_option(CLI::App& app, BatchConfig& batch) {
  add_choice_option(app, "--overlap", batch.overlap, {{"on", Overlap::on}, {"off", Overlap::off}},
                    "on: each layer's gradient allreduce starts as soon as backward is done with "
                    "it, behind the layers below; off: all of it after backward (the same "
                    "results, to measure what on hides)");
}

void add_recompute_option(CLI::App& app, BatchConfig& batch) {
  add_choice_option(app, "--recompute", batch.recompute,
                    {{"none", Recompute::none}, {"block", Recompute::block}},
                    "none: keep every block's activations for the backward pass; block: keep "
                    "each block's input and recompute the rest in backward (about a third more "
                    "compute, much less memory, the same results)");
}

void add_matmul_options(CLI::App& app, BatchConfig& batch) {
  using kernels::MatmulEngine, kernels::Precision;
  add_choice_option(app, "--matmul", batch.matmul.engine,
                    {{kernels::to_string(MatmulEngine::onednn), MatmulEngine::onednn},
                     {kernels::to_string(MatmulEngine::openblas), MatmulEngine::openblas}},
                    "Matrix engine: onednn (kernels chosen by CPU features) or openblas (sgemm, "
                    "kernels chosen by CPU model; fp32 only)");
  add_choice_option(app, "--precision", batch.matmul.precision,
                    {{kernels::to_string(Precision::fp32), Precision::fp32},
                     {kernels::to_string(Precision::bf16), Precision::bf16}},
                    "Inputs of the matrix products: fp32, or bf16 with fp32 accumulation "
                    "(weights, optimizer, norms, softmax and loss stay fp32)");
}

// Watching the run: its timeline, and the ranks that keep the others waiting.
void add_watch_options(CLI::App& app, std::string& trace, StallConfig& stall) {
  app.add_option("--trace", trace,
                 "Write a Chrome trace of every rank's and thread's work to FILE (open it in "
                 "Perfetto or chrome://tracing)")
      ->type_name("FILE");
  app.add_option("--stall-warn", stall.warn_s,
                 "Seconds a rank may wait in a collective before rank 0 names the ranks that "
                 "have not arrived (0: off)");
  app.add_option("--stall-abort", stall.abort_s,
                 "Seconds a rank may wait in a collective before every rank ends with exit "
                 "code 5, naming the missing ranks (0: off)");
}

// Validates the stall policy and watches comm's collectives with it; every rank agrees.
std::optional<int> watch_stalls(Comm& comm, const StallConfig& stall) {
  if (auto code = collectively_exit_code(comm, [&] { stall.validate(); })) return code;
  comm.watch_stalls(stall, option_name);
  return std::nullopt;
}

// The options train and bench share - the model, the batch, the step's
// engines and allreduce, the replica check, watching the run - around the
// command's own options, which own_options adds (in --help's middle).
struct StepOptions {
  ModelOptions model;
  TrainRunConfig settings;  // bench takes only the config and --check-every, and checks nothing
  StallConfig stall;
  CLI::Option* global_batch = nullptr;

  void add(CLI::App& app, const char* global_help, std::string& trace,
           const std::function<void()>& own_options) {
    BatchConfig& batch = settings.config.batch;
    model.add(app);
    batch.threads = omp_get_max_threads();
    add_setting(app, settings, "micro_batch");
    global_batch = add_setting(app, settings, "global_batch", global_help);
    add_setting(app, settings, "threads")->default_str("");
    own_options();
    add_recompute_option(app, batch);
    add_matmul_options(app, batch);
    add_setting(app, settings, "bucket_mb");
    add_overlap_option(app, batch);
    add_setting(app, settings, "progress_us")->default_str("");
    add_setting(app, settings, "check_every");
    add_watch_options(app, trace, stall);
  }
};

struct Train {
  static constexpr const char* kAbout = "Train a model on a text corpus";
  StepOptions step;

  void add(CLI::App& app) {
    step.add(app, train_setting("global_batch").help, step.settings.policy.trace, [&] {
      for (const Setting& row : train_settings())
        if (row.group == OptionGroup::run) add_setting(app, step.settings, row.name);
    });
  }

  TrainConfig config() const {
    const ModelOptions& model = step.model;
    TrainConfig c = step.settings.config;
    c.model = model.resolve();
    if (!step.settings.policy.init.empty() && (model.preset_given() || model.layers || model.heads || model.embd || model.seq_len))
      throw SettingError("{init} gives the model's shape: drop {preset}, {n_layer}, {n_head}, {n_embd} and {seq_len}");
    return c;
  }

  int run(Comm& comm) {
    install_stop_signal_handlers();
    TrainConfig c;
    if (auto code = collectively_exit_code(comm, [&] { c = config(); })) return *code;
    if (auto code = watch_stalls(comm, step.stall)) return *code;
    try {
      TrainingRun run(c, step.settings.policy, step.settings.data, comm, option_name);
      return run.run().exit_code();
    } catch (const CollectiveFailure& failure) {
      return report(comm, failure);
    }
  }
};

struct Bench {
  static constexpr const char* kAbout = "Measure training throughput";
  StepOptions step;
  std::optional<int> vocab;
  BenchmarkConfig bench;
  bool json = false;

  void add(CLI::App& app) {
    step.add(app, "Sequences per optimizer step [default: micro-batch x threads x ranks]",
             bench.trace, [&] {
      app.add_option("--steps", bench.steps, "Timed steps");
      app.add_option("--warmup-steps", bench.warmup_steps, "Untimed steps first");
      app.add_flag("--json", json, "Print one JSON object instead of a table");
      app.add_option("--vocab", vocab, "Vocabulary size of the benchmarked model [default: 256, "
                                       "the byte tokenizer's; 50257 is GPT-2's]");
      add_setting(app, step.settings, "seed", "Seed");
    });
    step.global_batch->default_str("");
  }

  int run(Comm& comm) {
    if (auto code = watch_stalls(comm, step.stall)) return *code;
    try {
      TrainConfig c = step.settings.config;
      if (auto code = collectively_exit_code(comm, [&] {
            c.model = step.model.resolve();
            c.model.vocab_size = vocab.value_or(c.model.vocab_size);
          }))
        return *code;
      if (!step.global_batch->count()) c.batch.global_batch = c.batch.micro_batch * c.batch.threads * comm.size();
      BenchmarkResult result = benchmark_training(c, bench, comm);
      result.preset = step.model.preset;
      if (comm.is_root()) std::fputs((json ? bench_json(result) : bench_table(result)).c_str(), stdout);
      return kExitOk;
    } catch (const CollectiveFailure& failure) {
      return report(comm, failure);
    }
  }
};

// prepare and generate work on rank 0; under mpirun the other ranks wait.
struct Prepare {
  static constexpr const char* kAbout = "Turn text files into an HDF5 token dataset";
  PrepareConfig spec;

  void add(CLI::App& app) {
    app.add_option("inputs", spec.inputs, "Text files (UTF-8), in order")->required()->default_str("");
    app.add_option("--out", spec.out, "HDF5 dataset to write (replaced atomically)");
    app.add_option("--tokenizer", spec.tokenizer, "byte (vocab 256) or gpt2-bpe (vocab 50257)");
    app.add_option("--vocab-dir", spec.vocab_dir,
                   "Folder with GPT-2's encoder.json and vocab.bpe (gpt2-bpe)");
    app.add_option("--val-fraction", spec.val_fraction,
                   "Tail of the tokens held out for validation, in [0, 0.5]");
  }

  int run(Comm& comm) {
    PrepareSummary done;
    if (auto code = collectively_exit_code(comm, [&] {
          spec.validate();  // on every rank: each one's own --out and inputs
          if (!comm.is_root()) return;
          done = prepare_dataset(spec, [](const PrepareProgress& p) {
            std::fprintf(stderr, "prepare: %.*s: %.0f of %.0f MB tokenized (%.0f s)\n",
                         static_cast<int>(p.input.size()), p.input.data(), p.bytes_done / 1e6,
                         p.bytes / 1e6, p.seconds);
          });
        }))
      return *code;
    if (comm.is_root())
      std::printf("prepare: %s: %zu bytes -> %zu train + %zu val tokens (%s, vocab %d) in %.2f s\n",
                  spec.out.c_str(), done.bytes, done.train_tokens, done.val_tokens,
                  done.tokenizer.c_str(), done.vocab_size, done.seconds);
    return kExitOk;
  }
};

struct Generate {
  static constexpr const char* kAbout = "Sample text from a checkpoint";
  GenerateConfig spec;

  void add(CLI::App& app) {
    app.add_option("--checkpoint", spec.checkpoint, "Checkpoint file (checkpoint-<step>.h5)")
        ->required();
    app.add_option("--prompt", spec.prompt, "Text to continue");
    app.add_option("--tokens", spec.sampling.tokens, "New tokens to generate");
    app.add_option("--temperature", spec.sampling.temperature, "Sampling temperature (> 0)");
    app.add_option("--top-k", spec.sampling.top_k, "Sample among the k likeliest tokens (0: all)");
    app.add_option("--seed", spec.sampling.seed, "Sampling seed");
  }

  int run(Comm& comm) {
    std::string text;
    if (auto code = collectively_exit_code(comm, [&] {
          spec.validate();
          if (comm.is_root()) text = generate_text(spec);
        }))
      return *code;
    if (comm.is_root()) {
      // Written by size, not with %s: byte-level text may hold NUL bytes.
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::printf("\n");
    }
    return kExitOk;
  }
};

struct Eval {
  static constexpr const char* kAbout = "Mean loss and perplexity of a checkpoint over a whole split";
  EvalConfig spec;
  StallConfig stall;
  bool json = false;

  void add(CLI::App& app) {
    spec.threads = omp_get_max_threads();
    app.add_option("--checkpoint", spec.checkpoint, "Checkpoint file")->required();
    app.add_option("--data", spec.data, "Dataset (cllm prepare's .h5, or a text file) in the "
                                        "checkpoint's tokenizer")->required();
    app.add_option("--split", spec.split, "val or train");
    app.add_option("--max-tokens", spec.max_tokens, "Score the first N predictions only (0: all)");
    app.add_option("--threads", spec.threads, "OpenMP threads [default: OMP_NUM_THREADS]")->default_str("");
    app.add_flag("--json", json, "Print one JSON object instead of a line");
  }

  int run(Comm& comm) {
    if (auto code = watch_stalls(comm, stall)) return *code;
    try {
      const SplitEvaluation e = evaluate_checkpoint(spec, comm);
      if (comm.is_root()) {
        const double tps = e.seconds > 0 ? static_cast<double>(e.tokens) / e.seconds : 0.0;
        if (json) {
          nlohmann::ordered_json j = {{"checkpoint", spec.checkpoint}, {"data", spec.data},
                                      {"split", spec.split},           {"tokens", e.tokens},
                                      {"windows", e.windows},          {"loss", e.loss},
                                      {"perplexity", std::exp(e.loss)}, {"seconds", e.seconds},
                                      {"tokens_per_s", tps},            {"ranks", comm.size()},
                                      {"threads", spec.threads}};
          std::printf("%s\n", j.dump().c_str());
        } else {
          std::printf("eval: %s on %s (%s): %llu tokens in %llu windows, loss %.6f, perplexity %.4f "
                      "(%.2f s, %.0f tokens/s)\n",
                      spec.checkpoint.c_str(), spec.data.c_str(), spec.split.c_str(),
                      static_cast<unsigned long long>(e.tokens), static_cast<unsigned long long>(e.windows),
                      e.loss, std::exp(e.loss), e.seconds, tps);
        }
      }
      return kExitOk;
    } catch (const CollectiveFailure& failure) {
      return report(comm, failure);
    }
  }
};

// import and export work on rank 0, as prepare does.
struct Import {
  static constexpr const char* kAbout = "Make a checkpoint of a GPT-2 model from Hugging Face or llm.c";
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
    ImportSummary done;
    if (auto code = collectively_exit_code(comm, [&] {
          spec.validate();
          if (comm.is_root()) done = import_model(spec);
        }))
      return *code;
    if (comm.is_root())
      std::printf("import: %s -> %s: %s model, %d layers, %d heads, %d wide, %d positions, vocabulary %d "
                  "(%.2f s)\n",
                  spec.source.c_str(), spec.out.c_str(), done.format.c_str(), done.model.n_layer,
                  done.model.n_head, done.model.n_embd, done.model.seq_len, done.model.vocab_size,
                  done.seconds);
    return kExitOk;
  }
};

struct Export {
  static constexpr const char* kAbout = "Write a checkpoint's model for Hugging Face or llm.c";
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
    if (auto code = collectively_exit_code(comm, [&] {
          spec.validate();
          if (comm.is_root()) export_model(spec);
        }))
      return *code;
    if (comm.is_root())
      std::printf("export: %s -> %s (%s)\n", spec.checkpoint.c_str(), spec.out.c_str(), spec.format.c_str());
    return kExitOk;
  }
};

// Each subcommand parses as a top-level app of its own: CLI11 2.1 reads a
// --config file only for the top-level app, not for a subcommand.
template <class Command>
void add_options(CLI::App& app, Command& command) {
  app.option_defaults()->always_capture_default();
  add_config_option(app);
  command.add(app);
}

void parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{app.help()};
  } catch (const CLI::CallForAllHelp&) {
    throw HelpRequested{app.help("", CLI::AppFormatMode::All)};
  }
}

template <class Command>
int run_command(int argc, char** argv, Comm& world) {
  Command command;
  CLI::App app{Command::kAbout, std::string("cllm ") + argv[1]};
  add_options(app, command);
  if (auto code = collectively_exit_code(world, [&] { parse(app, argc - 1, argv + 1); })) return *code;
  return command.run(world);
}

struct Subcommand {
  const char* name;
  const char* about;
  int (*run)(int argc, char** argv, Comm& world);
};
constexpr Subcommand kSubcommands[] = {
    {"prepare", Prepare::kAbout, run_command<Prepare>},
    {"train", Train::kAbout, run_command<Train>},
    {"generate", Generate::kAbout, run_command<Generate>},
    {"bench", Bench::kAbout, run_command<Bench>},
    {"eval", Eval::kAbout, run_command<Eval>},
    {"import", Import::kAbout, run_command<Import>},
    {"export", Export::kAbout, run_command<Export>},
};

}  // namespace

int run_cli(int argc, char** argv, [[maybe_unused]] const MpiEnvironment& mpi) {
  // Every rank takes part in each agreement, whatever its arguments (MPMD
  // launches may give ranks different ones).
  Comm world = Comm::world();
  const std::string name = argc > 1 ? argv[1] : "";
  for (const Subcommand& s : kSubcommands)
    if (name == s.name) return s.run(argc, argv, world);
  // No or an unknown subcommand: the top-level app lists the subcommands.
  CLI::App app{"cllm: train GPT-style language models on CPU clusters (MPI + OpenMP)", "cllm"};
  app.require_subcommand(1);
  for (const Subcommand& s : kSubcommands)
    app.add_subcommand(s.name, std::string(s.about) + " (cllm " + s.name + " --help)");
  return *collectively_exit_code(world, [&] {
    parse(app, argc, argv);
    throw std::invalid_argument("a subcommand is required: prepare, train, generate, eval, bench, import or export");
  });
}

TrainConfig parse_train_options(std::vector<std::string> args) {
  Train train;
  CLI::App app{Train::kAbout, "cllm train"};
  add_options(app, train);
  std::reverse(args.begin(), args.end());  // CLI11 takes the last argument first
  app.parse(args);
  const TrainConfig cfg = train.config();
  cfg.validate(1);
  train.step.settings.policy.validate();
  train.step.stall.validate();
  return cfg;
}

}  // namespace cllm
