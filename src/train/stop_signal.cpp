#include "cllm/train/stop_signal.h"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <initializer_list>
#include <iterator>

namespace cllm {

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;  // written by the handler only
volatile std::sig_atomic_t g_stop_action = -1;  // a StopAction; -1: no note yet

constexpr int kStopSignals[] = {SIGUSR1, SIGTERM, SIGINT};
// What install_stop_signal_handlers replaced, kStopSignals' order; read
// outside handlers only.
struct sigaction g_previous[std::size(kStopSignals)];
bool g_installed = false;

extern "C" void record_stop_signal(int signal) {
  g_stop_signal = signal;
  if (signal == SIGINT && g_stop_action >= 0) {
    const int saved_errno = errno;  // the interrupted code may be about to read it
    // Someone at a terminal pressed Ctrl-C and sees nothing happen until the
    // step ends: say what will, and how not to wait. write() is safe in a
    // handler; printf is not.
    static constexpr char kAtStep[] =
        "cllm: SIGINT: stopping after this step with a checkpoint; Ctrl-C again stops at once, "
        "without one\n";
    static constexpr char kAfterToken[] =
        "cllm: SIGINT: stopping after this token; Ctrl-C again stops at once\n";
    const bool at_step = g_stop_action == static_cast<int>(StopAction::checkpoint_at_step);
    [[maybe_unused]] const auto written =
        at_step ? write(STDERR_FILENO, kAtStep, sizeof kAtStep - 1)
                : write(STDERR_FILENO, kAfterToken, sizeof kAfterToken - 1);
    errno = saved_errno;
  }
}
}  // namespace

void install_stop_signal_handlers() {
  if (g_installed) return;
  g_installed = true;
  for (std::size_t i = 0; i < std::size(kStopSignals); ++i) sigaction(kStopSignals[i], nullptr, &g_previous[i]);
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
  // A launcher may have left them blocked (or one sent them blocked on
  // purpose, to be seen only once the handlers are in place).
  sigset_t stops;
  sigemptyset(&stops);
  for (const int signal : kStopSignals) sigaddset(&stops, signal);
  sigprocmask(SIG_UNBLOCK, &stops, nullptr);
}

void describe_stop_signals(StopAction action) { g_stop_action = static_cast<int>(action); }

void restore_stop_signals() {
  if (!g_installed) return;
  g_installed = false;
  for (std::size_t i = 0; i < std::size(kStopSignals); ++i) sigaction(kStopSignals[i], &g_previous[i], nullptr);
  // As if it had arrived now: the default action ends the process, an
  // inherited "ignore" ignores it.
  if (const int pending = g_stop_signal; pending != 0) {
    g_stop_signal = 0;
    raise(pending);
  }
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
