// GradientReducer: the in-rank sum of the thread gradients, overlapped with
// the cross-rank allreduce, bucket by bucket (include/cllm/dist/gradient_reducer.h).
#include "cllm/dist/gradient_reducer.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>

#include "mpi_check.h"

namespace cllm {

std::vector<GradientBucket> plan_buckets(const TensorLayout& layout, std::size_t bucket_bytes) {
  // MPI counts are int: no bucket spans more (a chunk is far smaller).
  const std::size_t max_floats =
      std::min<std::size_t>(bucket_bytes / sizeof(float), static_cast<std::size_t>(INT_MAX));
  std::vector<GradientBucket> buckets;
  for (const Chunk& chunk : make_chunks(layout)) {
    const std::size_t end = chunk.offset + chunk.size;
    if (buckets.empty() || end - buckets.back().offset > max_floats)
      buckets.push_back({chunk.offset, 0, {}});
    GradientBucket& bucket = buckets.back();
    bucket.size = end - bucket.offset;  // spans the padding between its tensors
    bucket.chunks.push_back(chunk);
  }
  return buckets;
}

GradientReducer::GradientReducer(const Comm& comm, const TensorLayout& layout,
                                 std::size_t bucket_bytes)
    : comm_(comm),
      total_(layout.total()),
      buckets_(plan_buckets(layout, bucket_bytes)),
      requests_(buckets_.size(), MPI_REQUEST_NULL),
      started_at_(buckets_.size()),
      completed_at_(buckets_.size()),
      done_(buckets_.size()) {}

double GradientReducer::reduce(std::span<const std::span<const float>> sources,
                               std::span<float> rank_sum, int threads, Timeline* timeline,
                               int step) {
  if (sources.empty()) throw std::invalid_argument("GradientReducer::reduce: no gradient buffers");
  for (std::span<const float> source : sources)
    if (source.size() != total_)
      throw std::invalid_argument("GradientReducer::reduce: a gradient buffer of " +
                                  std::to_string(source.size()) + " elements, not " +
                                  std::to_string(total_));
  if (rank_sum.size() != total_)
    throw std::invalid_argument("GradientReducer::reduce: a sum buffer of " +
                                std::to_string(rank_sum.size()) + " elements, not " +
                                std::to_string(total_));
  const int n_sources = static_cast<int>(sources.size());
  const bool distributed = comm_.size() > 1;
  const bool tracing = timeline && timeline->on();
  double mpi_seconds = 0.0;  // written by the main thread only
  std::exception_ptr failure;  // the main thread's first failed MPI call
  if (distributed) comm_.arrive(Collective::gradient_allreduce);
  std::fill(completed_at_.begin(), completed_at_.end(), 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int me = omp_get_thread_num();
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      // Sum the buffers in buffer order, parallel over the bucket's chunks.
      const double r0 = tracing ? omp_get_wtime() : 0.0;
      const std::vector<Chunk>& chunks = buckets_[b].chunks;
      const auto n_chunks = static_cast<std::int64_t>(chunks.size());
#pragma omp for schedule(static) nowait
      for (std::int64_t c = 0; c < n_chunks; ++c) {
        const std::size_t off = chunks[c].offset, size = chunks[c].size;
        float* dst = rank_sum.data() + off;
        std::copy_n(sources[0].data() + off, size, dst);
        for (int s = 1; s < n_sources; ++s) {
          const float* src = sources[s].data() + off;
          for (std::size_t i = 0; i < size; ++i) dst[i] += src[i];
        }
      }
      if (tracing)
        timeline->span(me, "reduce bucket", r0, omp_get_wtime(), step, "bucket",
                       static_cast<int>(b));
#pragma omp barrier
      // (bucket b is summed in-rank)
      if (distributed) {
#pragma omp master
        if (!failure) {
          // MPI_THREAD_FUNNELED: only the main thread calls MPI. Testing the
          // earlier buckets lets MPI progress them while the threads go on.
          // An exception must not leave the OpenMP region: it is kept, no
          // further bucket is started, and reduce rethrows it.
          const double m0 = omp_get_wtime();
          try {
            MPI_Request request = MPI_REQUEST_NULL;
            check_mpi(MPI_Iallreduce(MPI_IN_PLACE, rank_sum.data() + buckets_[b].offset,
                                     static_cast<int>(buckets_[b].size), MPI_FLOAT, MPI_SUM,
                                     comm_.get(), &request),
                      "MPI_Iallreduce");
            requests_[b] = request;
            started_at_[b] = m0;
            int n = 0;
            check_mpi(MPI_Testsome(static_cast<int>(b + 1), requests_.data(), &n,
                                   done_.data(), MPI_STATUSES_IGNORE),
                      "MPI_Testsome");
            const double now = omp_get_wtime();
            for (int i = 0; i < n && n != MPI_UNDEFINED; ++i) completed_at_[done_[i]] = now;
          } catch (...) {
            failure = std::current_exception();
          }
          mpi_seconds += omp_get_wtime() - m0;
        }
      }
    }
  }
  if (distributed) {
    // Also after a failure: the allreduces already started write rank_sum,
    // so they complete before the caller sees the error.
    const double m0 = omp_get_wtime();
    std::exception_ptr waiting;
    try {
      comm_.complete(requests_, completed_at_);
    } catch (...) {
      waiting = std::current_exception();
    }
    mpi_seconds += omp_get_wtime() - m0;
    std::fill(requests_.begin(), requests_.end(), MPI_REQUEST_NULL);
    if (failure) std::rethrow_exception(failure);
    if (waiting) std::rethrow_exception(waiting);
    if (tracing)
      for (std::size_t b = 0; b < buckets_.size(); ++b)
        timeline->async_span("allreduce bucket", static_cast<int>(b), started_at_[b],
                             completed_at_[b], step);
  }
  return mpi_seconds;
}

}  // namespace cllm
