// GradientReducer: the cross-rank sum of the rank's gradient, posted unit by
// unit while backward runs. A unit is a run of whole tensors whose gradient
// is complete at one moment of backward (a block, the final layernorm, the
// embeddings); as soon as the threads have summed a unit in-rank, an
// MPI_Iallreduce of each of its buckets is posted, and the ones in flight are
// tested so that Open MPI moves them on: it progresses a nonblocking
// collective only inside MPI calls. After flashlight's CoalescingReducer and
// PyTorch DDP's buckets.
//
// Who calls MPI: with a progress interval, a progress thread of ours posts
// and tests every interval between start() and finish(), sleeping between
// (the main thread only marks units ready); without, the main thread posts
// and tests between layers. Never both at once (MPI_THREAD_SERIALIZED). On
// one rank no MPI call is made. The buckets, hence the MPI messages and the
// bits of the sum, depend only on the layout, the units and the bucket size.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "cllm/dist/comm.h"
#include "cllm/dist/timeline.h"
#include "cllm/model/tensor_layout.h"

namespace cllm {

// A run of consecutive chunks of one unit whose gradient is summed across
// ranks in one MPI_Iallreduce.
struct GradientBucket {
  std::size_t offset = 0;     // first element of the flat buffer it spans
  std::size_t size = 0;       // elements, from its first chunk's start to its last one's end
                              // (the zero padding between tensors included)
  std::vector<Chunk> chunks;  // make_chunks(layout)'s, in buffer order
  int unit = 0;               // the unit it belongs to
};

// Groups make_chunks(layout) in buffer order into buckets whose span is at
// most bucket_bytes (rounded down to whole floats): a bucket takes the next
// chunk while its span, padding included, stays within the size and the
// chunk is of the same unit; a chunk larger than the size is a bucket of its
// own, so a size of 0 gives one bucket per chunk. unit_starts: the indices of
// the tensors that begin a unit, ascending (unit i runs from unit_starts[i]
// to the next; tensors before the first are unit 0); empty: one unit. Every
// element of every tensor is in exactly one bucket; the padding between two
// buckets is in none.
std::vector<GradientBucket> plan_buckets(const TensorLayout& layout, std::size_t bucket_bytes,
                                         std::span<const std::size_t> unit_starts = {});

class GradientReducer {
 public:
  // comm must outlive us. progress_interval_us > 0 on more than one rank
  // starts the progress thread.
  GradientReducer(const Comm& comm, const TensorLayout& layout, std::size_t bucket_bytes,
                  std::vector<std::size_t> unit_starts = {}, double progress_interval_us = 0);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // One step, on the main thread. start() before the step's first post:
  // the allreduces run in place on rank_sum (the layout's total() elements).
  // post(u) when unit u's in-rank sum is complete; progress() whenever the
  // main thread can spare a moment (with a progress thread both only tell
  // it). Neither throws (they run inside an OpenMP region): a failed MPI
  // call is kept, nothing more is posted, and finish() rethrows it.
  void start(std::span<float> rank_sum);
  void post(int unit) noexcept;
  void progress() noexcept;
  // Stops the progress thread's work for this step, posts the units not
  // posted yet, then waits for every allreduce; also
  // after a failure, since those in flight write rank_sum. Returns the
  // seconds it waited. The timeline, when on, gets each bucket's allreduce
  // from its post to the completion a test saw, labelled with step.
  double finish(Timeline* timeline = nullptr, int step = 0);
  // Seconds in MPI calls since start(), whichever thread made them.
  double mpi_seconds() const { return mpi_seconds_; }

  int units() const { return n_units_; }
  const std::vector<GradientBucket>& buckets() const { return buckets_; }

 private:
  bool distributed() const { return comm_.size() > 1; }
  // The MPI work of post() and progress(), on whichever thread calls MPI now.
  void post_now(int unit);
  void post_queued();  // the queued units not posted yet, in queue order
  bool test_now();  // whether any allreduce was still in flight
  void progress_loop();  // the progress thread

  const Comm& comm_;
  std::size_t total_;  // elements of the summed buffer
  int n_units_ = 1;
  std::vector<GradientBucket> buckets_;
  std::vector<std::vector<int>> unit_buckets_;  // each unit's buckets
  std::vector<bool> posted_;                    // per unit, this step
  float* sum_ = nullptr;                        // start()'s rank_sum
  struct Requests;                    // MPI's, one per bucket (gradient_reducer.cpp)
  std::unique_ptr<Requests> requests_;  // reused every step
  std::vector<double> started_at_, completed_at_;  // each bucket's allreduce, for the timeline
  std::exception_ptr failure_;                     // the first failed MPI call of the step
  double mpi_seconds_ = 0;
  bool arrived_ = false;  // Comm::arrive called this step

  // The progress thread, and its hand-over with the main thread: between
  // start() and finish() (active_) only it calls MPI.
  std::chrono::duration<double, std::micro> interval_;
  // Units summed in-rank, in the order post() was called: every rank must
  // start its collectives in one order, so the progress thread posts them in
  // this one. post() appends (main thread), the progress thread takes.
  std::vector<int> queue_;
  std::atomic<int> queued_{0};
  int taken_ = 0;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  bool active_ = false, working_ = false, quit_ = false;
  std::thread thread_;
};

}  // namespace cllm
