// A run's memory, reckoned from its settings. See cllm/train/memory_plan.h.
#include "cllm/train/memory_plan.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string_view>

#include "cllm/base/address_space.h"
#include "cllm/base/format.h"
#include "cllm/base/out_of_memory.h"
#include "cllm/model/gpt.h"
#include "cllm/model/model.h"

namespace cllm {

namespace {

std::string bytes_text(double b) {
  constexpr double kGiB = 1073741824.0;
  if (b >= 1024 * kGiB) return printf_string("%.1f TiB", b / (1024 * kGiB));
  if (b >= kGiB) return printf_string("%.1f GiB", b / kGiB);
  return printf_string("%.1f MiB", b / 1048576.0);
}

std::string count_text(double n) { return printf_string("%.0f", n); }

}  // namespace

std::vector<MemoryPart> training_memory(const TrainConfig& c, int ranks) {
  const ModelConfig& m = c.model;
  const BatchConfig& b = c.batch;
  const double params = gpt_parameter_floats(m);
  const bool bf16 = b.matmul.precision == kernels::Precision::bf16;
  // Parameters, gradient sum, two moments: 16 bytes each; bf16 adds 2.
  const double per_param = 4.0 * 4 + (bf16 ? 2 : 0);
  ModelConfig one_block = m, no_block = m;
  one_block.n_layer = 1, no_block.n_layer = 0;
  // A thread's context: its activations, one block's gradient and ln_f's.
  const double context = 4 * (GptActivations::floats(m, b.micro_batch, b.recompute) +
                              gpt_parameter_floats(one_block) - gpt_parameter_floats(no_block) +
                              2 * 16);
  // Trainer::Windows: inputs and targets of a rank's micro-batches, for a
  // step or an evaluation, whichever is more; twice (one read ahead).
  const double micro_per_rank = static_cast<double>(b.global_batch / std::max(b.micro_batch, 1)) / ranks;
  const double eval_per_rank = std::ceil(static_cast<double>(c.eval_batches) / ranks);
  const double windows = 2 * 2 * 4.0 * std::max(micro_per_rank, eval_per_rank) * b.micro_batch * m.seq_len;
  const std::string shape = "{n_layer} " + std::to_string(m.n_layer) + ", {n_embd} " +
                            std::to_string(m.n_embd) + ", {seq_len} " + std::to_string(m.seq_len) +
                            ", vocabulary " + std::to_string(m.vocab_size);
  return {
      {"the model: " + count_text(params) + " parameters, their gradient and AdamW's moments",
       shape, per_param * params},
      {"the threads' contexts (activations and one block's gradient each)",
       "{threads} " + std::to_string(b.threads) + ", {micro_batch} " + std::to_string(b.micro_batch) +
           ", " + shape,
       b.threads * context},
      {"the token windows of a step and of an evaluation (twice: one is read ahead)",
       "{global_batch} " + std::to_string(b.global_batch) + ", {eval_batches} " +
           std::to_string(c.eval_batches) + ", {seq_len} " + std::to_string(m.seq_len),
       windows},
  };
}

namespace {

// A number from a one-line file such as memory.max; nullopt for "max" or none.
std::optional<double> read_number(const std::string& path) {
  std::ifstream in(path);
  double value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

// The tightest memory.max of this process's cgroup (v2) and its parents,
// less that cgroup's memory.current.
std::optional<double> cgroup_room() {
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cgroups, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  if (path.empty()) return std::nullopt;
  std::optional<double> room;
  for (std::string at = path;; at = at.substr(0, at.rfind('/'))) {
    const std::string dir = "/sys/fs/cgroup" + (at == "/" ? std::string() : at);
    const auto max = read_number(dir + "/memory.max");
    const auto current = read_number(dir + "/memory.current");
    if (max && current) room = std::min(room.value_or(*max), *max - std::min(*max, *current));
    if (at.empty() || at == "/") break;
  }
  return room;
}

}  // namespace

std::optional<MemoryLimit> memory_limit() {
  std::optional<MemoryLimit> limit;
  const auto consider = [&](double bytes, const char* name) {
    if (!limit || bytes < limit->bytes) limit = MemoryLimit{bytes, name};
  };
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  if (const long pages = sysconf(_SC_PHYS_PAGES); pages > 0)
    consider(static_cast<double>(pages) * page, "this machine's physical memory");
  if (const auto room = cgroup_room()) consider(*room, "the cgroup's memory limit (memory.max: Slurm's --mem)");
  if (const auto left = address_space_left())
    consider(static_cast<double>(*left), "the address-space limit (ulimit -v)");
  return limit;
}

void check_memory(const std::vector<MemoryPart>& parts, const std::optional<MemoryLimit>& limit) {
  double total = 0;
  for (const MemoryPart& part : parts) total += part.bytes;
  if (!limit || total <= limit->bytes) return;
  std::vector<MemoryPart> largest = parts;
  std::sort(largest.begin(), largest.end(), [](const auto& a, const auto& b) { return a.bytes > b.bytes; });
  std::string why;
  for (const MemoryPart& part : largest) {
    if (part.bytes < 0.01 * total) break;  // the settings that matter
    why += (why.empty() ? "" : "; ") + bytes_text(part.bytes) + " for " + part.what + " (" + part.settings + ")";
  }
  throw SettingsOutOfMemory("out of memory: these settings need at least " + bytes_text(total) + ", more than " +
                            limit->name + " allows (" + bytes_text(limit->bytes) + "): " + why);
}

}  // namespace cllm
