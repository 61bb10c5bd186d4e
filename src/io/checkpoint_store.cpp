#include "cllm/io/checkpoint_store.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>

#include "cllm/io/durable_file.h"

namespace cllm {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "checkpoint-", kSuffix = ".h5";

// A checkpoint that cannot be loaded is renamed out of the way, so that it
// never outranks (and, through --keep, displaces) the checkpoints written
// after it, and is kept for a look.
void set_aside(const fs::path& path, const std::string& why) {
  const fs::path bad = fs::path(path.string() + ".bad");
  std::error_code ec;
  fs::rename(path, bad, ec);
  if (ec)
    std::fprintf(stderr, "cllm: warning: skipping checkpoint %s (cannot rename it to %s: %s)\n",
                 why.c_str(), bad.filename().c_str(), ec.message().c_str());
  else
    std::fprintf(stderr, "cllm: warning: skipping checkpoint %s; renamed to %s\n", why.c_str(),
                 bad.c_str());
}

}  // namespace

fs::path CheckpointStore::path(std::int64_t step) const {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%08lld", static_cast<long long>(step));
  std::string name(kPrefix);  // appended piecewise: GCC 12 warns falsely on a + b + c
  name += digits;
  name += kSuffix;
  return folder_ / name;
}

std::optional<std::int64_t> CheckpointStore::step_of(std::string_view name) {
  if (name.size() <= kPrefix.size() + kSuffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(kSuffix))
    return std::nullopt;
  const std::string_view digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  // 18 digits at most: every such number fits in an int64.
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](unsigned char ch) {
        return std::isdigit(ch);
      }))
    return std::nullopt;
  return std::stoll(std::string(digits));
}

std::vector<CheckpointFile> CheckpointStore::list() const {
  std::vector<CheckpointFile> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec))
    if (const auto step = step_of(entry.path().filename().string());
        step && entry.is_regular_file(ec))
      found.push_back({*step, entry.path()});
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.step > b.step; });
  return found;
}

std::optional<CheckpointFile> CheckpointStore::load_newest(
    const std::function<void(const CheckpointFile&)>& load) {
  for (const CheckpointFile& f : list()) {
    try {
      load(f);
      return f;
    } catch (const std::invalid_argument&) {
      throw;  // another run's checkpoint: not ours to set aside
    } catch (const std::exception& e) {
      set_aside(f.path, e.what());
    }
  }
  return std::nullopt;
}

void CheckpointStore::prune(int keep, const fs::path& just_written) {
  // Temporaries of writes that were killed: their checkpoints never existed
  // (the run's lock on the folder means no other run is writing one).
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec)) {
    const std::string name = entry.path().filename().string();
    const std::optional<std::string_view> would_be = final_name(name);
    if (would_be && step_of(*would_be)) fs::remove(entry.path(), ec);
  }
  if (keep <= 0) return;
  // The checkpoint just written counts as one of keep and is never deleted,
  // whatever the step numbers of older files say.
  int kept = 1;
  for (const CheckpointFile& f : list()) {
    if (f.path.filename() == just_written.filename()) continue;
    if (kept < keep) {
      ++kept;
    } else {
      fs::remove(f.path, ec);
    }
  }
}

}  // namespace cllm
