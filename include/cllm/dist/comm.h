// Comm: an MPI communicator that this process owns (a duplicate, so our
// collectives never match a library's), freed on scope exit; and the few
// collectives the trainer needs (the gradient allreduce is GradientReducer's,
// gradient_reducer.h). Only the main thread calls MPI (MPI_THREAD_FUNNELED):
// OpenMP threads never touch a Comm.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace cllm {

class Comm {
 public:
  // A communicator of one process that needs no MPI: for tests and tools.
  Comm() = default;
  // Duplicates parent (MPI_Comm_dup) and owns the duplicate.
  static Comm duplicate(MPI_Comm parent);
  // A duplicate of MPI_COMM_WORLD: every rank of the launch. Collective.
  static Comm world();

  Comm(Comm&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)), rank_(o.rank_), size_(o.size_) {}
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // MPI_COMM_NULL for the one-process Comm.
  MPI_Comm get() const { return comm_; }

  // True on every rank if ok is true on every rank.
  bool all_ok(bool ok) const;
  // In-place elementwise sums over ranks.
  void sum(std::span<double> values) const;
  void sum(std::span<float> values) const;
  // Rank 0's values, on every rank (in pieces: any length).
  void broadcast(std::span<float> values) const;
  void broadcast(std::span<std::int64_t> values) const;
  void broadcast(std::span<std::byte> bytes) const;
  // Rank 0's value of a plain struct, on every rank: a snapshot travels as
  // itself, not packed into an array of numbers.
  template <typename T>
  void broadcast_value(T& value) const {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast_value copies bytes");
    broadcast(std::as_writable_bytes(std::span(&value, 1)));
  }
  // Every rank's value, in rank order.
  std::vector<std::uint64_t> all_gather(std::uint64_t value) const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

// A 64-bit fingerprint of a float buffer's bits (FNV-1a over 64-bit words):
// equal buffers give equal values, and replicas that drifted by one bit
// almost surely do not.
std::uint64_t checksum(std::span<const float> values);

}  // namespace cllm
