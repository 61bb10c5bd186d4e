#include "cllm/checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <limits>
#include <optional>
#include <stdexcept>

#include "cllm/aligned_buffer.h"
#include "cllm/dataset_file.h"
#include "cllm/durable_file.h"
#include "cllm/hdf5.h"
#include "cllm/read_file.h"

namespace cllm {

namespace {

// Every dataset of a checkpoint: one chunk, Fletcher-32, no compression
// (trained float32 weights do not compress; writing stays at disk speed).
void write_tensor(hid_t group, const TensorSpec& spec, const float* data) {
  const std::vector<hsize_t> dims(spec.shape.begin(), spec.shape.end());
  h5::write_dataset(group, spec.name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, dims, data + spec.offset,
                    h5::Storage{});
}

void write_tensors(hid_t file, const std::string& group_name, const TensorLayout& layout,
                   const float* data) {
  h5::Handle group = h5::create_group(file, group_name);
  for (const TensorSpec& spec : layout.tensors()) write_tensor(group, spec, data);
}

// Reads every tensor of layout from group into data, checking shapes.
void read_tensors(hid_t file, const std::string& group_name, const TensorLayout& layout,
                  float* data) {
  h5::Handle group = h5::open_group(file, group_name);
  for (const TensorSpec& spec : layout.tensors()) {
    const std::string where = "/" + group_name + "/" + spec.name;
    if (!h5::exists(group, spec.name)) throw std::runtime_error("no tensor " + where);
    h5::Handle dset(H5Dopen2(group, spec.name.c_str(), H5P_DEFAULT), where);
    const std::vector<hsize_t> dims = h5::dataset_shape(dset);
    const std::vector<std::int64_t> shape(dims.begin(), dims.end());
    if (shape != spec.shape)
      throw CheckpointMismatch("tensor " + where + " has shape " + shape_string(shape) +
                               ", the model needs " + shape_string(spec.shape));
    try {
      h5::read_dataset(dset, H5T_NATIVE_FLOAT, data + spec.offset);
    } catch (const std::exception& e) {
      throw std::runtime_error("tensor " + where + ": " + e.what());
    }
  }
}

void write_settings(hid_t file, const RunSettings& settings) {
  for (const auto& [name, value] : settings)
    std::visit([&, &name = name](const auto& v) { h5::set_attr(file, name, v); }, value);
}

// The root attributes a resume compares, as their types say. Read by name:
// HDF5 1.10's iteration over a corrupt attribute table can crash
// (tests/fuzz/README.md), a lookup by name less often.
RunSettings read_settings(hid_t file) {
  RunSettings settings;
  for (const std::string& name : compared_setting_names()) {
    if (!h5::has_attr(file, name)) continue;
    switch (h5::attr_class(file, name)) {
      case H5T_INTEGER: settings[name] = h5::int_attr(file, name); break;
      case H5T_FLOAT: settings[name] = h5::double_attr(file, name); break;
      case H5T_STRING: settings[name] = h5::string_attr(file, name); break;
      default: throw std::runtime_error("attribute '" + name + "' is not a number or a string");
    }
  }
  return settings;
}

ModelConfig read_model_config(hid_t file) {
  const auto i32 = [&](const char* name) {
    return static_cast<int>(h5::int_attr(file, name, 1, std::numeric_limits<std::int32_t>::max()));
  };
  ModelConfig m;
  m.vocab_size = i32("vocab_size");
  m.seq_len = i32("seq_len");
  m.n_layer = i32("n_layer");
  m.n_head = i32("n_head");
  m.n_embd = i32("n_embd");
  return m;
}

// Opens a checkpoint and reads everything but the tensors.
CheckpointContents open_checkpoint(const std::filesystem::path& path, h5::Handle& file) {
  file = h5::open_format(path, kCheckpointFormat, kCheckpointFormatVersion);
  CheckpointContents c;
  c.model = read_model_config(file);
  try {
    c.model.validate();
  } catch (const std::invalid_argument& e) {  // not the user's option: the file's shape
    throw std::runtime_error(std::string("model shape: ") + e.what());
  }
  constexpr std::int64_t kMaxInt = std::numeric_limits<std::int32_t>::max();
  h5::Handle state = h5::open_group(file, "state");
  c.state.step = h5::int_attr(state, "step", 0, kMaxInt);
  c.state.tokens_seen = h5::int_attr(state, "tokens_seen", 0);
  c.state.bad_steps_in_a_row =
      static_cast<int>(h5::int_attr(state, "bad_steps_in_a_row", 0, kMaxInt));
  if (const auto root_step = h5::int_attr(file, "step"); root_step != c.state.step)
    throw std::runtime_error("/state/step " + std::to_string(c.state.step) +
                             " disagrees with the root attribute step " +
                             std::to_string(root_step));
  h5::Handle tok = h5::open_group(file, "tokenizer");
  c.tokenizer = read_tokenizer(file, tok);
  if (c.tokenizer.vocab_size > c.model.vocab_size)
    throw std::runtime_error("tokenizer " + c.tokenizer.name + " has " +
                             std::to_string(c.tokenizer.vocab_size) +
                             " tokens, more than the model's vocabulary of " +
                             std::to_string(c.model.vocab_size));
  c.settings = read_settings(file);
  return c;
}

// Prefixes a message with the file's name, once, keeping a mismatch a mismatch.
[[noreturn]] void rethrow_naming(const std::filesystem::path& path, const std::exception& e) {
  const std::string message = naming_file(path, e.what());
  if (dynamic_cast<const CheckpointMismatch*>(&e)) throw CheckpointMismatch(message);
  throw std::runtime_error(message);
}

}  // namespace

void write_checkpoint(const std::filesystem::path& path, const Model& model,
                      const AdamW& optimizer, const TrainConfig& config,
                      const TrainingState& state, const TokenizerSpec& tokenizer,
                      const RunSettings& run) {
  std::vector<unsigned char> image;
  try {
    h5::Handle file = h5::create_memory_file(path.string());
    h5::set_attr(file, "format", std::string(kCheckpointFormat));
    h5::set_attr(file, "format_version", kCheckpointFormatVersion);
    h5::set_attr(file, "step", state.step);
    h5::set_attr(file, "tokens_seen", state.tokens_seen);
    write_settings(file, run);
    write_settings(file, config_settings(config));

    const TensorLayout& layout = model.layout();
    write_tensors(file, "model", layout, model.params().data());
    write_tensors(file, "optimizer/m", layout, optimizer.m().data());
    write_tensors(file, "optimizer/v", layout, optimizer.v().data());
    h5::Handle opt = h5::open_group(file, "optimizer");
    const OptimizerConfig& o = optimizer.config();
    h5::set_attr(opt, "name", std::string("AdamW"));
    h5::set_attr(opt, "step", optimizer.steps_taken());
    h5::set_attr(opt, "beta1", double{o.beta1});
    h5::set_attr(opt, "beta2", double{o.beta2});
    h5::set_attr(opt, "eps", double{o.eps});
    h5::set_attr(opt, "weight_decay", double{o.weight_decay});

    h5::Handle st = h5::create_group(file, "state");
    h5::set_attr(st, "step", state.step);
    h5::set_attr(st, "tokens_seen", state.tokens_seen);
    h5::set_attr(st, "bad_steps_in_a_row", static_cast<std::int64_t>(state.bad_steps_in_a_row));
    h5::set_attr(st, "seed", static_cast<std::int64_t>(config.seed));
    h5::set_attr(st, "sampler",
                 std::string("stateless: row b of global micro-batch m at step s starts at "
                             "splitmix64 hash(seed, s, m, b) mod (tokens - seq_len)"));

    h5::Handle tok = h5::create_group(file, "tokenizer");
    write_tokenizer(file, tok, tokenizer);
    image = h5::file_image(file);
  } catch (const std::exception& e) {  // the in-memory file is freed before the bytes go to disk
    rethrow_naming(path, e);
  }
  write_durably(path, image);
}

CheckpointContents read_checkpoint_header(const std::filesystem::path& path) {
  try {
    h5::Handle file;
    return open_checkpoint(path, file);
  } catch (const std::exception& e) {
    rethrow_naming(path, e);
  }
}

CheckpointContents read_checkpoint(const std::filesystem::path& path, Model& model,
                                   AdamW* optimizer) {
  try {
    h5::Handle file;
    CheckpointContents c = open_checkpoint(path, file);
    // A whole other shape: name the first tensor that differs.
    const TensorLayout theirs = gpt_parameter_layout(c.model);
    for (const TensorSpec& spec : model.layout().tensors()) {
      const TensorSpec* other = theirs.find(spec.name);
      if (!other || other->shape != spec.shape)
        throw CheckpointMismatch(
            "tensor /model/" + spec.name + " has shape " +
            (other ? shape_string(other->shape) : std::string("(none)")) +
            ", the model needs " + shape_string(spec.shape) + " (checkpoint of a " +
            std::to_string(c.model.n_layer) + "-layer, " + std::to_string(c.model.n_embd) +
            "-wide model with vocab " + std::to_string(c.model.vocab_size) + ")");
    }
    // Read into scratch buffers first: a bad tensor half-way leaves the
    // model and optimizer as they were.
    const TensorLayout& layout = model.layout();
    AlignedBuffer<float> params(layout.total());
    params.zero();
    read_tensors(file, "model", layout, params.data());
    AlignedBuffer<float> m, v;
    std::int64_t opt_steps = 0;
    if (optimizer) {
      m = AlignedBuffer<float>(layout.total());
      v = AlignedBuffer<float>(layout.total());
      m.zero();
      v.zero();
      read_tensors(file, "optimizer/m", layout, m.data());
      read_tensors(file, "optimizer/v", layout, v.data());
      h5::Handle opt = h5::open_group(file, "optimizer");
      opt_steps = h5::int_attr(opt, "step", 0, c.state.step);
    }
    std::copy(params.span().begin(), params.span().end(), model.params().begin());
    if (optimizer) optimizer->restore(m.span(), v.span(), opt_steps);
    return c;
  } catch (const std::exception& e) {
    rethrow_naming(path, e);
  }
}

std::filesystem::path checkpoint_path(const std::filesystem::path& folder, std::int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "checkpoint-%08lld.h5", static_cast<long long>(step));
  return folder / name;
}

