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
  CollectiveFailure(const std::string& what, int failed_rank, bool reported_here, int exit_code,
                    std::exception_ptr cause)
      : std::runtime_error(what),
        failed_rank_(failed_rank),
        reported_here_(reported_here),
        exit_code_(exit_code),
        cause_(std::move(cause)) {}
  // The lowest rank whose work failed; its reason is what() there.
  int failed_rank() const { return failed_rank_; }
  // Whether this rank holds the reason to report (on the others what() only
  // names the failed rank).
  bool reported_here() const { return reported_here_; }
  // The exit code every rank ends with (base/exit_codes.h), from what the
  // failed rank's work threw: kExitUsage for std::invalid_argument (a
  // setting, the command line), kExitOk for HelpRequested, else kExitError.
  int exit_code() const { return exit_code_; }
  // What the work threw, where reported_here() (else null): a front end
  // words it its own way (cli: report()).
  const std::exception_ptr& cause() const { return cause_; }

 private:
  int failed_rank_;
  bool reported_here_;
  int exit_code_;
  std::exception_ptr cause_;
};

// Runs work on this rank, then agrees with every rank of comm on whether
// any failed (the agreement is the collective `what`, as the stall
// inspector names it). Throws CollectiveFailure on every rank when one did.
void collectively(const Comm& comm, const std::function<void()>& work,
                  Collective what = Collective::agreement);

}  // namespace cllm
