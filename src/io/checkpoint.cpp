#include "cllm/checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "cllm/aligned_buffer.h"
#include "cllm/dataset_file.h"
#include "cllm/durable_file.h"
#include "cllm/hdf5.h"

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

void write_config(hid_t file, const TrainConfig& c, const std::string& data_name) {
  const auto i64 = [](auto v) { return static_cast<std::int64_t>(v); };
  const ModelConfig& m = c.model;
  h5::set_attr(file, "vocab_size", i64(m.vocab_size));
  h5::set_attr(file, "seq_len", i64(m.seq_len));
  h5::set_attr(file, "n_layer", i64(m.n_layer));
  h5::set_attr(file, "n_head", i64(m.n_head));
  h5::set_attr(file, "n_embd", i64(m.n_embd));
  // The options of the run, for the record (a resume takes its own).
  h5::set_attr(file, "data", data_name);
  h5::set_attr(file, "steps", i64(c.steps));
  h5::set_attr(file, "micro_batch", i64(c.micro_batch));
  h5::set_attr(file, "global_batch", i64(c.global_batch));
  h5::set_attr(file, "seed", i64(c.seed));
  h5::set_attr(file, "lr", double{c.optim.lr});
  h5::set_attr(file, "min_lr_ratio", double{c.optim.min_lr_ratio});
  h5::set_attr(file, "warmup", i64(c.optim.warmup_steps));
  h5::set_attr(file, "grad_clip", double{c.optim.grad_clip});
}

ModelConfig read_model_config(hid_t file) {
  const auto i32 = [&](const char* name) { return static_cast<int>(h5::int_attr(file, name)); };
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
  c.model.validate();
  h5::Handle state = h5::open_group(file, "state");
  c.state.step = h5::int_attr(state, "step");
  c.state.tokens_seen = h5::int_attr(state, "tokens_seen");
  c.state.bad_steps_in_a_row = static_cast<int>(h5::int_attr(state, "bad_steps_in_a_row"));
  h5::Handle tok = h5::open_group(file, "tokenizer");
  c.tokenizer = read_tokenizer(file, tok);
  return c;
}

// Prefixes a message with the file's name, once, keeping a mismatch a mismatch.
[[noreturn]] void rethrow_naming(const std::filesystem::path& path, const std::exception& e) {
  const std::string what = e.what();
  const std::string message = what.rfind(path.string(), 0) == 0 ? what : path.string() + ": " + what;
  if (dynamic_cast<const CheckpointMismatch*>(&e)) throw CheckpointMismatch(message);
  throw std::runtime_error(message);
}

}  // namespace

void write_checkpoint(const std::filesystem::path& path, const Model& model,
                      const AdamW& optimizer, const TrainConfig& config,
                      const TrainingState& state, const TokenizerSpec& tokenizer,
                      const std::string& data_name) {
  write_durably(path, [&](const std::filesystem::path& tmp) {
    h5::Handle file = h5::create_file(tmp);
    h5::set_attr(file, "format", std::string(kCheckpointFormat));
    h5::set_attr(file, "format_version", kCheckpointFormatVersion);
    h5::set_attr(file, "step", state.step);
    h5::set_attr(file, "tokens_seen", state.tokens_seen);
    write_config(file, config, data_name);

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
    h5::flush(file);
  });
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
      opt_steps = h5::int_attr(opt, "step");
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

void prune_checkpoints(const std::filesystem::path& folder, int keep) {
  // Temporaries of writes that were killed: their checkpoints never existed.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".checkpoint-", 0) == 0 && name.ends_with(".h5.tmp"))
      std::filesystem::remove(entry.path(), ec);
  }
  if (keep <= 0) return;
  const auto files = list_checkpoints(folder);
  for (std::size_t i = static_cast<std::size_t>(keep); i < files.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(files[i].path, ec);
  }
}

}  // namespace cllm
