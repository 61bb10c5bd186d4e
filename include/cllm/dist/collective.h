// Work that may fail on some ranks only (a file only rank 0 reads, memory
// one node lacks), agreed by all: every rank calls collectively() at the
// same point, and if the work threw anywhere, it throws CollectiveFailure
// everywhere. So no rank is left waiting in a collective for one that has
// gone (MPI_Finalize would hang), and the reason is reported once.
#pragma once

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

#include "cllm/dist/comm.h"

namespace cllm {

class CollectiveFailure : public std::runtime_error {
 public:
  CollectiveFailure(const std::string& what, int failed_rank, bool reported_here,
                    bool invalid_setting, std::exception_ptr cause)
      : std::runtime_error(what),
        failed_rank_(failed_rank),
        reported_here_(reported_here),
        invalid_setting_(invalid_setting),
        cause_(std::move(cause)) {}
  // The lowest rank whose work failed; its reason is what() there.
  int failed_rank() const { return failed_rank_; }
  // Whether this rank holds the reason to report (on the others what() only
  // names the failed rank).
  bool reported_here() const { return reported_here_; }
  // The work threw std::invalid_argument: a setting was wrong, not the world.
  bool invalid_setting() const { return invalid_setting_; }
  // What the work threw, where reported_here() (else null): a caller may
  // word a SettingError its own way.
  const std::exception_ptr& cause() const { return cause_; }

 private:
  int failed_rank_;
  bool reported_here_;
  bool invalid_setting_;
  std::exception_ptr cause_;
};

// Runs work on this rank, then agrees with every rank of comm on whether
// any failed (the agreement is the collective `what`, as the stall
// inspector names it). Throws CollectiveFailure on every rank when one did.
void collectively(const Comm& comm, const std::function<void()>& work,
                  Collective what = Collective::agreement);

}  // namespace cllm
