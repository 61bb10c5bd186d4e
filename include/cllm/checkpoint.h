// Checkpoints: HDF5 files with DESIGN.md's schema, so h5ls, h5dump and a few
// lines of h5py read them.
//   /model/<name>                 float32, nanoGPT state_dict names and shapes
//   /optimizer/m/<name>, v/<name> AdamW moments; /optimizer attributes hold the
//                                 hyper-parameters and the step count
//   /state                        attributes: next step, tokens seen, seed,
//                                 consecutive skipped steps, sampler
//   /tokenizer/<file>             the tokenizer's vocabulary (gpt2-bpe)
//   root attributes               format "cllm-checkpoint", format_version,
//                                 step, tokens_seen, the model's shape, the
//                                 training options used
// Every dataset carries the Fletcher-32 filter, so a flipped bit fails the
// read. Files are written under a temporary name and renamed (durable_file.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "cllm/config.h"
#include "cllm/model.h"
#include "cllm/optimizer.h"
#include "cllm/run_settings.h"
#include "cllm/tokenizer_spec.h"

namespace cllm {

inline constexpr const char* kCheckpointFormat = "cllm-checkpoint";
inline constexpr std::int64_t kCheckpointFormatVersion = 1;

// Where a run stands between steps: with the parameters and moments, all a
// bitwise-exact resume needs (the sampler is a pure function of the step).
struct TrainingState {
  std::int64_t step = 0;         // steps done; the next step is this 0-based index
  std::int64_t tokens_seen = 0;
  int bad_steps_in_a_row = 0;    // skipped non-finite steps before this point
};

struct CheckpointContents {
  TrainingState state;
  ModelConfig model;
  TokenizerSpec tokenizer;
  RunSettings settings;  // the root attributes: model shape and the run's options
};

// A readable checkpoint of another model shape: an error, never a file to
// skip (a run must not silently start afresh beside another run's files).
struct CheckpointMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Writes a checkpoint of the model and optimizer to path, atomically. One
// rank writes (the replicas are identical). Throws std::runtime_error naming
// the file; a failure leaves no file at path and removes the temporary one.
// The root attributes record config's settings (run_settings.h) and run's,
// the options that TrainConfig does not hold (data, cadences).
void write_checkpoint(const std::filesystem::path& path, const Model& model,
                      const AdamW& optimizer, const TrainConfig& config,
                      const TrainingState& state, const TokenizerSpec& tokenizer,
                      const RunSettings& run);

// The model shape and tokenizer recorded in a checkpoint (no tensors read).
CheckpointContents read_checkpoint_header(const std::filesystem::path& path);

// Reads every tensor into model (and the moments into optimizer, when given),
// after checking the format, the version and each tensor's shape against the
// model's. Throws CheckpointMismatch naming the file and the tensor whose
// shape differs, std::runtime_error naming the file for anything else (not
// HDF5, truncated, a failed checksum); on failure model and optimizer are
// unchanged.
CheckpointContents read_checkpoint(const std::filesystem::path& path, Model& model,
                                   AdamW* optimizer);

// Checkpoints of a run live in its --out folder as checkpoint-<step>.h5.
std::filesystem::path checkpoint_path(const std::filesystem::path& folder, std::int64_t step);
struct CheckpointFile {
  std::int64_t step;
  std::filesystem::path path;
};
// Finished checkpoint files in folder (temporary ones excluded), newest first.
std::vector<CheckpointFile> list_checkpoints(const std::filesystem::path& folder);
// Keeps just_written and the newest keep - 1 other checkpoints (keep <= 0:
// keeps all), and deletes the temporary files of writes that were killed.
// Call after writing just_written.
void prune_checkpoints(const std::filesystem::path& folder, int keep,
                       const std::filesystem::path& just_written);

}  // namespace cllm
