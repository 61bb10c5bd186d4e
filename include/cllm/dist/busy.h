// BusyScope: a rank's long work of its own outside any collective (rank 0
// writing or reading a checkpoint, a rank evaluating its share), announced
// to the stall inspector (stall.h). While it lasts, a thread of the
// inspector answers the other ranks' questions with "busy with what, for so
// long", so the ranks that wait for this one neither warn nor abort: the
// work is slow, not stalled. A rank stopped by a signal stops that thread
// too, and is named as before.
//
// The work inside a BusyScope must not use the Comm (MPI is initialised
// MPI_THREAD_SERIALIZED: the inspector's thread calls MPI meanwhile); a
// collective started inside one throws std::logic_error. HDF5, whose
// parallel build calls MPI once when it starts, is started in main, before
// any BusyScope.
#pragma once

#include "cllm/dist/comm.h"

namespace cllm {

// What a busy rank is doing; named in the waiting ranks' notes.
enum class Busy {
  nothing,
  writing_checkpoint,
  reading_checkpoint,
  evaluating,
};
// "writing a checkpoint", ...
const char* to_string(Busy what);

class BusyScope {
 public:
  // No-op on a Comm that does not watch stalls. Nested scopes name the
  // innermost work, then the outer one again.
  BusyScope(const Comm& comm, Busy what);
  ~BusyScope();
  BusyScope(const BusyScope&) = delete;
  BusyScope& operator=(const BusyScope&) = delete;

 private:
  const Comm& comm_;
  Busy outer_ = Busy::nothing;
};

}  // namespace cllm
