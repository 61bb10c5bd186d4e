// The folder of a run's checkpoints, and the one owner of it (as LBANN's
// checkpoint callback owns its directory): how a checkpoint file is named
// and its step read back from the name, which files are checkpoints
// (newest first), which one a run continues from, and which ones --keep
// deletes. Files only: what a checkpoint holds is checkpoint.h's business,
// and loading one is the caller's, so the store knows nothing of models.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace cllm {

struct CheckpointFile {
  std::int64_t step;  // as its name says
  std::filesystem::path path;
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::filesystem::path folder) : folder_(std::move(folder)) {}

  const std::filesystem::path& folder() const { return folder_; }

  // folder/checkpoint-<step, 8 digits or more>.h5
  std::filesystem::path path(std::int64_t step) const;
  // The step a file name (no folder) says: checkpoint-<digits>.h5; nullopt
  // for any other name.
  static std::optional<std::int64_t> step_of(std::string_view name);

  // Finished checkpoint files (temporary ones excluded), newest first.
  std::vector<CheckpointFile> list() const;

  // Loads the newest checkpoint that loads, as --resume auto does: load is
  // called on each file, newest first, until one returns. One that throws
  // is renamed <name>.bad with a warning on stderr naming it and why, so
  // that it never outranks (or, through --keep, displaces) the checkpoints
  // written after it, and the next is tried; std::invalid_argument (the
  // caller's "not this run's checkpoint") propagates untouched and sets
  // nothing aside. Returns the file that loaded; nullopt when none did.
  std::optional<CheckpointFile> load_newest(
      const std::function<void(const CheckpointFile&)>& load);

  // Keeps just_written and the newest keep - 1 other checkpoints (keep <= 0:
  // keeps all), and deletes the temporary files of checkpoint writes that
  // were killed. Call after writing just_written. .bad files and other
  // names are never touched.
  void prune(int keep, const std::filesystem::path& just_written);

 private:
  std::filesystem::path folder_;
};

}  // namespace cllm
