// Counters in memory that every rank of a one-node job maps (an MPI-3
// shared window): ranks and their threads take work with an atomic add, so
// whoever is free takes the next piece, and no rank waits for another to
// answer a message (Open MPI moves one only inside an MPI call).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cllm/dist/comm.h"

namespace cllm {

class NodeCounters {
 public:
  // Collective; every rank of comm must share one node (Comm::on_one_node).
  // Every counter starts at 0. A Comm of one process needs no MPI.
  NodeCounters(const Comm& comm, std::size_t count, Collective what);
  NodeCounters(const NodeCounters&) = delete;
  NodeCounters& operator=(const NodeCounters&) = delete;
  ~NodeCounters();  // collective (MPI_Win_free)

  // Adds n to counter i, from any thread of any rank: its value before.
  std::uint64_t fetch_add(std::size_t i, std::uint64_t n) const;
  // Sets counter i; the caller orders it against every taker (a collective
  // between the last fetch_add of the old value and the first of the new).
  void store(std::size_t i, std::uint64_t value) const;

 private:
  struct Window;
  std::unique_ptr<Window> window_;
  std::uint64_t* values_ = nullptr;
};

}  // namespace cllm
