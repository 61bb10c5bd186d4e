// The timeline and its Chrome trace file (include/cllm/dist/timeline.h).
#include "cllm/dist/timeline.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <utility>

namespace cllm {

namespace {

template <typename... Args>
void append(std::string& out, const char* format, Args... args) {
  char buf[512];
  const int n = std::snprintf(buf, sizeof buf, format, args...);
  if (n > 0) out.append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

}  // namespace

Timeline::Timeline(const std::string& path, double max_mb, int threads, const Comm& comm,
                   SettingNames name_of)
    : threads_(static_cast<std::size_t>(std::max(threads, 1))) {
  for (auto& events : threads_) events.reserve(1024);
  if (!comm.is_root()) return;
  file_ = std::make_unique<TraceFile>(path, max_mb, std::move(name_of));
}

void Timeline::start(const Comm& comm) {
  if (on()) zero_ = comm.synchronized_now(Collective::trace);
}

void Timeline::span(int thread, const char* name, double begin, double end, int step,
                    const char* arg_name, int arg) {
  if (!on()) return;
  threads_[thread].push_back({name, arg_name, arg, step, -1, begin, end});
}

void Timeline::async_span(const char* name, int id, double begin, double end, int step) {
  if (!on()) return;
  threads_[0].push_back({name, "bucket", id, step, id, begin, end});
}

namespace {

// "the gradient allreduce" (to_string) -> "wait: gradient allreduce", made
// once for every collective: events keep a pointer to their name.
const char* wait_span_name(Collective what) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> made;
    for (int c = 0; c <= static_cast<int>(Collective::trace); ++c) {
      std::string name = to_string(static_cast<Collective>(c));
      if (name.rfind("the ", 0) == 0) name.erase(0, 4);
      made.push_back("wait: " + name);
    }
    return made;
  }();
  return names[static_cast<std::size_t>(what)].c_str();
}

}  // namespace

void Timeline::waits(const std::vector<CollectiveWait>& waits) {
  if (!on()) return;
  for (const CollectiveWait& w : waits)
    if (w.begin >= zero_)  // not those of setting up, before the zero was agreed
      threads_[0].push_back({wait_span_name(w.what), nullptr, 0, w.step, -1, w.begin, w.end});
}

std::string Timeline::take_json(int rank) {
  std::string out;
  const auto separate = [&] {
    if (!out.empty()) out += ",\n";
  };
  if (!described_) {
    described_ = true;
    separate();
    // Not through append's fixed buffer: the host name's length is not ours.
    out += R"J({"name":"process_name","ph":"M","pid":)J" + std::to_string(rank) +
           R"J(,"args":{"name":)J" +
           json_string("rank " + std::to_string(rank) + " (" + host_name() + ")") + "}}";
    separate();
    append(out, R"J({"name":"process_sort_index","ph":"M","pid":%d,"args":{"sort_index":%d}})J",
           rank, rank);
    for (std::size_t t = 0; t < threads_.size(); ++t) {
      separate();
      append(out, R"J({"name":"thread_name","ph":"M","pid":%d,"tid":%zu,"args":{"name":"thread %zu%s"}})J",
             rank, t, t, t == 0 ? " (main)" : "");
    }
  }
  const auto us = [&](double t) { return (t - zero_) * 1e6; };
  for (std::size_t t = 0; t < threads_.size(); ++t) {
    std::vector<Event>& events = threads_[t];
    // In time order, an enclosing span before the spans it holds.
    std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
    });
    for (const Event& e : events) {
      std::string args;
      append(args, R"J({"step":%d)J", e.step);
      if (e.arg_name) append(args, R"J(,"%s":%d)J", e.arg_name, e.arg);
      args += "}";
      separate();
      if (e.async_id < 0) {
        append(out, R"J({"name":"%s","ph":"X","pid":%d,"tid":%zu,"ts":%.3f,"dur":%.3f,"args":%s})J",
               e.name, rank, t, us(e.begin), us(e.end) - us(e.begin), args.c_str());
      } else {
        // Async events pair by category and id: one id per span of the run.
        append(out,
               R"J({"name":"%s","cat":"allreduce","ph":"b","id2":{"local":"%d.%d"},"pid":%d,"tid":%zu,"ts":%.3f,"args":%s})J",
               e.name, e.step, e.async_id, rank, t, us(e.begin), args.c_str());
        out += ",\n";
        append(out,
               R"J({"name":"%s","cat":"allreduce","ph":"e","id2":{"local":"%d.%d"},"pid":%d,"tid":%zu,"ts":%.3f})J",
               e.name, e.step, e.async_id, rank, t, us(e.end));
      }
    }
    events.clear();
  }
  return out;
}

void Timeline::flush(const Comm& comm, int step) {
  if (!on()) return;
  steps_since_flush_ = 0;
  const std::vector<std::string> texts = comm.gather_text(take_json(comm.rank()), Collective::trace);
  bool writing = true;
  if (file_) {
    // One append: the events go out whole, together.
    std::string events;
    for (const std::string& text : texts) {
      if (text.empty()) continue;
      if (!events.empty()) events += ",\n";
      events += text;
    }
    file_->append(events, step);
    writing = !file_->ended();
  }
  comm.broadcast_value(writing, Collective::trace);
  if (!writing) {  // rank 0 said why
    threads_.clear();
    file_.reset();
  }
}

void Timeline::step_done(const Comm& comm, int step) {
  if (on() && ++steps_since_flush_ >= kFlushSteps) flush(comm, step);
}

TimedSpan::TimedSpan(Timeline& timeline, int thread, const char* name, int step,
                     const char* arg_name, int arg)
    : timeline_(timeline), thread_(thread), step_(step), arg_(arg), name_(name),
      arg_name_(arg_name) {
  if (timeline_.on()) begin_ = omp_get_wtime();
}

TimedSpan::~TimedSpan() {
  if (timeline_.on())
    timeline_.span(thread_, name_, begin_, omp_get_wtime(), step_, arg_name_, arg_);
}

PhaseClock::PhaseClock(Timeline* timeline, int thread, int step)
    : timeline_(timeline && timeline->on() ? timeline : nullptr),
      thread_(thread),
      step_(step),
      start_(omp_get_wtime()),
      last_(start_) {}

double PhaseClock::lap(const char* name, const char* arg_name, int arg) {
  const double now = omp_get_wtime(), begin = std::exchange(last_, now);
  if (name && timeline_) timeline_->span(thread_, name, begin, now, step_, arg_name, arg);
  return now - begin;
}

double PhaseClock::whole(const char* name, const char* arg_name, int arg) {
  if (name && timeline_) timeline_->span(thread_, name, start_, last_, step_, arg_name, arg);
  return last_ - start_;
}

}  // namespace cllm
