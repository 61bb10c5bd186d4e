// Comm: an MPI communicator that this process owns (a duplicate, so our
// collectives never match a library's), freed on scope exit; and the few
// collectives the trainer needs (the gradient allreduce is GradientReducer's,
// gradient_reducer.h). Only the main thread calls it (the reducer's
// progress thread too, while the main thread does not): OpenMP threads never
// touch a Comm. Inside a BusyScope (busy.h) the stall inspector's thread
// calls MPI, and the main thread starts no collective.
//
// Every collective is named (stall.h's Collective) and run nonblocking, then
// waited for in one place (Comm::Mpi::complete): there the stall inspector
// watches (watch_stalls), and each wait is recorded for comm_wait_s and the
// trace (take_waits). That bookkeeping is the only state a const Comm changes.
// MPI's own types stay in src/dist/: outside it a Comm is just this class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "cllm/base/setting_error.h"
#include "cllm/dist/stall.h"

namespace cllm {

class Comm {
 public:
  // A communicator of one process that needs no MPI: for tests and tools.
  Comm();
  // A duplicate of MPI_COMM_WORLD, owned: every rank of the launch. Collective.
  static Comm world();

  Comm(Comm&& o) noexcept;
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // Every rank shares this rank's node (MPI_COMM_TYPE_SHARED): messages are
  // memory copies, not a network.
  bool on_one_node() const { return node_size_ == size_; }

  // Watches every collective from now on (stall.h); off when the policy is
  // off or there is one rank. Collective: an invalid policy on any rank
  // throws CollectiveFailure on all. name_of names the settings in messages.
  void watch_stalls(const StallConfig& policy, SettingNames name_of = recorded_name);
  // The step that warnings and recorded waits name, from now on (0: setting up).
  void label_step(int step) const;
  // The waits recorded since the last call, oldest first; clears them.
  std::vector<CollectiveWait> take_waits() const;
  // This rank enters collective `what`: the stall inspector learns of it.
  // Every collective starts here and ends in Mpi::complete.
  void arrive(Collective what) const;

  // True on every rank if ok is true on every rank.
  bool all_ok(bool ok, Collective what) const;
  // In-place elementwise sums over ranks.
  void sum(std::span<double> values, Collective what) const;
  void sum(std::span<float> values, Collective what) const;
  // Rank 0's values, on every rank (in pieces: any length).
  void broadcast(std::span<float> values, Collective what) const;
  void broadcast(std::span<std::byte> bytes, Collective what) const;
  // Rank 0's value of a plain struct, on every rank: a snapshot travels as
  // itself, not packed into an array of numbers.
  template <typename T>
  void broadcast_value(T& value, Collective what) const {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast_value copies bytes");
    broadcast(std::as_writable_bytes(std::span(&value, 1)), what);
  }
  // Every rank's value, in rank order.
  std::vector<std::uint64_t> all_gather(std::uint64_t value, Collective what) const;
  std::vector<double> all_gather(double value, Collective what) const;
  // Every rank's text, in rank order, on rank 0 (elsewhere: empty).
  std::vector<std::string> gather_text(const std::string& mine, Collective what) const;
  // The same into `all`, whose room a caller that gathers again keeps
  // (megabytes allocated afresh each time cost page faults): views into it.
  std::vector<std::string_view> gather_text(std::string_view mine, std::string& all, Collective what) const;
  // A barrier, then this rank's omp_get_wtime(): the ranks' common zero of time, to
  // within the barrier's skew (microseconds on one node).
  double synchronized_now(Collective what) const;

  // The MPI side: the communicator, the stall inspector, the waits. Complete
  // only in src/dist/comm_mpi.h, for the code of this layer.
  struct Mpi;
  Mpi& mpi() const { return *mpi_; }

 private:
  int rank_ = 0;
  int size_ = 1;
  int node_size_ = 1;  // ranks on this rank's node
  std::unique_ptr<Mpi> mpi_;
};

// A 64-bit fingerprint of a float buffer's bits (FNV-1a over 64-bit words):
// equal buffers give equal values, and replicas that drifted by one bit
// almost surely do not.
std::uint64_t checksum(std::span<const float> values);

}  // namespace cllm
