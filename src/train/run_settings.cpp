#include "cllm/train/run_settings.h"

#include <charconv>

#include "cllm/base/setting_error.h"

namespace cllm {

namespace {

// Each recorded setting, and whether a resume may change it. The data and
// the model's shape make the parameters what they are; the batch and the
// seed make the step's windows and sums what they are: a resume that changed
// them would continue another run.
struct SettingRule {
  const char* attribute;
  bool may_change;
};
constexpr SettingRule kRules[] = {
    {"data_identity", false}, {"vocab_size", false},      {"n_layer", false},
    {"n_head", false},        {"n_embd", false},          {"seq_len", false},
    {"micro_batch", false},   {"global_batch", false},    {"seed", false},
    {"steps", true},          {"lr", true},               {"min_lr_ratio", true},
    {"warmup", true},         {"weight_decay", true},     {"grad_clip", true},
    {"checkpoint_every", true}, {"keep", true},           {"log_every", true},
    {"eval_every", true},     {"eval_batches", true},     {"check_every", true},
    {"precision", true},      {"matmul", true},
};

}  // namespace

RunSettings config_settings(const TrainConfig& c) {
  const auto i64 = [](auto v) { return SettingValue{static_cast<std::int64_t>(v)}; };
  const auto real = [](float v) { return SettingValue{static_cast<double>(v)}; };
  return {
      {"vocab_size", i64(c.model.vocab_size)}, {"seq_len", i64(c.model.seq_len)},
      {"n_layer", i64(c.model.n_layer)},       {"n_head", i64(c.model.n_head)},
      {"n_embd", i64(c.model.n_embd)},         {"steps", i64(c.steps)},
      {"micro_batch", i64(c.batch.micro_batch)}, {"global_batch", i64(c.batch.global_batch)},
      {"seed", i64(c.seed)},                   {"lr", real(c.optim.lr)},
      {"min_lr_ratio", real(c.optim.min_lr_ratio)}, {"warmup", i64(c.optim.warmup_steps)},
      {"weight_decay", real(c.optim.weight_decay)}, {"grad_clip", real(c.optim.grad_clip)},
      {"eval_batches", i64(c.eval_batches)},
      {"precision", SettingValue{std::string(kernels::to_string(c.batch.matmul.precision))}},
      {"matmul", SettingValue{std::string(kernels::to_string(c.batch.matmul.engine))}},
  };
}

std::string setting_text(const SettingValue& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) {
    // The shortest text that reads back as the same value: "0.003" for the
    // double of the float 0.003f that --lr holds.
    char text[64];
    const auto f = static_cast<float>(*d);
    const auto end = static_cast<double>(f) == *d ? std::to_chars(text, text + sizeof text, f).ptr
                                                  : std::to_chars(text, text + sizeof text, *d).ptr;
    return std::string(text, end);
  }
  return std::get<std::string>(v);
}

std::vector<std::string> compared_setting_names() {
  std::vector<std::string> names = {"data"};
  for (const SettingRule& rule : kRules) names.push_back(rule.attribute);
  return names;
}

SettingsComparison compare_settings(const RunSettings& recorded, const RunSettings& now) {
  SettingsComparison result;
  for (const SettingRule& rule : kRules) {
    const auto then_it = recorded.find(rule.attribute);
    const auto now_it = now.find(rule.attribute);
    if (then_it == recorded.end() || now_it == now.end()) continue;
    const std::string then = setting_text(then_it->second), current = setting_text(now_it->second);
    if (then == current) continue;
    // The data is named by its path; its identity (a hash) says why.
    const bool data = rule.attribute == std::string("data_identity");
    const std::string name = std::string("{").append(data ? "data" : rule.attribute).append("} ");
    if (rule.may_change) {
      result.changed.push_back(name + SettingError::literal(then) + " -> " +
                               SettingError::literal(current));
    } else {
      const auto shown = [&](const RunSettings& s, const std::string& fallback) {
        const auto path = s.find("data");
        return SettingError::literal(data && path != s.end() ? setting_text(path->second) : fallback);
      };
      std::string line = name + shown(recorded, then) + " (checkpoint) vs " + shown(now, current) +
                         " (now)";
      if (shown(recorded, then) == shown(now, current)) line += ", whose contents changed";
      result.refused.push_back(line);
    }
  }
  return result;
}

}  // namespace cllm
