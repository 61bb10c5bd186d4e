// What the CPUs did, for cllm bench: this process's CPU time and peak memory
// (getrusage), and the whole machine's CPU ticks from /proc/stat, whose
// "steal" shows a hypervisor running something else on our virtual CPUs.
#pragma once

namespace cllm {

// CPU time (user + system) of this process so far, all threads together.
double process_cpu_seconds();

// This process's peak resident memory so far.
double peak_rss_bytes();

// The whole machine's CPU time in /proc/stat's ticks: in all, and stolen by
// the hypervisor (time a virtual CPU wanted to run and the host ran something
// else).
struct MachineCpuTicks {
  double total = 0, steal = 0;
};

// Zeros where /proc/stat cannot be read.
MachineCpuTicks machine_cpu_ticks();

}  // namespace cllm
