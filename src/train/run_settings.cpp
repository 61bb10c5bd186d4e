#include "cllm/train/run_settings.h"

#include <charconv>

#include "cllm/base/setting_error.h"

namespace cllm {

namespace {

// Each recorded setting, and whether a resume may change it: the data's
// identity and the model's shape, which have no row in train_settings.cpp,
// then the table's recorded rows.
struct SettingRule {
  std::string attribute;
  bool may_change;
};
const std::vector<SettingRule>& rules() {
  static const std::vector<SettingRule> all = [] {
    std::vector<SettingRule> r = {{"data_identity", false}, {"vocab_size", false}, {"n_layer", false},
                                  {"n_head", false},        {"n_embd", false},     {"seq_len", false}};
    for (const Setting& row : train_settings())
      if (row.on_resume != OnResume::not_recorded)
        r.push_back({row.name, row.on_resume == OnResume::may_change});
    return r;
  }();
  return all;
}

// The table's recorded rows of one part (of_config or not), as values.
void add_rows(const TrainRunConfig& settings, bool of_config, RunSettings& out) {
  for (const Setting& row : train_settings())
    if (row.on_resume != OnResume::not_recorded && row.of_config == of_config)
      out[row.name] = row.value(settings);
}

}  // namespace

RunSettings config_settings(const TrainConfig& c) {
  const auto i64 = [](auto v) { return SettingValue{static_cast<std::int64_t>(v)}; };
  RunSettings s = {
      {"vocab_size", i64(c.model.vocab_size)}, {"seq_len", i64(c.model.seq_len)},
      {"n_layer", i64(c.model.n_layer)},       {"n_head", i64(c.model.n_head)},
      {"n_embd", i64(c.model.n_embd)},
  };
  TrainRunConfig settings;
  settings.config = c;
  add_rows(settings, true, s);
  return s;
}

RunSettings recorded_settings(const TrainRunConfig& settings) {
  RunSettings s = config_settings(settings.config);
  add_rows(settings, false, s);
  s["data"] = settings.data.path;
  return s;
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
  for (const SettingRule& rule : rules()) names.push_back(rule.attribute);
  return names;
}

SettingsComparison compare_settings(const RunSettings& recorded, const RunSettings& now) {
  SettingsComparison result;
  for (const SettingRule& rule : rules()) {
    const auto then_it = recorded.find(rule.attribute);
    const auto now_it = now.find(rule.attribute);
    if (then_it == recorded.end() || now_it == now.end()) continue;
    const std::string then = setting_text(then_it->second), current = setting_text(now_it->second);
    if (then == current) continue;
    // The data is named by its path; its identity (a hash) says why.
    const bool data = rule.attribute == "data_identity";
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
