// Timeline: where a run's time goes, per rank and per thread, as a Chrome
// trace event file (JSON, read by Perfetto and chrome://tracing; after
// Horovod's timeline and PyTorch's profiler): each rank is a process, each
// OpenMP thread a thread (thread 0 is the main thread), and each span of work
// one complete ("X") event. The allreduces in flight overlap the main
// thread's own work, so they are async ("b"/"e") events.
//
// Each thread records into its own buffer, without a lock. Between steps
// the main threads hand their events to rank 0 (flush, a collective), which
// appends them to the one file: memory stays bounded however long the run,
// and a run killed midway leaves a file that the viewers read (the JSON
// array format lets the closing bracket go missing).
//
// An empty Timeline (tracing off) records nothing; callers test on() before
// they read a clock.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cllm/dist/comm.h"
#include "cllm/dist/stall.h"

namespace cllm {

class Timeline {
 public:
  Timeline() = default;  // off
  // On, for `threads` threads: rank 0 creates the file at path (throws
  // std::runtime_error naming it). Not collective: make it inside
  // collectively() and then call start().
  Timeline(const std::string& path, int threads, const Comm& comm);

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

  // Every rank's events so far, appended to the file by rank 0. Collective.
  void flush(const Comm& comm);

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
  std::string path_;
  // Rank 0's file; closing it closes its JSON array.
  struct CloseTraceFile {
    void operator()(std::FILE* file) const;
  };
  std::unique_ptr<std::FILE, CloseTraceFile> file_;
  bool first_event_ = true;
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
