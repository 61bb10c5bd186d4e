// Timeline: where a run's time goes, per rank and per thread, as a Chrome
// trace event file (JSON, read by Perfetto and chrome://tracing; after
// Horovod's timeline and PyTorch's profiler): each rank is a process, each
// OpenMP thread a thread (thread 0 is the main thread), and each span of work
// one complete ("X") event. The allreduces in flight overlap the main
// thread's own work, so they are async ("b"/"e") events.
//
// Each thread records into its own buffer, without a lock. Between steps,
// at least every kFlushSteps steps, the main threads hand their events to
// rank 0 (flush, a collective), which appends them to the one file
// (trace_file.h: whole events, never another file's data): memory stays
// bounded however long the run and whatever --log-every, and a run killed
// midway leaves a file that the viewers read (the JSON array format lets the
// closing bracket go missing). When rank 0's file ends early (a write error,
// its size bound), the flush tells every rank, and tracing stops everywhere.
//
// An empty Timeline (tracing off) records nothing; callers test on() before
// they read a clock.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cllm/base/setting_error.h"
#include "cllm/dist/comm.h"
#include "cllm/dist/stall.h"
#include "cllm/dist/trace_file.h"

namespace cllm {

class Timeline {
 public:
  // The most steps whose events a rank holds before it flushes them.
  static constexpr int kFlushSteps = 10;

  Timeline() = default;  // off
  // On, for `threads` threads: rank 0 creates the file at path, at most
  // max_mb MiB (TraceFile; throws std::runtime_error naming it); name_of
  // names settings in its warnings. Check the path first (check_trace_path).
  // Not collective: make it inside collectively() and then call start().
  Timeline(const std::string& path, double max_mb, int threads, const Comm& comm,
           SettingNames name_of = recorded_name);

  bool on() const { return !threads_.empty(); }
  // The ranks agree on the zero of time (a barrier). Collective.
  void start(const Comm& comm);

  // Thread t spent [begin, end) (omp_get_wtime() seconds) on name, a string
  // literal, at step; arg_name/arg, when given, add one more figure (the
  // micro-batch, the bucket). Only thread t calls it for t.
  void span(int thread, const char* name, double begin, double end, int step,
            const char* arg_name = nullptr, int arg = 0);
  // The main thread: a span that overlaps others (an allreduce in flight).
  void async_span(const char* name, int id, double begin, double end, int step);
  // The main thread: the collectives' waits (Comm::take_waits), as spans
  // of thread 0 named "wait: <collective>".
  void waits(const std::vector<CollectiveWait>& waits);

  // Every rank's events so far, appended to the file by rank 0; step names
  // the step in rank 0's warnings. When the file has ended, tracing stops on
  // every rank (on() turns false). Collective.
  void flush(const Comm& comm, int step);
  // A step is done: flushes when kFlushSteps steps went by since the last
  // flush. Collective: every rank calls it after every step.
  void step_done(const Comm& comm, int step);

 private:
  struct Event {
    const char* name;
    const char* arg_name;
    int arg, step, async_id;  // async_id < 0: a complete event
    double begin, end;
  };
  std::string take_json(int rank);

  std::vector<std::vector<Event>> threads_;
  double zero_ = 0;
  bool described_ = false;  // the process and thread names went out
  int steps_since_flush_ = 0;
  std::unique_ptr<TraceFile> file_;  // rank 0's
};

// Records thread t's span from its construction to its destruction (on an
// off timeline: nothing, and no clock read).
class TimedSpan {
 public:
  TimedSpan(Timeline& timeline, int thread, const char* name, int step,
            const char* arg_name = nullptr, int arg = 0);
  ~TimedSpan();
  TimedSpan(const TimedSpan&) = delete;
  TimedSpan& operator=(const TimedSpan&) = delete;

 private:
  Timeline& timeline_;
  int thread_, step_, arg_;
  const char* name_;
  const char* arg_name_;
  double begin_ = 0;
};

// One thread's clock over the consecutive phases of a step. lap() ends the
// current phase and returns its seconds; given a name, and a timeline that
// is on, the phase is a span of the thread too. So the code that is timed
// reads as its work, one lap a phase.
class PhaseClock {
 public:
  // timeline may be null (no spans).
  PhaseClock(Timeline* timeline, int thread, int step);
  double lap(const char* name = nullptr, const char* arg_name = nullptr, int arg = 0);
  // Seconds from the clock's start to the last lap, a span when named.
  double whole(const char* name = nullptr, const char* arg_name = nullptr, int arg = 0);

 private:
  Timeline* timeline_;  // null when off
  int thread_, step_;
  double start_, last_;
};

}  // namespace cllm
