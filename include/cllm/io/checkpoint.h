// Checkpoints: HDF5 files with DESIGN.md's schema, so h5ls, h5dump and a few
// lines of h5py read them.
//   /model/<name>                 float32, nanoGPT state_dict names and shapes
//   /optimizer/m/<name>, v/<name> AdamW moments; /optimizer attributes hold the
//                                 hyper-parameters and the step count (absent
//                                 from what cllm import writes)
//   /state                        attributes: next step, tokens seen, seed,
//                                 consecutive skipped steps, sampler
//   /tokenizer/<file>             the tokenizer's vocabulary (gpt2-bpe)
//   root attributes               format "cllm-checkpoint", format_version,
//                                 step, tokens_seen, the model's shape, the
//                                 training options used
// The file's first 512 bytes hold a SHA-256 of the rest (file_checksum.h),
// verified before HDF5 opens it; every dataset also carries the Fletcher-32
// filter, which catches what the checksum cannot: a file without one (cllm's
// from before it wrote them) whose tensor data is damaged. Files are written
// under a temporary name and renamed (durable_file.h); checkpoint_store.h
// names them and keeps a run's folder of them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cllm/base/optimizer_state.h"
#include "cllm/base/recorded_settings.h"
#include "cllm/data/tokenizer_spec.h"
#include "cllm/io/hdf5_handle.h"
#include "cllm/kernels/aligned_buffer.h"
#include "cllm/model/model.h"

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
};

// A readable checkpoint of another model shape: an error, never a file to
// skip (a run must not silently start afresh beside another run's files).
struct CheckpointMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Writes a checkpoint of the model and optimizer to path, atomically. One
// rank writes (the replicas are identical). Throws std::runtime_error naming
// the file; a failure leaves no file at path and removes the temporary one.
// The root attributes record settings, all of the run's (the caller merges
// its configuration's with the options it holds itself, such as the data
// and the cadences); its "seed" is recorded in /state as well.
// The root attributes of the model's shape come from the model. With no
// optimizer (cllm import: no run has trained the weights yet) there is no
// /optimizer group, and a resume from the file is refused.
void write_checkpoint(const std::filesystem::path& path, const Model& model,
                      const OptimizerState* optimizer, const TrainingState& state,
                      const TokenizerSpec& tokenizer, const RunSettings& settings);

// AdamW's moments and step count as a checkpoint holds them (owned).
struct CheckpointMoments {
  AlignedBuffer<float> m, v;  // in the model's parameter layout
  std::int64_t step = 0;      // updates applied
  // As AdamW::restore takes it. The hyper-parameters are not read back: a
  // resume steers with its own.
  OptimizerState state() const { return {step, m.span(), v.span()}; }
};

// One checkpoint file, opened once: the constructor reads and checks
// everything but the tensors (format, version, every number against its
// range), so header() sizes the model before read_into fills it. Every
// error is a std::runtime_error naming the file.
class CheckpointReader {
 public:
  explicit CheckpointReader(std::filesystem::path path);

  const std::filesystem::path& path() const { return path_; }
  // The model shape, training state and tokenizer recorded.
  const CheckpointContents& header() const { return header_; }
  // The root attributes of these names that the file records, as their
  // types say (by name: the caller knows which settings it compares).
  RunSettings settings(const std::vector<std::string>& names) const;
  // Throws std::runtime_error unless the data (data_path, made with
  // tokenizer data) is in the tokens this checkpoint's model reads.
  void check_reads(const TokenizerSpec& data, const std::string& data_path) const;
  // Reads every tensor into model, and AdamW's moments into moments when
  // given, after checking the shape of each against the model's: the first
  // that differs throws CheckpointMismatch naming it and the checkpoint's
  // model. On any failure model and moments are unchanged.
  void read_into(Model& model, CheckpointMoments* moments = nullptr) const;
  // A new model of the checkpoint's shape with its weights, read straight
  // into it (no old model to keep: half the peak of read_into).
  std::unique_ptr<Model> read_model() const;

 private:
  std::filesystem::path path_;
  h5::Handle file_;
  CheckpointContents header_;
};

}  // namespace cllm
