// Early exits agreed by every rank. Each rank runs the same steps (parse the
// command line, set up) and learns after each whether any rank stopped; then
// all return the same exit code and one prints why. So the reason appears
// once, and no rank is left waiting in a collective for one that has gone
// (MPI_Finalize would hang).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"

namespace cllm {

// How the CLI names a setting of the library's (SettingError names settings
// as checkpoints record them): n_layer is --layers, micro_batch --micro-batch.
std::string option_name(std::string_view setting);

// Thrown by work (below) for --help: exit 0, the text on stdout.
struct HelpRequested {
  std::string text;
};

// collectively() (dist/collective.h) for the command line: runs work, which
// every rank finishes but which may throw on some, and agrees on the outcome
// as an exit code, not an exception: nullopt if no rank threw, else every
// rank's exit code, that of the lowest rank that threw, which prints why.
// HelpRequested exits 0; CLI11's errors, SettingError and other
// std::invalid_argument are usage errors (exit 2); anything else exits 1.
std::optional<int> collectively_exit_code(const Comm& comm, const std::function<void()>& work);

// The exit code of a failure the library agreed on itself (collective.h),
// after the rank that holds the reason prints it.
int report(const Comm& comm, const CollectiveFailure& failure);

}  // namespace cllm
