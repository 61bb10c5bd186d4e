#include "cllm/dist/node_counters.h"

#include <atomic>
#include <stdexcept>
#include <vector>

#include "comm_mpi.h"
#include "mpi_check.h"

namespace cllm {

// The window, or, on a Comm of one process, plain memory.
struct NodeCounters::Window {
  MPI_Win win = MPI_WIN_NULL;
  bool locked = false;  // in MPI_Win_lock_all's epoch, as load and store need
  std::vector<std::uint64_t> local;
  ~Window() {
    if (locked) MPI_Win_unlock_all(win);
    if (win != MPI_WIN_NULL) MPI_Win_free(&win);
  }
};

NodeCounters::NodeCounters(const Comm& comm, std::size_t count, Collective what)
    : window_(std::make_unique<Window>()) {
  const MPI_Comm mpi = comm.mpi().comm;
  if (mpi == MPI_COMM_NULL) {
    window_->local.assign(count, 0);
    values_ = window_->local.data();
    return;
  }
  if (!comm.on_one_node()) throw std::logic_error("NodeCounters over ranks of several nodes");
  // Rank 0 holds the counters; the others map them.
  const auto bytes = static_cast<MPI_Aint>(comm.is_root() ? count * sizeof(std::uint64_t) : 0);
  void* mine = nullptr;
  check_mpi(MPI_Win_allocate_shared(bytes, sizeof(std::uint64_t), MPI_INFO_NULL, mpi, &mine, &window_->win),
            "MPI_Win_allocate_shared");
  MPI_Aint size = 0;
  int unit = 0;
  check_mpi(MPI_Win_shared_query(window_->win, 0, &size, &unit, &values_), "MPI_Win_shared_query");
  check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, window_->win), "MPI_Win_lock_all");
  window_->locked = true;
  if (comm.is_root())
    for (std::size_t i = 0; i < count; ++i) store(i, 0);
  MPI_Win_sync(window_->win);
  comm.synchronized_now(what);  // no rank takes before they are 0
}

NodeCounters::~NodeCounters() = default;

std::uint64_t NodeCounters::fetch_add(std::size_t i, std::uint64_t n) const {
  return std::atomic_ref<std::uint64_t>(values_[i]).fetch_add(n);
}

void NodeCounters::store(std::size_t i, std::uint64_t value) const {
  std::atomic_ref<std::uint64_t>(values_[i]).store(value);
}

}  // namespace cllm
