// TensorLayout: names, shapes and offsets of the tensors packed into one flat
// buffer. Parameters, gradients and both AdamW moments share one layout, so
// reduction, clipping and the optimizer run over flat arrays while
// checkpoints and tests address tensors by their nanoGPT names. Its chunks
// are how those passes over flat arrays split their work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cllm {

struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // in elements, from the start of the buffer
  std::size_t numel = 0;

  // Matrices and embeddings get weight decay; biases and LayerNorm gains don't.
  bool is_matrix() const { return shape.size() >= 2; }
};

class TensorLayout {
 public:
  // Every tensor starts on a 64-byte boundary; the padding between tensors
  // stays zero in every buffer of this layout.
  static constexpr std::size_t kAlignFloats = 16;

  // Throws std::logic_error for a name already in the layout.
  const TensorSpec& add(std::string name, std::vector<std::int64_t> shape);

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  const TensorSpec& operator[](std::size_t i) const { return tensors_[i]; }
  std::size_t count() const { return tensors_.size(); }
  // Elements of a buffer with this layout, padding included.
  std::size_t total() const { return total_; }
  // Elements in tensors, padding excluded.
  std::size_t numel() const;
  // nullptr when absent.
  const TensorSpec* find(std::string_view name) const;

 private:
  std::vector<TensorSpec> tensors_;
  // Name -> index in tensors_: add and find take constant time, so a layout
  // of N tensors builds in O(N) (a checkpoint may claim 100,000 layers).
  std::unordered_map<std::string, std::size_t> index_;
  std::size_t total_ = 0;
};

// ---- chunks: the unit of work of every pass over a flat buffer
// Pieces of at most kChunkFloats elements of one tensor each, in buffer order;
// the padding between tensors is in none. The in-rank gradient reduction
// (dist/), gradient scaling and AdamW (train/) all run over them, so OpenMP
// threads split the work evenly and any per-chunk partial result is combined
// in chunk order: every pass is bitwise independent of the thread count. They
// live here, with the layout they cut, so that both layers share one plan.
struct Chunk {
  std::size_t offset;  // in elements
  std::size_t size;
  bool decay;          // weight decay applies: a matrix or embedding (TensorSpec::is_matrix)
};

inline constexpr std::size_t kChunkFloats = 16384;

std::vector<Chunk> make_chunks(const TensorLayout& layout);

}  // namespace cllm
