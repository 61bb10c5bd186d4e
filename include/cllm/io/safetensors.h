// safetensors, Hugging Face's tensor file (what `save_pretrained` writes as
// model.safetensors): an 8-byte little-endian header length N, N bytes of
// JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}, then the tensors' bytes, offsets
// relative to the end of the header. Every number in a file is hostile until
// checked (STYLE.md #13): errors are one line naming the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cllm/io/durable_file.h"
#include "cllm/io/mapped_file.h"

namespace cllm {

enum class SafetensorsDtype { F32, BF16, F16 };

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;  // bytes, from the start of the data section
};

class SafetensorsFile {
 public:
  // Takes a whole file's bytes. Throws std::runtime_error for anything the
  // format forbids: a header length past the file, JSON that is not an object
  // of tensors, duplicate names, unknown dtypes (F32, BF16 and F16 are read),
  // shapes whose bytes are not their offsets' span, offsets out of the data,
  // overlapping, or leaving bytes no tensor owns.
  explicit SafetensorsFile(std::string bytes);
  // The file mapped into memory (mapped_file.h), then the above; errors
  // start with the path.
  static SafetensorsFile read(const std::filesystem::path& path);

  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensor* find(std::string_view name) const;
  // The tensor's values as fp32 into out, which holds exactly its elements
  // (std::logic_error otherwise); BF16 and F16 widen exactly.
  void read_floats(const SafetensorsTensor& tensor, std::span<float> out) const;
  std::vector<float> to_floats(const SafetensorsTensor& tensor) const;

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> mapped);
  std::string_view bytes() const { return mapped_ ? mapped_->bytes() : std::string_view(owned_); }
  void parse();

  std::string owned_;                   // the bytes given, or
  std::unique_ptr<MappedFile> mapped_;  // the file's
  std::size_t data_start_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct SafetensorsEntry {
  std::string name;
  std::vector<std::int64_t> shape;
};

// The first bytes of a file of these F32 tensors, back to back in this
// order: the length and the JSON header, padded with spaces to a multiple
// of 8 bytes (as Hugging Face's writer does: the data stays aligned).
// Throws std::invalid_argument for a name given twice.
std::string safetensors_header(const std::vector<SafetensorsEntry>& entries,
                               const std::map<std::string, std::string>& metadata);

// Writes such a file durably (durable_file.h), one tensor at a time.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::filesystem::path& path, std::vector<SafetensorsEntry> entries,
                    const std::map<std::string, std::string>& metadata);
  // The next tensor's values; std::logic_error if they are not its shape's.
  void write(std::span<const float> values);
  // std::logic_error unless every tensor was written.
  void commit();

 private:
  DurableWriter file_;
  std::vector<SafetensorsEntry> entries_;
  std::size_t next_ = 0;
};

}  // namespace cllm
