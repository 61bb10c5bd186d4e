#include "cllm/app/log_interval.h"

#include <algorithm>
#include <vector>

namespace cllm {

LogInterval::LogInterval(const Comm& comm, Timeline& timeline, const TrainConfig& config,
                         std::int64_t first_step)
    : comm_(comm), timeline_(timeline), config_(config), first_step_(first_step) {}

void LogInterval::add(const StepResult& step) {
  seconds_ += step.seconds.total;
  run_seconds_ += step.seconds.total;
  ++steps_;
}

void LogInterval::collect_waits() {
  const std::vector<CollectiveWait> waits = comm_.take_waits();
  for (const CollectiveWait& w : waits) wait_seconds_ += w.end - w.begin;
  timeline_.waits(waits);
}

LogRecord LogInterval::close(int done, const StepResult& last) {
  LogRecord rec;
  rec.step = done;
  rec.total_steps = config_.steps;
  rec.loss = last.loss;
  rec.lr = last.lr;
  rec.grad_norm = last.grad_norm;
  rec.ms_per_step = 1000.0 * seconds_ / steps_;
  rec.tokens_per_s = static_cast<double>(config_.tokens_per_step()) * steps_ / seconds_;
  rec.eta_s = run_seconds_ / (done - first_step_) * (config_.steps - done);
  rec.precision = config_.batch.matmul.precision;
  // The rank that waits least is the one the others wait for.
  const std::vector<double> rank_waits = comm_.all_gather(wait_seconds_ / steps_, Collective::log);
  rec.ranks = comm_.size();
  rec.comm_wait_s = *std::max_element(rank_waits.begin(), rank_waits.end());
  rec.slowest_rank = static_cast<int>(std::min_element(rank_waits.begin(), rank_waits.end()) -
                                      rank_waits.begin());
  seconds_ = wait_seconds_ = 0;
  steps_ = 0;
  return rec;
}

}  // namespace cllm
