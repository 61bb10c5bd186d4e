// GradientReducer: the cross-rank allreduce of the rank's gradient, unit by
// unit as backward completes them (include/cllm/dist/gradient_reducer.h).
#include "cllm/dist/gradient_reducer.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "comm_mpi.h"
#include "mpi_check.h"

namespace cllm {

std::vector<GradientBucket> plan_buckets(const TensorLayout& layout, std::size_t bucket_bytes,
                                         std::span<const std::size_t> unit_starts) {
  // MPI counts are int: no bucket spans more (a chunk is far smaller).
  const std::size_t max_floats =
      std::min<std::size_t>(bucket_bytes / sizeof(float), static_cast<std::size_t>(INT_MAX));
  // Each tensor's unit.
  for (std::size_t u = 0; u < unit_starts.size(); ++u)
    if (unit_starts[u] > layout.count() || (u > 0 && unit_starts[u] <= unit_starts[u - 1]))
      throw std::invalid_argument("plan_buckets: unit starts must ascend within the layout");
  // One pass, linear in the layout (a checkpoint may claim 100,000 layers).
  std::vector<int> unit_of(layout.count(), 0);
  for (std::size_t t = 0, u = 0; t < layout.count(); ++t) {
    while (u + 1 < unit_starts.size() && unit_starts[u + 1] <= t) ++u;
    if (!unit_starts.empty() && unit_starts[u] <= t) unit_of[t] = static_cast<int>(u);
  }
  std::vector<GradientBucket> buckets;
  std::size_t tensor = 0;
  for (const Chunk& chunk : make_chunks(layout)) {
    while (chunk.offset >= layout[tensor].offset + layout[tensor].numel) ++tensor;
    const int unit = unit_of[tensor];
    const std::size_t end = chunk.offset + chunk.size;
    if (buckets.empty() || buckets.back().unit != unit ||
        end - buckets.back().offset > max_floats)
      buckets.push_back({chunk.offset, 0, {}, unit});
    GradientBucket& bucket = buckets.back();
    bucket.size = end - bucket.offset;  // spans the padding between its tensors
    bucket.chunks.push_back(chunk);
  }
  return buckets;
}

struct GradientReducer::Requests {
  explicit Requests(std::size_t n) : of(n, MPI_REQUEST_NULL), done(n) {}
  std::vector<MPI_Request> of;
  std::vector<int> done;  // MPI_Testsome's indices
};

GradientReducer::GradientReducer(const Comm& comm, const TensorLayout& layout,
                                 std::size_t bucket_bytes, std::vector<std::size_t> unit_starts,
                                 double progress_interval_us)
    : comm_(comm),
      total_(layout.total()),
      n_units_(std::max<int>(1, static_cast<int>(unit_starts.size()))),
      buckets_(plan_buckets(layout, bucket_bytes, unit_starts)),
      unit_buckets_(n_units_),
      posted_(n_units_, false),
      requests_(std::make_unique<Requests>(buckets_.size())),
      started_at_(buckets_.size()),
      completed_at_(buckets_.size()),
      interval_(progress_interval_us),
      queue_(n_units_) {
  for (std::size_t b = 0; b < buckets_.size(); ++b)
    unit_buckets_[buckets_[b].unit].push_back(static_cast<int>(b));
  if (distributed() && progress_interval_us > 0) thread_ = std::thread([this] { progress_loop(); });
}

GradientReducer::~GradientReducer() {
  if (!thread_.joinable()) return;
  {
    const std::lock_guard lock(mutex_);
    quit_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void GradientReducer::progress_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return active_ || quit_; });
    if (quit_) return;
    working_ = true;
    bool in_flight = false;
    while (active_) {
      // Nothing posted or in flight (the forward pass, the gaps between
      // posts): asleep until post() or finish(), not waking every interval
      // on a core the ranks compute on.
      if (!in_flight && queued_.load(std::memory_order_acquire) == taken_) {
        wake_.wait(lock, [this] {
          return !active_ || quit_ || queued_.load(std::memory_order_acquire) > taken_;
        });
        continue;
      }
      lock.unlock();
      post_queued();
      in_flight = test_now();
      std::this_thread::sleep_for(interval_);
      lock.lock();
    }
    working_ = false;
    idle_.notify_one();
  }
}

