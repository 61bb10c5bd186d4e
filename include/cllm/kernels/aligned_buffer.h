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

namespace cllm {

inline constexpr std::size_t kCacheLine = 64;

// Memory that cannot be had: a fault of the machine, never of the input,
// whatever the input was (a caller that turns bad input into exit 2 lets it by).
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An allocation that failed, with its size: callers add what it was for
// ("thread 3's context: cannot allocate 451.8 MiB").
struct AllocationError : OutOfMemory {
  explicit AllocationError(std::size_t bytes)
      : OutOfMemory("cannot allocate " + describe_bytes(bytes)), bytes(bytes) {}
  static std::string describe_bytes(std::size_t bytes) {
    char text[48];
    const double b = static_cast<double>(bytes);
    if (b >= 1024.0 * 1048576.0) std::snprintf(text, sizeof text, "%.1f GiB", b / 1073741824.0);
    else std::snprintf(text, sizeof text, "%.1f MiB", b / 1048576.0);
    return text;
  }
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