// The step of a file named checkpoint-<digits>.h5; nullopt for other names.
std::optional<std::int64_t> checkpoint_step(const std::string& name) {
  const std::string prefix = "checkpoint-", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](unsigned char ch) {
        return std::isdigit(ch);
      }))
    return std::nullopt;
  return std::stoll(digits);
}

std::vector<CheckpointFile> list_checkpoints(const std::filesystem::path& folder) {
  std::vector<CheckpointFile> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec))
    if (const auto step = checkpoint_step(entry.path().filename().string());
        step && entry.is_regular_file(ec))
      found.push_back({*step, entry.path()});
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.step > b.step; });
  return found;
}

void prune_checkpoints(const std::filesystem::path& folder, int keep,
                       const std::filesystem::path& just_written) {
  // Temporaries of writes that were killed: their checkpoints never existed
  // (the run's lock on the folder means no other run is writing one).
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_temporary_name(name) && name.rfind(".checkpoint-", 0) == 0)
      std::filesystem::remove(entry.path(), ec);
  }
  if (keep <= 0) return;
  // The checkpoint just written counts as one of keep and is never deleted,
  // whatever the step numbers of older files say.
  int kept = 1;
  for (const CheckpointFile& f : list_checkpoints(folder)) {
    if (f.path.filename() == just_written.filename()) continue;
    if (kept < keep) {
      ++kept;
    } else {
      std::filesystem::remove(f.path, ec);
    }
  }
}

}  // namespace cllm