void GradientReducer::start(std::span<float> rank_sum) {
  if (rank_sum.size() != total_)
    throw std::invalid_argument("GradientReducer::start: a sum buffer of " +
                                std::to_string(rank_sum.size()) + " elements, not " +
                                std::to_string(total_));
  sum_ = rank_sum.data();
  std::fill(posted_.begin(), posted_.end(), false);
  std::fill(completed_at_.begin(), completed_at_.end(), 0.0);
  failure_ = nullptr;
  mpi_seconds_ = 0;
  arrived_ = false;
  queued_.store(0, std::memory_order_relaxed);
  taken_ = 0;
  if (thread_.joinable()) {
    {
      const std::lock_guard lock(mutex_);
      active_ = true;
    }
    wake_.notify_one();
  }
}

void GradientReducer::post(int unit) noexcept {
  if (unit < 0 || unit >= n_units_) return;
  if (!thread_.joinable()) return post_now(unit);
  const int n = queued_.load(std::memory_order_relaxed);  // only this thread appends
  if (n >= n_units_) return;
  queue_[n] = unit;
  queued_.store(n + 1, std::memory_order_release);  // the progress thread posts it
  // Through the mutex: the thread then either saw the new count or waits.
  { const std::lock_guard lock(mutex_); }
  wake_.notify_one();
}

void GradientReducer::post_queued() {
  const int n = queued_.load(std::memory_order_acquire);
  while (taken_ < n) post_now(queue_[taken_++]);
}

void GradientReducer::progress() noexcept {
  if (!thread_.joinable()) test_now();
}

void GradientReducer::post_now(int unit) {
  if (posted_[unit]) return;
  posted_[unit] = true;
  if (!distributed() || failure_) return;
  const double m0 = omp_get_wtime();
  try {
    // The rank enters the collective (for the stall inspector) with its
    // first bucket, not at start(): its forward pass is not a wait.
    if (!arrived_) comm_.arrive(Collective::gradient_allreduce);
    arrived_ = true;
    for (int b : unit_buckets_[unit]) {
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, sum_ + buckets_[b].offset,
                               static_cast<int>(buckets_[b].size), MPI_FLOAT, MPI_SUM,
                               comm_.mpi().comm, &requests_->of[b]),
                "MPI_Iallreduce");
      started_at_[b] = m0;
    }
  } catch (...) {
    failure_ = std::current_exception();
  }
  mpi_seconds_ += omp_get_wtime() - m0;
  test_now();
}

bool GradientReducer::test_now() {
  if (!distributed() || failure_) return false;
  const double m0 = omp_get_wtime();
  bool in_flight = false;
  try {
    int n = 0;
    std::vector<MPI_Request>& of = requests_->of;
    check_mpi(MPI_Testsome(static_cast<int>(of.size()), of.data(), &n, requests_->done.data(),
                           MPI_STATUSES_IGNORE),
              "MPI_Testsome");
    const double now = omp_get_wtime();
    for (int i = 0; i < n && n != MPI_UNDEFINED; ++i) completed_at_[requests_->done[i]] = now;
    in_flight = n != MPI_UNDEFINED;  // some were; the next test tells whether any still are
  } catch (...) {
    failure_ = std::current_exception();
  }
  mpi_seconds_ += omp_get_wtime() - m0;
  return in_flight;
}

double GradientReducer::finish(Timeline* timeline, int step) {
  if (!distributed()) return 0.0;
  if (thread_.joinable()) {
    // Take MPI back from the progress thread.
    std::unique_lock lock(mutex_);
    active_ = false;
    wake_.notify_one();  // it may be waiting for a post
    idle_.wait(lock, [this] { return !working_; });
  }
  // What the progress thread had not taken yet, in its order; then what was
  // never posted (--overlap off: all), in buffer order. The same on every rank.
  post_queued();
  for (int u = 0; u < n_units_; ++u) post_now(u);
  const double w0 = omp_get_wtime();
  std::exception_ptr waiting;
  try {
    comm_.mpi().complete(requests_->of, completed_at_);
  } catch (...) {
    waiting = std::current_exception();
  }
  const double waited = omp_get_wtime() - w0;
  mpi_seconds_ += waited;
  std::fill(requests_->of.begin(), requests_->of.end(), MPI_REQUEST_NULL);
  if (failure_) std::rethrow_exception(failure_);
  if (waiting) std::rethrow_exception(waiting);
  if (timeline && timeline->on())
    for (std::size_t b = 0; b < buckets_.size(); ++b)
      timeline->async_span("allreduce bucket", static_cast<int>(b), started_at_[b],
                           completed_at_[b], step);
  return waited;
}

}  // namespace cllm
