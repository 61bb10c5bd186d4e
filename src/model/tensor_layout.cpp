#include "cllm/model/tensor_layout.h"

#include <algorithm>
#include <stdexcept>

namespace cllm {

const TensorSpec& TensorLayout::add(std::string name, std::vector<std::int64_t> shape) {
  if (!index_.try_emplace(name, tensors_.size()).second)
    throw std::logic_error("duplicate tensor name " + name);
  std::size_t numel = 1;
  for (auto d : shape) numel *= static_cast<std::size_t>(d);
  TensorSpec spec{std::move(name), std::move(shape), total_, numel};
  total_ += (numel + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  tensors_.push_back(std::move(spec));
  return tensors_.back();
}

std::size_t TensorLayout::numel() const {
  std::size_t n = 0;
  for (const auto& t : tensors_) n += t.numel;
  return n;
}

const TensorSpec* TensorLayout::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<Chunk> make_chunks(const TensorLayout& layout) {
  std::vector<Chunk> chunks;
  for (const TensorSpec& t : layout.tensors())
    for (std::size_t begin = 0; begin < t.numel; begin += kChunkFloats)
      chunks.push_back({t.offset + begin, std::min(kChunkFloats, t.numel - begin), t.is_matrix()});
  return chunks;
}

}  // namespace cllm
