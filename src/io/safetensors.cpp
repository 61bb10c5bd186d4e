#include "cllm/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

#include "cllm/base/read_file.h"
#include "cllm/kernels/matmul.h"

namespace cllm {
namespace {

// Hugging Face's reader refuses headers over 100 MB; so does this one.
constexpr std::size_t kMaxHeaderBytes = 100'000'000;

[[noreturn]] void bad(const std::string& what) {
  throw std::runtime_error("safetensors: " + what);
}

std::size_t dtype_bytes(SafetensorsDtype d) { return d == SafetensorsDtype::F32 ? 4 : 2; }

SafetensorsDtype parse_dtype(const std::string& name, const nlohmann::ordered_json& v) {
  if (!v.is_string()) bad("tensor '" + name + "': dtype is not a string");
  const std::string s = v.get<std::string>();
  if (s == "F32") return SafetensorsDtype::F32;
  if (s == "BF16") return SafetensorsDtype::BF16;
  if (s == "F16") return SafetensorsDtype::F16;
  bad("tensor '" + name + "': dtype " + s + " is not read (F32, BF16 or F16)");
}

std::uint64_t unsigned_number(const std::string& name, const char* field, const nlohmann::ordered_json& v) {
  if (!v.is_number_unsigned()) bad("tensor '" + name + "': " + field + " holds a value that is not a non-negative integer");
  return v.get<std::uint64_t>();
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));  // inf, NaN
  if (exponent == 0) {
    if (mantissa == 0) return std::bit_cast<float>(sign);
    // Subnormal: mantissa x 2^-24, exact in fp32.
    const float v = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

}  // namespace

SafetensorsFile::SafetensorsFile(std::string bytes) : owned_(std::move(bytes)) { parse(); }

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> mapped) : mapped_(std::move(mapped)) { parse(); }

SafetensorsFile SafetensorsFile::read(const std::filesystem::path& path) {
  auto mapped = std::make_unique<MappedFile>(path, "safetensors file");
  try {
    return SafetensorsFile(std::move(mapped));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(naming_file(path, e.what()));
  }
}

