#include "cllm/train/stop_signal.h"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <initializer_list>

namespace cllm {

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;  // written by the handler only

extern "C" void record_stop_signal(int signal) {
  g_stop_signal = signal;
  if (signal == SIGINT) {
    const int saved_errno = errno;  // the interrupted code may be about to read it
    // Someone at a terminal pressed Ctrl-C and sees nothing happen until the
    // step ends: say what will, and how not to wait. write() is safe in a
    // handler; printf is not.
    static constexpr char kNote[] =
        "cllm: SIGINT: stopping after this step with a checkpoint; Ctrl-C again stops at once, "
        "without one\n";
    [[maybe_unused]] const auto written = write(STDERR_FILENO, kNote, sizeof kNote - 1);
    errno = saved_errno;
  }
}
}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action = {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI and file I/O carry on; we look at the flag between steps
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // A second Ctrl-C gets SIGINT's default action back: the process dies of
  // SIGINT at once. Dying of the signal, rather than exiting with some code
  // from the handler, is what a shell running cllm in a script expects: it
  // sees the child killed by SIGINT and stops the script too.
  action.sa_flags |= SA_RESETHAND;
  sigaction(SIGINT, &action, nullptr);
}

int stop_signal_received() { return g_stop_signal; }

StopSignalsHeld::StopSignalsHeld() {
  sigset_t held;
  sigemptyset(&held);
  for (int signal : {SIGUSR1, SIGTERM, SIGINT}) {
    struct sigaction current = {};
    if (sigaction(signal, nullptr, &current) == 0 && current.sa_handler == record_stop_signal)
      sigaddset(&held, signal);
  }
  pthread_sigmask(SIG_BLOCK, &held, &previous_);
}

StopSignalsHeld::~StopSignalsHeld() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

}  // namespace cllm
