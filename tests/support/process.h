// Helpers for end-to-end tests: run the cllm executable (CLLM_BINARY) with
// stdout and stderr captured separately, in a fresh temporary folder.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/text.h"

extern char** environ;

// Defined in ASan and TSan builds, by GCC's macros or clang's __has_feature:
// the sanitizers reserve terabytes of address space, so `ulimit -v` cases skip.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CLLM_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CLLM_TEST_SANITIZED 1
#endif
#endif

namespace cllm::test {

// A folder under the system's temporary directory, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cllm-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out, err;
  bool timed_out = false;  // killed by wait_program's time limit
};

// A child process started by start_program.
struct Running {
  pid_t pid = -1;
  std::string out_path, err_path;
};

// Starts program with args in the folder `scratch` (so relative default
// paths such as data/austen.txt and runs/default resolve there); stdout and
// stderr go to files in it. pending_signal (if not 0) is blocked and sent
// before the exec: the program finds it pending, as if it had come at its
// first instruction.
// The child's environment is ours plus: no leak checking (Open MPI's MPI_Init
// leaks by design), Open MPI's permission to run as root, and extra_env
// ("NAME=value" entries, which win over ours).
inline Running start_program(const std::string& program, const std::vector<std::string>& args,
                             const std::filesystem::path& scratch,
                             const std::vector<std::string>& extra_env = {},
                             int pending_signal = 0) {
  static int counter = 0;
  const std::string tag = std::to_string(counter++);
  Running r;
  r.out_path = (scratch / ("stdout." + tag)).string();
  r.err_path = (scratch / ("stderr." + tag)).string();
  const std::string cwd = scratch.string();

  // Everything the child needs is built before fork: the parent may run threads.
  std::vector<std::string> env_strings;
  std::string asan = "detect_leaks=0";
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (kv.rfind("ASAN_OPTIONS=", 0) == 0) {
      asan = kv.substr(13) + ":detect_leaks=0";  // later options win
      continue;
    }
    if (kv.rfind("OMPI_ALLOW_RUN_AS_ROOT", 0) == 0) continue;
    const std::string name = kv.substr(0, kv.find('=') + 1);
    const auto overridden = [&](const std::string& extra) { return extra.rfind(name, 0) == 0; };
    if (std::any_of(extra_env.begin(), extra_env.end(), overridden)) continue;
    env_strings.push_back(kv);
  }
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  env_strings.push_back("ASAN_OPTIONS=" + asan);
  env_strings.push_back("OMPI_ALLOW_RUN_AS_ROOT=1");
  env_strings.push_back("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> argv_strings = {program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    const int o = open(r.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = open(r.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || in < 0) _exit(126);
    if (dup2(o, STDOUT_FILENO) < 0 || dup2(e, STDERR_FILENO) < 0 || dup2(in, STDIN_FILENO) < 0)
      _exit(126);
    if (chdir(cwd.c_str()) != 0) _exit(126);
    if (pending_signal != 0) {
      sigset_t blocked;
      sigemptyset(&blocked);
      sigaddset(&blocked, pending_signal);
      if (sigprocmask(SIG_BLOCK, &blocked, nullptr) != 0 || kill(getpid(), pending_signal) != 0) _exit(126);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  r.pid = pid;
  return r;
}

// Waits for a started program; its exit code and output.
inline ProcessResult wait_program(const Running& running) {
  int status = 0;
  while (waitpid(running.pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid failed");
  }
  ProcessResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(running.out_path);
  r.err = read_file(running.err_path);
  return r;
}

// Waits at most `limit` for a started program, then kills it (SIGKILL) and
// waits for that: for programs that might hang, which a test must report
// rather than sit in until ctest's timeout.
inline ProcessResult wait_program(const Running& running, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() < deadline) {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(running.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 &&
        errno != EINTR)
      throw std::runtime_error("waitid failed");
    ended = info.si_pid == running.pid;
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!ended) kill(running.pid, SIGKILL);
  ProcessResult r = wait_program(running);
  r.timed_out = !ended;
  return r;
}

// Runs program to its end (see start_program).
inline ProcessResult run_program(const std::string& program, const std::vector<std::string>& args,
                                 const std::filesystem::path& scratch,
                                 const std::vector<std::string>& extra_env = {}) {
  return wait_program(start_program(program, args, scratch, extra_env));
}

// The cllm under test: CLLM_BINARY as built, or $CLLM_TEST_BINARY (to show
// that a test fails on another build, an older one say).
inline std::string cllm_binary() {
  const char* other = std::getenv("CLLM_TEST_BINARY");
  return other && *other ? other : CLLM_BINARY;
}

inline ProcessResult run_cllm(const std::vector<std::string>& args,
                              const std::filesystem::path& scratch,
                              const std::vector<std::string>& extra_env = {}) {
  return run_program(cllm_binary(), args, scratch, extra_env);
}

#ifdef CLLM_MPIEXEC
// Runs CLLM_BINARY as `ranks` MPI ranks through mpiexec, with the sanitizer
// options passed on to every rank. --oversubscribe and --bind-to none: tests
// start more ranks x threads than this machine has cores, and passive OpenMP
// waiting keeps oversubscribed threads from spinning against each other.
// When a rank exits non-zero, mpiexec signals the others and waits
// odls_base_sigkill_timeout (1 s) before it kills them: 2 s per failed run
// here. cllm's ranks agree on a failure and meet in MPI_Finalize's fence
// before any exits, so the tests need not wait.
inline ProcessResult run_cllm_mpi(int ranks, const std::vector<std::string>& args,
                                  const std::filesystem::path& scratch) {
  std::vector<std::string> full = {"-n", std::to_string(ranks), "--oversubscribe",
                                   "--bind-to", "none", "--mca", "odls_base_sigkill_timeout", "0",
                                   "-x", "ASAN_OPTIONS", "-x", "OMP_WAIT_POLICY=passive"};
  if (std::getenv("TSAN_OPTIONS")) full.insert(full.end(), {"-x", "TSAN_OPTIONS"});
  full.push_back(cllm_binary());
  full.insert(full.end(), args.begin(), args.end());
  return run_program(CLLM_MPIEXEC, full, scratch);
}
#endif

// For failure messages: the command line.
inline std::string join(const std::vector<std::string>& args) {
  std::string s = "cllm";
  for (const auto& a : args) s += " " + a;
  return s;
}

}  // namespace cllm::test