void SafetensorsFile::parse() {
  const std::string_view all = bytes();
  if (all.size() < 8) bad("file of " + std::to_string(all.size()) + " bytes has no 8-byte header length");
  std::uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | static_cast<unsigned char>(all[i]);
  if (header_bytes > kMaxHeaderBytes || header_bytes > all.size() - 8)
    bad("header length " + std::to_string(header_bytes) + " runs past the file's " +
        std::to_string(all.size()) + " bytes");
  const std::string_view header(all.data() + 8, header_bytes);
  if (header.empty() || header.front() != '{') bad("header does not start with '{'");
  data_start_ = 8 + header_bytes;
  const std::size_t data_bytes = all.size() - data_start_;

  // nlohmann keeps the last of two equal keys: the callback sees each key
  // first. Valid headers nest three deep (file, tensor, shape).
  std::set<std::string> names;
  using Json = nlohmann::ordered_json;  // tensors() keeps the file's order
  Json root;
  try {
    root = Json::parse(
        header, [&](int depth, Json::parse_event_t event, Json& parsed) {
          if ((event == Json::parse_event_t::object_start ||
               event == Json::parse_event_t::array_start) && depth > 2)
            bad("header nests deeper than a tensor's shape");
          if (event == Json::parse_event_t::key && depth == 1 &&
              !names.insert(parsed.get<std::string>()).second)
            bad("tensor '" + parsed.get<std::string>() + "' appears twice in the header");
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    bad(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!root.is_object()) bad("header is not a JSON object");

  for (const auto& [name, v] : root.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) bad("__metadata__ is not an object");
      for (const auto& [key, value] : v.items()) {
        if (!value.is_string()) bad("__metadata__ '" + key + "' is not a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) bad("tensor '" + name + "' is not an object");
    for (const auto& [key, _] : v.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets")
        bad("tensor '" + name + "' has an unknown field '" + key + "'");
    if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad("tensor '" + name + "' lacks dtype, shape or data_offsets");
    SafetensorsTensor t{name, parse_dtype(name, v["dtype"]), {}, 0, 0};
    const Json& shape = v["shape"];
    if (!shape.is_array()) bad("tensor '" + name + "': shape is not an array");
    std::uint64_t numel = 1;
    for (const auto& d : shape) {
      const std::uint64_t dim = unsigned_number(name, "shape", d);
      if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
          (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / dim))
        bad("tensor '" + name + "': shape overflows");
      numel *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const Json& offsets = v["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) bad("tensor '" + name + "': data_offsets is not [begin, end]");
    const std::uint64_t begin = unsigned_number(name, "data_offsets", offsets[0]);
    const std::uint64_t end = unsigned_number(name, "data_offsets", offsets[1]);
    if (begin > end || end > data_bytes)
      bad("tensor '" + name + "': data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
          "] are not within the " + std::to_string(data_bytes) + " data bytes");
    const std::size_t elem = dtype_bytes(t.dtype);
    if (numel > std::numeric_limits<std::uint64_t>::max() / elem || numel * elem != end - begin)
      bad("tensor '" + name + "': shape " + shape.dump() + " is not its " + std::to_string(end - begin) + " bytes");
    t.begin = begin;
    t.end = end;
    tensors_.push_back(std::move(t));
  }

  // The tensors tile the data section: no gaps, no overlaps, nothing after.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const SafetensorsTensor& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
  });
  std::size_t at = 0;
  for (const SafetensorsTensor* t : by_offset) {
    if (t->begin != at)
      bad("tensor '" + t->name + "' starts at byte " + std::to_string(t->begin) + ", not " +
          std::to_string(at) + (t->begin < at ? " (it overlaps another)" : " (bytes between tensors)"));
    at = t->end;
  }
  if (at != data_bytes)
    bad(std::to_string(data_bytes - at) + " bytes after the last tensor belong to none");
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  for (const SafetensorsTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void SafetensorsFile::read_floats(const SafetensorsTensor& t, std::span<float> out) const {
  const char* src = bytes().data() + data_start_ + t.begin;
  const std::size_t n = (t.end - t.begin) / dtype_bytes(t.dtype);
  if (out.size() != n) throw std::logic_error("SafetensorsFile::read_floats: out is not the tensor's size");
  if (t.dtype == SafetensorsDtype::F32) {
    if (n > 0) std::memcpy(out.data(), src, n * 4);  // an empty span's data() may be null
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = t.dtype == SafetensorsDtype::BF16 ? kernels::from_bf16(h) : half_to_float(h);
    }
  }
  if (mapped_) mapped_->release(data_start_ + t.begin, data_start_ + t.end);
}

std::vector<float> SafetensorsFile::to_floats(const SafetensorsTensor& t) const {
  std::vector<float> out((t.end - t.begin) / dtype_bytes(t.dtype));
  read_floats(t, out);
  return out;
}

namespace {
std::size_t numel_of(const std::vector<std::int64_t>& shape) {
  std::size_t n = 1;
  for (const std::int64_t d : shape) n *= static_cast<std::size_t>(d);
  return n;
}
}  // namespace

std::string safetensors_header(const std::vector<SafetensorsEntry>& entries,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t at = 0;
  for (const SafetensorsEntry& e : entries) {
    if (e.name == "__metadata__" || header.contains(e.name))
      throw std::invalid_argument("safetensors: tensor name '" + e.name + "' given twice");
    const std::size_t bytes = 4 * numel_of(e.shape);
    header[e.name] = {{"dtype", "F32"}, {"shape", e.shape}, {"data_offsets", {at, at + bytes}}};
    at += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(static_cast<std::uint64_t>(json.size()) >> (8 * i));
  return out + json;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path,
                                     std::vector<SafetensorsEntry> entries,
                                     const std::map<std::string, std::string>& metadata)
    : file_(path), entries_(std::move(entries)) {
  const std::string header = safetensors_header(entries_, metadata);
  file_.write({reinterpret_cast<const unsigned char*>(header.data()), header.size()});
}

void SafetensorsWriter::write(std::span<const float> values) {
  if (next_ >= entries_.size() || values.size() != numel_of(entries_[next_].shape))
    throw std::logic_error("SafetensorsWriter: values that are not the next tensor's");
  file_.write(values);
  ++next_;
}

void SafetensorsWriter::commit() {
  if (next_ != entries_.size()) throw std::logic_error("SafetensorsWriter: tensors left unwritten");
  file_.commit();
}

}  // namespace cllm
