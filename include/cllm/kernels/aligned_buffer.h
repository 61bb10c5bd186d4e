// AlignedBuffer: an owning, 64-byte-aligned, fixed-size array of trivially
// copyable values. Parameters, gradients, optimizer moments and activations
// all live in one of these, so every kernel sees cache-line-aligned data and
// nothing in the training step allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cllm/base/format.h"
#include "cllm/base/out_of_memory.h"

namespace cllm {

inline constexpr std::size_t kCacheLine = 64;

// An allocation that failed, with its size: callers add what it was for
// ("thread 3's context: cannot allocate 451.8 MiB").
struct AllocationError : OutOfMemory {
  explicit AllocationError(std::size_t bytes)
      : OutOfMemory("cannot allocate " + format_bytes(bytes)), bytes(bytes) {}
  std::size_t bytes;
};

template <typename T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  AlignedBuffer() = default;
  // The memory is left untouched: the owning thread's first write places its
  // pages on that thread's NUMA node (first touch).
  explicit AlignedBuffer(std::size_t count) : size_(count) {
    if (count == 0) return;
    if (count > (SIZE_MAX - kCacheLine) / sizeof(T)) throw AllocationError(SIZE_MAX);
    std::size_t bytes = (count * sizeof(T) + kCacheLine - 1) / kCacheLine * kCacheLine;
    data_.reset(static_cast<T*>(std::aligned_alloc(kCacheLine, bytes)));
    if (!data_) throw AllocationError(bytes);
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }
  T& operator[](std::size_t i) { return data_.get()[i]; }
  const T& operator[](std::size_t i) const { return data_.get()[i]; }
  std::span<T> span() { return {data(), size_}; }
  std::span<const T> span() const { return {data(), size_}; }
  void zero() {
    if (size_) std::memset(data(), 0, bytes());
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t size_ = 0;
};

}  // namespace cllm
