// The commands that one process does (prepare, generate, import, export)
// under mpirun: every rank checks its own view of the config (its paths),
// rank 0 does the work, and all agree on the outcome.
#pragma once

#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"

namespace cllm {

// work()'s result on rank 0, a default one elsewhere; throws
// CollectiveFailure on every rank if config.validate() or work threw on any.
template <class Config, class Work>
auto on_rank_zero(const Comm& comm, const Config& config, Work work) {
  decltype(work()) result{};
  collectively(comm, [&] {
    config.validate();
    if (comm.is_root()) result = work();
  });
  return result;
}

}  // namespace cllm
