#include "support/metrics.h"

#include <stdexcept>

#include "support/text.h"

namespace cllm::test {

namespace {

// nlohmann's parser hands a SAX handler each number's text as written, which
// a parsed value no longer has: this one keeps the text of the number at
// `key` of the top-level object.
class NumberTextAt : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit NumberTextAt(std::string key) : key_(std::move(key)) {}
  std::optional<std::string> text;

  bool number_float(number_float_t, const string_t& s) override { return found(s); }
  bool number_integer(number_integer_t v) override { return found(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return found(std::to_string(v)); }
  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool key(string_t& k) override {
    at_key_ = depth_ == 1 && k == key_;
    return true;
  }
  bool start_object(std::size_t) override { return start(); }
  bool start_array(std::size_t) override { return start(); }
  bool end_object() override { return end(); }
  bool end_array() override { return end(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool found(const std::string& s) {
    if (at_key_ && depth_ == 1) text = s;
    return value();
  }
  bool value() {
    if (depth_ == 1) at_key_ = false;
    return true;
  }
  bool start() {
    ++depth_;
    return true;
  }
  bool end() {
    --depth_;
    return value();
  }
  std::string key_;
  int depth_ = 0;
  bool at_key_ = false;
};

}  // namespace

std::vector<nlohmann::ordered_json> read_metrics(const std::filesystem::path& metrics) {
  std::vector<nlohmann::ordered_json> records;
  for (const std::string& line : split_lines(read_file(metrics))) {
    auto record = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object())
      throw std::runtime_error(metrics.string() + ":" + std::to_string(records.size() + 1) +
                               ": not one JSON object: " + line);
    records.push_back(std::move(record));
  }
  return records;
}

std::vector<double> metric_values(const std::filesystem::path& metrics, const std::string& key) {
  std::vector<double> values;
  for (const auto& record : read_metrics(metrics))
    if (const auto v = number_at(record, key)) values.push_back(*v);
  return values;
}

std::vector<std::string> loss_texts(const std::filesystem::path& metrics) {
  std::vector<std::string> texts;
  for (const std::string& line : split_lines(read_file(metrics))) {
    NumberTextAt loss("loss");
    if (nlohmann::json::sax_parse(line, &loss) && loss.text) texts.push_back(*loss.text);
  }
  return texts;
}

std::optional<double> number_at(const nlohmann::ordered_json& obj, const std::string& key) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

}  // namespace cllm::test
