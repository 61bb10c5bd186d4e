#include "cllm/io/checkpoint.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <utility>
#include <variant>

#include "cllm/base/format.h"
#include "cllm/base/read_file.h"
#include "cllm/io/dataset_file.h"
#include "cllm/io/durable_file.h"
#include "cllm/io/file_checksum.h"
#include "cllm/io/hdf5.h"
#include "tokenizer_attributes.h"

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

// A tensor of the model, open in the file: its shape checked, not yet read.
struct OpenTensor {
  const TensorSpec* spec;
  std::string where;  // "/model/<name>", as messages name it
  h5::Handle dataset;
};

// Opens every tensor of layout in group_name and checks its shape against
// the model's: the one shape check, done before any tensor is read, so that
// a checkpoint of another model fails at once, naming the first tensor that
// differs and the model the checkpoint declares.
std::vector<OpenTensor> open_tensors(hid_t file, const std::string& group_name,
                                     const TensorLayout& layout, const ModelConfig& theirs) {
  h5::Handle group = h5::open_group(file, group_name);
  std::vector<OpenTensor> tensors;
  for (const TensorSpec& spec : layout.tensors()) {
    OpenTensor t{&spec, "/" + group_name + "/" + spec.name, {}};
    std::string shape = "(none)";
    bool same = false;
    if (h5::exists(group, spec.name)) {
      t.dataset = h5::Handle(H5Dopen2(group, spec.name.c_str(), H5P_DEFAULT), t.where);
      const std::vector<hsize_t> dims = h5::dataset_shape(t.dataset);
      const std::vector<std::int64_t> found(dims.begin(), dims.end());
      shape = shape_string(found);
      same = found == spec.shape;
    }
    if (!same)
      throw CheckpointMismatch("tensor " + t.where + " has shape " + shape + ", the model needs " +
                               shape_string(spec.shape) + " (checkpoint of a " +
                               std::to_string(theirs.n_layer) + "-layer, " +
                               std::to_string(theirs.n_embd) + "-wide model with vocab " +
                               std::to_string(theirs.vocab_size) + ")");
    tensors.push_back(std::move(t));
  }
  return tensors;
}

// Reads tensors that open_tensors checked to their places in data, a
// buffer of their layout.
void read_tensors(const std::vector<OpenTensor>& tensors, float* data) {
  for (const OpenTensor& t : tensors) {
    try {
      h5::read_dataset(t.dataset, H5T_NATIVE_FLOAT, data + t.spec->offset);
    } catch (const std::exception& e) {
      throw std::runtime_error("tensor " + t.where + ": " + e.what());
    }
  }
}

AlignedBuffer<float> read_tensors(const std::vector<OpenTensor>& tensors, std::size_t total) {
  AlignedBuffer<float> data(total);
  data.zero();  // the layout's padding
  read_tensors(tensors, data.data());
  return data;
}

