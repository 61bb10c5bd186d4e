// GradientReducer: sums the OpenMP threads' gradient buffers into the rank's
// gradient, then across ranks, bucket by bucket: while the threads sum bucket
// b + 1 in-rank, the main thread's MPI_Iallreduce of bucket b is already on
// the wire (after flashlight's CoalescingReducer, which coalesces gradients
// into buckets of a byte size and allreduces each bucket as it fills).
//
// The result is bitwise independent of the thread count: every element is
// the sum of the thread buffers in buffer order, whichever thread adds it,
// and the buckets (hence the MPI messages) depend only on the layout and the
// bucket size. Only the main thread calls MPI (MPI_THREAD_FUNNELED); on one
// rank no MPI call is made.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <span>
#include <vector>

#include "cllm/dist/comm.h"
#include "cllm/dist/timeline.h"
#include "cllm/model/tensor_layout.h"

namespace cllm {

// A run of consecutive chunks of the layout whose gradient is summed across
// ranks in one MPI_Iallreduce. In-rank, the threads share out its chunks.
struct GradientBucket {
  std::size_t offset = 0;     // first element of the flat buffer it spans
  std::size_t size = 0;       // elements, from its first chunk's start to its last one's end
                              // (the zero padding between tensors included)
  std::vector<Chunk> chunks;  // make_chunks(layout)'s, in buffer order
};

// Groups make_chunks(layout) in buffer order into buckets whose span is at
// most bucket_bytes (rounded down to whole floats): a bucket takes the next
// chunk while its span, padding included, stays within the size; a chunk
// larger than the size is a bucket of its own, so a size of 0, or one smaller
// than a chunk, gives one bucket per chunk. Every element of every tensor is
// in exactly one bucket; the padding between two buckets is in none. The plan
// depends on nothing else (not on the thread count).
std::vector<GradientBucket> plan_buckets(const TensorLayout& layout, std::size_t bucket_bytes);

class GradientReducer {
 public:
  // comm must outlive us.
  GradientReducer(const Comm& comm, const TensorLayout& layout, std::size_t bucket_bytes);

  // rank_sum = sum over ranks of (sources[0] + sources[1] + ...), added in
  // that order, each buffer of the layout's total() elements. Opens its own
  // OpenMP region of `threads` threads (call it outside any region): a
  // failing MPI call must not throw out of a region, so the main thread
  // records the exception and it is rethrown here, after the region and
  // after the allreduces already started have completed. Returns the
  // seconds the main thread spent in MPI. The timeline, when on, gets each
  // thread's in-rank reduce of each bucket and each bucket's allreduce from
  // its start to its completion, labelled with step.
  double reduce(std::span<const std::span<const float>> sources, std::span<float> rank_sum,
                int threads, Timeline* timeline = nullptr, int step = 0);

  const std::vector<GradientBucket>& buckets() const { return buckets_; }

 private:
  const Comm& comm_;
  std::size_t total_;  // elements of every buffer
  std::vector<GradientBucket> buckets_;
  std::vector<MPI_Request> requests_;  // one per bucket, reused every step
  std::vector<double> started_at_, completed_at_;  // each bucket's allreduce, for the timeline
  std::vector<int> done_;                          // MPI_Testsome's indices
};

}  // namespace cllm
