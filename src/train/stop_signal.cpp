#include "cllm/stop_signal.h"

#include <csignal>

namespace cllm {

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;  // written by the handler only

extern "C" void record_stop_signal(int signal) { g_stop_signal = signal; }
}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action = {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI and file I/O carry on; we look at the flag between steps
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int stop_signal_received() { return g_stop_signal; }

}  // namespace cllm
