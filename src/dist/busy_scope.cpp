// BusyScope (busy.h): tells the Comm's stall inspector, when it has one.
#include "cllm/dist/busy.h"

#include "comm_mpi.h"

namespace cllm {

BusyScope::BusyScope(const Comm& comm, Busy what) : comm_(comm) {
  if (StallInspector* inspector = comm_.mpi().inspector.get())
    outer_ = inspector->set_busy(what);
}

BusyScope::~BusyScope() {
  if (StallInspector* inspector = comm_.mpi().inspector.get()) inspector->set_busy(outer_);
}

}  // namespace cllm