void write_settings(hid_t file, const RunSettings& settings) {
  for (const auto& [name, value] : settings)
    std::visit([&, &name = name](const auto& v) { h5::set_attr(file, name, v); }, value);
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

// Everything but the tensors and the settings, every number checked.
CheckpointContents read_header(hid_t file) {
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
                      const OptimizerState* optimizer, const TrainingState& state,
                      const TokenizerSpec& tokenizer, const RunSettings& settings) {
  const auto seed = settings.find("seed");
  if (seed == settings.end() || !std::holds_alternative<std::int64_t>(seed->second))
    throw std::logic_error("write_checkpoint: the settings hold no integer seed");
  const TensorLayout& layout = model.layout();
  const auto write_contents = [&](hid_t file) {
    h5::set_attr(file, "format", std::string(kCheckpointFormat));
    h5::set_attr(file, "format_version", kCheckpointFormatVersion);
    h5::set_attr(file, "step", state.step);
    h5::set_attr(file, "tokens_seen", state.tokens_seen);
    RunSettings all = settings;
    const ModelConfig& shape = model.config();
    for (const auto& [name, value] : {std::pair{"vocab_size", shape.vocab_size}, {"seq_len", shape.seq_len},
                                      {"n_layer", shape.n_layer}, {"n_head", shape.n_head},
                                      {"n_embd", shape.n_embd}})
      all[name] = std::int64_t{value};
    write_settings(file, all);

    write_tensors(file, "model", layout, model.params().data());
    if (optimizer) {
      write_tensors(file, "optimizer/m", layout, optimizer->m.data());
      write_tensors(file, "optimizer/v", layout, optimizer->v.data());
      h5::Handle opt = h5::open_group(file, "optimizer");
      h5::set_attr(opt, "name", std::string("AdamW"));
      h5::set_attr(opt, "step", optimizer->step);
      h5::set_attr(opt, "beta1", double{optimizer->beta1});
      h5::set_attr(opt, "beta2", double{optimizer->beta2});
      h5::set_attr(opt, "eps", double{optimizer->eps});
      h5::set_attr(opt, "weight_decay", double{optimizer->weight_decay});
    }

    h5::Handle st = h5::create_group(file, "state");
    h5::set_attr(st, "step", state.step);
    h5::set_attr(st, "tokens_seen", state.tokens_seen);
    h5::set_attr(st, "bad_steps_in_a_row", static_cast<std::int64_t>(state.bad_steps_in_a_row));
    h5::set_attr(st, "seed", std::get<std::int64_t>(seed->second));
    h5::set_attr(st, "sampler",
                 std::string("stateless: row b of global micro-batch m at step s starts at "
                             "splitmix64 hash(seed, s, m, b) mod (tokens - seq_len)"));

    h5::Handle tok = h5::create_group(file, "tokenizer");
    write_tokenizer(file, tok, tokenizer);
  };

  try {
    DurableWriter out(path);
    // HDF5 writes the file itself where room for it (the tensors, the
    // tokenizer's files and generously for HDF5's own structures) could be
    // reserved; else, as on a nearly full disk, the file is built in memory,
    // at the cost of a copy of it, and written with write(2).
    const std::size_t copies = optimizer ? 3 : 1;
    if (out.try_reserve(copies * (layout.total() * sizeof(float) + layout.tensors().size() * 16384) +
                        tokenizer.encoder_json.size() + tokenizer.vocab_bpe.size() + (4u << 20))) {
      {
        h5::Handle file = h5::create_file(out.temporary_path());
        write_contents(file);
        h5::flush(file);
      }  // closed: HDF5 writes no more, and the checksum covers every byte
      out.start_sync();  // the file goes to disk while it is read back for its checksum
      write_file_checksum(out.temporary_path());
      out.commit();
    } else {
      std::vector<unsigned char> image;
      {
        h5::Handle file = h5::create_memory_file(path.string());
        write_contents(file);
        image = h5::file_image(file);
      }  // the in-memory file is freed before the bytes go to disk
      write_file_checksum(image);
      out.write(image);
      out.commit();
    }
  } catch (const std::exception& e) {
    rethrow_naming(path, e);
  }
}

CheckpointReader::CheckpointReader(std::filesystem::path path) : path_(std::move(path)) {
  try {
    file_ = h5::open_format(path_, kCheckpointFormat, kCheckpointFormatVersion);
    header_ = read_header(file_);
  } catch (const std::exception& e) {
    rethrow_naming(path_, e);
  }
}

// Read by name: HDF5 1.10's iteration over a corrupt attribute table can
// crash (tests/fuzz/README.md), a lookup by name less often.
RunSettings CheckpointReader::settings(const std::vector<std::string>& names) const {
  try {
    RunSettings settings;
    for (const std::string& name : names) {
      if (!h5::has_attr(file_, name)) continue;
      switch (h5::attr_class(file_, name)) {
        case H5T_INTEGER: settings[name] = h5::int_attr(file_, name); break;
        case H5T_FLOAT: settings[name] = h5::double_attr(file_, name); break;
        case H5T_STRING: settings[name] = h5::string_attr(file_, name); break;
        default: throw std::runtime_error("attribute '" + name + "' is not a number or a string");
      }
    }
    return settings;
  } catch (const std::exception& e) {
    rethrow_naming(path_, e);
  }
}

void CheckpointReader::check_reads(const TokenizerSpec& data, const std::string& data_path) const {
  const TokenizerSpec& ours = header_.tokenizer;
  if (ours.name != data.name || ours.vocab_size != data.vocab_size)
    throw std::runtime_error(data_path + " is tokenized with " + data.name + " (" +
                             std::to_string(data.vocab_size) + " tokens), but the model of " +
                             path_.string() + " reads " + ours.name + " (" +
                             std::to_string(ours.vocab_size) + " tokens)");
}

void CheckpointReader::read_into(Model& model, CheckpointMoments* moments) const {
  try {
    const TensorLayout& layout = model.layout();
    const ModelConfig& theirs = header_.model;
    const std::vector<OpenTensor> params = open_tensors(file_, "model", layout, theirs);
    std::vector<OpenTensor> m, v;
    if (moments) {
      if (!h5::has_link(file_, "optimizer"))
        throw std::runtime_error("holds no optimizer state (cllm import wrote it): start a run "
                                 "from its weights with --init, not --resume");
      m = open_tensors(file_, "optimizer/m", layout, theirs);
      v = open_tensors(file_, "optimizer/v", layout, theirs);
    }
    // Read into buffers of our own first: a bad tensor half-way leaves the
    // model and the moments as they were.
    AlignedBuffer<float> read_params = read_tensors(params, layout.total());
    CheckpointMoments read_moments;
    if (moments) {
      read_moments.m = read_tensors(m, layout.total());
      read_moments.v = read_tensors(v, layout.total());
      h5::Handle opt = h5::open_group(file_, "optimizer");
      read_moments.step = h5::int_attr(opt, "step", 0, header_.state.step);
    }
    std::copy(read_params.span().begin(), read_params.span().end(), model.params().begin());
    if (moments) *moments = std::move(read_moments);
  } catch (const std::exception& e) {
    rethrow_naming(path_, e);
  }
}

std::unique_ptr<Model> CheckpointReader::read_model() const {
  try {
    auto model = std::make_unique<Model>(header_.model);
    read_tensors(open_tensors(file_, "model", model->layout(), header_.model), model->params().data());
    return model;
  } catch (const std::exception& e) {
    rethrow_naming(path_, e);
  }
}

}  // namespace cllm
