// Reading what cllm writes as JSON: the records of a metrics.jsonl (one
// object per line), the "loss" fields as written (text, for bitwise
// comparisons), and numbers out of an object.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cllm::test {

// Every line of the file as a JSON object, keys in the order written.
// Throws std::runtime_error naming the file and line when a line is not
// one whole JSON object.
std::vector<nlohmann::ordered_json> read_metrics(const std::filesystem::path& metrics);

// The value of key in every record that has it as a number ("val_loss":
// the evaluation steps).
std::vector<double> metric_values(const std::filesystem::path& metrics, const std::string& key);

// The "loss" field of every record, as its text in the file: two runs with
// the same texts wrote bitwise the same losses.
std::vector<std::string> loss_texts(const std::filesystem::path& metrics);

// The number obj holds at key; nullopt when it has no key or no number there.
std::optional<double> number_at(const nlohmann::ordered_json& obj, const std::string& key);

}  // namespace cllm::test
