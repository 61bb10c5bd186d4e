#include "cllm/train/train_settings.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <type_traits>

#include "cllm/base/setting_error.h"
#include "cllm/model/model_config.h"

namespace cllm {

namespace {

// Where a row's value lives: FIELD(config.optim.lr).
#define FIELD(path) +[](TrainRunConfig& s) -> auto& { return s.path; }

constexpr auto kModel = OptionGroup::model, kBatch = OptionGroup::batch, kRun = OptionGroup::run,
               kStep = OptionGroup::step, kWatch = OptionGroup::watch;
constexpr auto kPositive = ValueRange::positive, kNotNegative = ValueRange::not_negative;
constexpr auto kMustMatch = OnResume::must_match, kMayChange = OnResume::may_change,
               kNotRecorded = OnResume::not_recorded;

constexpr auto kAny = ValueRange::any;

// The names as the command line takes them and checkpoints record them (the
// matmul's as kernels::to_string gives them).
template <typename Enum>
constexpr Choice choice(const char* name, Enum value) {
  return {name, static_cast<int>(value)};
}
using kernels::MatmulEngine, kernels::Precision;
constexpr Choice kRecompute[] = {choice("none", Recompute::none), choice("block", Recompute::block)};
constexpr Choice kMatmul[] = {choice("onednn", MatmulEngine::onednn), choice("openblas", MatmulEngine::openblas)};
constexpr Choice kPrecision[] = {choice("fp32", Precision::fp32), choice("bf16", Precision::bf16)};
constexpr Choice kOverlap[] = {choice("on", Overlap::on), choice("off", Overlap::off)};

// clang-format off
const Setting kSettings[] = {
  {"preset", "Model shape: small (4 layers, 4 heads, 256 wide, seq 128) or medium (6, 6, 384, seq 256)",
   FIELD(shape.preset), kAny, kNotRecorded, kModel, false, {}, "small"},
  {"n_layer", "Transformer blocks (overrides the preset)", FIELD(shape.n_layer), kAny, kNotRecorded, kModel},
  {"n_head", "Attention heads; must divide --embd", FIELD(shape.n_head), kAny, kNotRecorded, kModel},
  {"n_embd", "Model width C", FIELD(shape.n_embd), kAny, kNotRecorded, kModel},
  {"seq_len", "Tokens per training window (context length)", FIELD(shape.seq_len), kAny, kNotRecorded,
   kModel},
  {"micro_batch", "Sequences per micro-batch (one thread's unit)",
   FIELD(config.batch.micro_batch), kPositive, kMustMatch, kBatch, true},
  {"global_batch", "Sequences per optimizer step, over all ranks; a multiple of ranks x --micro-batch",
   FIELD(config.batch.global_batch), kPositive, kMustMatch, kBatch, true},
  {"threads", "OpenMP threads [default: OMP_NUM_THREADS]",
   FIELD(config.batch.threads), kPositive, kNotRecorded, kBatch, true, {}, ""},
  {"data", "Training data: an HDF5 dataset from cllm prepare (.h5, .hdf5), or a text file "
           "(byte-level tokens)", FIELD(data.path)},
  {"val_fraction", "Tail of a text file held out for validation, in (0, 0.5] (datasets carry "
                   "their own split)", FIELD(data.val_fraction)},  // DataConfig::validate checks it
  {"out", "Output folder: checkpoints and metrics.jsonl", FIELD(policy.out)},
  {"checkpoint_every", "Steps between checkpoints (0: only at the end); one is always written at "
                       "the end and at --stop-at",
   FIELD(policy.checkpoint_every), kNotNegative, kMayChange},
  {"keep", "Newest checkpoints kept in --out (0: all)", FIELD(policy.keep), kNotNegative, kMayChange},
  {"resume", "auto: continue from the newest valid checkpoint in --out, if any; none: start afresh "
             "(refused if --out holds checkpoints); or a checkpoint file", FIELD(policy.resume)},
  {"init", "Start from this checkpoint's weights (cllm import's, or another run's): the model's "
           "shape is its, the optimizer starts afresh at step 0 with this run's schedule; a run "
           "with checkpoints of its own in --out resumes them instead", FIELD(policy.init)},
  {"stop_at", "End after this step with a checkpoint, as an interruption would; the learning-rate "
              "schedule still follows --steps (0: off)", FIELD(policy.stop_at), kNotNegative},
  {"steps", "Optimizer steps", FIELD(config.steps), kPositive, kMayChange, kRun, true},
  {"lr", "Peak learning rate", FIELD(config.optim.lr), kPositive, kMayChange, kRun, true},
  {"min_lr_ratio", "Cosine decay ends at lr x this ratio",
   FIELD(config.optim.min_lr_ratio), ValueRange::unit_interval, kMayChange, kRun, true},
  {"warmup", "Linear warm-up steps", FIELD(config.optim.warmup_steps), kNotNegative, kMayChange,
   kRun, true},
  {"weight_decay", "AdamW weight decay (matrices and embeddings only)",
   FIELD(config.optim.weight_decay), kNotNegative, kMayChange, kRun, true},
  {"grad_clip", "Global gradient-norm clip (0: off)", FIELD(config.optim.grad_clip), kNotNegative,
   kMayChange, kRun, true},
  {"seed", "Seed of initialisation and data sampling", FIELD(config.seed), kAny, kMustMatch,
   kRun, true},
  {"log_every", "Steps between log lines", FIELD(policy.log_every), kPositive, kMayChange},
  {"eval_every", "Steps between validation losses (0: end only)", FIELD(policy.eval_every),
   kNotNegative, kMayChange},
  {"eval_batches", "Micro-batches per validation loss", FIELD(config.eval_batches), kPositive,
   kMayChange, kRun, true},
  {"max_bad_steps", "Consecutive non-finite steps (skipped) before the run stops",
   FIELD(policy.max_bad_steps), kPositive},
  {"sample_tokens", "Text sampled at the end (0: none)", FIELD(policy.sample_tokens),
   kNotNegative},
  {"recompute", "none: keep every block's activations for the backward pass; block: keep each "
                "block's input and recompute the rest in backward (about a third more compute, "
                "much less memory, the same results)",
   FIELD(config.batch.recompute), kAny, kNotRecorded, kStep, true, kRecompute},
  {"matmul", "Matrix engine: onednn (kernels chosen by CPU features) or openblas (sgemm, kernels "
             "chosen by CPU model; fp32 only)",
   FIELD(config.batch.matmul.engine), kAny, kMayChange, kStep, true, kMatmul},
  {"precision", "Inputs of the matrix products: fp32, or bf16 with fp32 accumulation (weights, "
                "optimizer, norms, softmax and loss stay fp32)",
   FIELD(config.batch.matmul.precision), kAny, kMayChange, kStep, true, kPrecision},
  {"bucket_mb", "Gradient allreduce bucket (MiB): the most one MPI_Iallreduce sends",
   FIELD(config.batch.bucket_mb), kPositive, kNotRecorded, kStep, true},
  {"overlap", "on: each layer's gradient allreduce (a block's MLP, then its attention) starts as "
              "soon as backward is done with it, behind the layers below; off: all of it after "
              "backward (the same results, to measure what on hides)",
   FIELD(config.batch.overlap), kAny, kNotRecorded, kStep, true, kOverlap},
  {"progress_us", "With --overlap on and several ranks: microseconds between a progress thread's "
                  "tests of the allreduces in flight, which Open MPI moves only inside MPI calls "
                  "(0: no thread; the main thread tests between layers) [default: 1000 when the "
                  "ranks span nodes, 0 on one node, where messages are memory copies]",
   FIELD(config.batch.progress_us), kAny, kNotRecorded, kStep, true, {}, ""},  // BatchConfig::validate
  {"check_every", "Steps between cross-rank parameter checksums (0: at the end only)",
   FIELD(policy.check_every), kNotNegative, kMayChange, kStep},
  {"trace", "Write a Chrome trace of every rank's and thread's work to FILE (open it in Perfetto or "
            "chrome://tracing); an existing trace there is kept as FILE.1 (or the next free "
            "FILE.N); any other existing file, the data, and names in --out other than *.json are "
            "refused", FIELD(policy.trace), kAny, kNotRecorded, kWatch},
  {"trace_max_mb", "Size bound of the --trace file in MiB: tracing stops there with a warning, "
                   "the file whole", FIELD(policy.trace_max_mb), kPositive, kNotRecorded, kWatch},
  // StallConfig::validate checks these two.
  {"stall_warn", "Seconds a rank may wait in a collective before rank 0 names the ranks that have "
                 "not arrived (0: off)", FIELD(stall.warn_s), kAny, kNotRecorded, kWatch},
  {"stall_abort", "Seconds a rank may wait in a collective before every rank ends with exit code 5, "
                  "naming the missing ranks (0: off)", FIELD(stall.abort_s), kAny, kNotRecorded, kWatch},
};
// clang-format on
#undef FIELD

bool in_range(double v, ValueRange range) {
  switch (range) {
    case ValueRange::any: return true;
    case ValueRange::positive: return std::isfinite(v) && v > 0;
    case ValueRange::not_negative: return v >= 0;
    case ValueRange::unit_interval: return v >= 0 && v <= 1;
  }
  return true;
}

const char* range_text(ValueRange range) {
  switch (range) {
    case ValueRange::any: break;
    case ValueRange::positive: return "must be positive";
    case ValueRange::not_negative: return "must not be negative";
    case ValueRange::unit_interval: return "must be in [0, 1]";
  }
  return "";
}

std::string choice_name(std::span<const Choice> choices, int value) {
  for (const Choice& c : choices)
    if (c.value == value) return c.name;
  throw std::logic_error("a choice without a name");
}

}  // namespace

std::span<const Setting> train_settings() { return kSettings; }

const Setting& train_setting(std::string_view name) {
  for (const Setting& s : kSettings)
    if (name == s.name) return s;
  throw std::logic_error("no training setting " + std::string(name));
}

std::string option_name(std::string_view setting) {
  static constexpr std::pair<std::string_view, std::string_view> kNamedOtherwise[] = {
      {"n_layer", "--layers"},
      {"n_head", "--heads"},
      {"n_embd", "--embd"},
      {"vocab_size", "vocabulary size"},  // the data's, not an option
  };
  for (const auto& [name, option] : kNamedOtherwise)
    if (name == setting) return std::string(option);
  std::string option = "--" + std::string(setting);
  std::replace(option.begin(), option.end(), '_', '-');
  return option;
}

std::string Setting::choice_names(const char* separator) const {
  std::string names;
  for (const Choice& c : choices) names.append(names.empty() ? "" : separator).append(c.name);
  return names;
}

std::optional<int> Setting::choice_value(const std::string& name) const {
  for (const Choice& c : choices)
    if (std::equal(name.begin(), name.end(), c.name, c.name + std::strlen(c.name),
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
      return c.value;
  return std::nullopt;
}

SettingValue Setting::value(const TrainRunConfig& settings) const {
  auto& s = const_cast<TrainRunConfig&>(settings);  // the accessors are only read here
  return std::visit(
      [&](auto read) -> SettingValue {
        const auto& v = read(s);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T>) return static_cast<std::int64_t>(v);
        else if constexpr (std::is_floating_point_v<T>) return static_cast<double>(v);
        else if constexpr (std::is_same_v<T, std::string>) return v;
        else if constexpr (std::is_enum_v<T>) return choice_name(choices, static_cast<int>(v));
        else if constexpr (std::is_same_v<T, std::optional<std::string>>) return v.value_or("");
        else if constexpr (std::is_same_v<T, std::optional<int>>) return std::int64_t{v.value_or(0)};
        else return v.value_or(0.0);
      },
      field);
}

void check_ranges(const TrainRunConfig& settings, bool of_config) {
  for (const Setting& row : kSettings) {
    if (row.of_config != of_config || row.range == ValueRange::any) continue;
    const SettingValue value = row.value(settings);
    const auto* i = std::get_if<std::int64_t>(&value);
    const auto* d = std::get_if<double>(&value);
    const double v = i ? static_cast<double>(*i) : d ? *d : 0;
    if (in_range(v, row.range)) continue;
    throw SettingError(std::string("{").append(row.name).append("} ").append(range_text(row.range)));
  }
}

void RunConfig::validate() const {
  TrainRunConfig settings;
  settings.policy = *this;
  check_ranges(settings, false);
}

ModelConfig ShapeConfig::resolve() const {
  ModelConfig c = preset_config(preset_name());
  c.n_layer = n_layer.value_or(c.n_layer);
  c.n_head = n_head.value_or(c.n_head);
  c.n_embd = n_embd.value_or(c.n_embd);
  c.seq_len = seq_len.value_or(c.seq_len);
  return c;
}

TrainConfig TrainRunConfig::resolved() const {
  TrainConfig c = config;
  c.model = shape.resolve();
  if (!policy.init.empty() && shape.given())
    throw SettingError("{init} gives the model's shape: drop {preset}, {n_layer}, {n_head}, {n_embd} and {seq_len}");
  return c;
}

}  // namespace cllm
