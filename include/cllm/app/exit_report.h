// How a command ends when its ranks agreed on a failure (dist/collective.h):
// one line on stderr from the rank that holds the reason, and one exit code
// on every rank.
#pragma once

#include "cllm/base/setting_error.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"

namespace cllm {

// Prints failure's reason where this rank holds it - "cllm: error: [rank
// R: ]what" on one line, a SettingError's settings named by names (the
// CLI: --layers for n_layer), a CommandLineError without a rank, --help's
// text on stdout - and returns the exit code every rank agreed on.
int report(const Comm& comm, const CollectiveFailure& failure, const SettingNames& names);

}  // namespace cllm
