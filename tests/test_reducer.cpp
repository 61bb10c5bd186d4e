// The gradient reducer in one process: its bucket plan (plan_buckets) and,
// on a one-rank Comm, that it makes no MPI call (this executable never
// initialises MPI, so one would fail). The in-rank sum is the trainer's
// (test_training.cpp); the reduction across real ranks is tested by
// test_mpi_ranks.cpp and the end-to-end MPI tests.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "cllm/dist/comm.h"
#include "cllm/dist/gradient_reducer.h"
#include "cllm/kernels/rng.h"
#include "cllm/model/model.h"
#include "cllm/model/tensor_layout.h"
#include "support/bitwise.h"

namespace cllm {
namespace {

constexpr std::size_t kChunkBytes = kChunkFloats * sizeof(float);

// Tensors of every kind the plan must handle: smaller than the 16-float
// alignment (padding follows), not a multiple of it, exactly one chunk, and
// larger than a chunk (2.5 chunks: split in three).
TensorLayout mixed_layout() {
  TensorLayout layout;
  layout.add("bias", {5});
  layout.add("odd", {3, 37});
  layout.add("one_chunk", {static_cast<std::int64_t>(kChunkFloats)});
  layout.add("large", {5, static_cast<std::int64_t>(kChunkFloats / 2)});
  layout.add("after_large", {100});
  layout.add("matrix", {64, 64});
  return layout;
}

// Bucket sizes, in bytes, from none to the whole buffer.
std::vector<std::size_t> bucket_sizes(const TensorLayout& layout) {
  return {0,  1,  3,  4,  60,  64, kChunkBytes - 4, kChunkBytes, kChunkBytes + 64, 2 * kChunkBytes,
          3 * kChunkBytes + 100, layout.total() * sizeof(float),
          10 * layout.total() * sizeof(float)};
}

void expect_same_chunk(const Chunk& got, const Chunk& want, const std::string& where) {
  EXPECT_EQ(got.offset, want.offset) << where;
  EXPECT_EQ(got.size, want.size) << where;
  EXPECT_EQ(got.decay, want.decay) << where;
}

// ---------------------------------------------------------------- plan

TEST(ReducerPlan, BucketsHoldEveryChunkOnceInBufferOrder) {
  const TensorLayout layout = mixed_layout();
  const std::vector<Chunk> chunks = make_chunks(layout);
  for (std::size_t bytes : bucket_sizes(layout)) {
    SCOPED_TRACE("bucket of " + std::to_string(bytes) + " bytes");
    const std::vector<GradientBucket> buckets = plan_buckets(layout, bytes);
    std::size_t next = 0;  // index into chunks
    std::size_t previous_end = 0;
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      const GradientBucket& bucket = buckets[b];
      ASSERT_FALSE(bucket.chunks.empty()) << "bucket " << b;
      EXPECT_GE(bucket.offset, previous_end) << "bucket " << b << " overlaps the one before";
      EXPECT_EQ(bucket.offset, bucket.chunks.front().offset) << "bucket " << b;
      EXPECT_EQ(bucket.offset + bucket.size,
                bucket.chunks.back().offset + bucket.chunks.back().size)
          << "bucket " << b;
      for (const Chunk& c : bucket.chunks) {
        ASSERT_LT(next, chunks.size()) << "bucket " << b << " has more chunks than the layout";
        expect_same_chunk(c, chunks[next], "bucket " + std::to_string(b) + ", chunk " +
                                               std::to_string(next));
        ++next;
      }
      previous_end = bucket.offset + bucket.size;
    }
    EXPECT_EQ(next, chunks.size()) << "chunks left out of every bucket";
  }
}

TEST(ReducerPlan, ChunksCoverEveryTensorElementOnceAndNoPadding) {
  // make_chunks is what the buckets are made of: each tensor, in order, in
  // pieces of at most kChunkFloats, and nothing of the padding between them.
  const TensorLayout layout = mixed_layout();
  const std::vector<Chunk> chunks = make_chunks(layout);
  std::size_t c = 0;
  for (const TensorSpec& t : layout.tensors()) {
    SCOPED_TRACE(t.name);
    for (std::size_t covered = 0; covered < t.numel;) {
      ASSERT_LT(c, chunks.size());
      EXPECT_EQ(chunks[c].offset, t.offset + covered);
      EXPECT_LE(chunks[c].size, kChunkFloats);
      EXPECT_GT(chunks[c].size, 0u);
      EXPECT_EQ(chunks[c].decay, t.is_matrix());
      covered += chunks[c].size;
      EXPECT_LE(covered, t.numel);
      ++c;
    }
  }
  EXPECT_EQ(c, chunks.size());
}

TEST(ReducerPlan, NoBucketExceedsTheSizeUnlessOneChunkDoes) {
  const TensorLayout layout = mixed_layout();
  for (std::size_t bytes : bucket_sizes(layout)) {
    SCOPED_TRACE("bucket of " + std::to_string(bytes) + " bytes");
    const std::size_t max_floats = bytes / sizeof(float);
    const std::vector<GradientBucket> buckets = plan_buckets(layout, bytes);
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      if (buckets[b].chunks.size() > 1) {
        EXPECT_LE(buckets[b].size, max_floats) << "bucket " << b << " of several chunks";
      }
      // Greedy: the next bucket starts only where its first chunk would not
      // have fitted in this one.
      if (b + 1 < buckets.size()) {
        const Chunk& next = buckets[b + 1].chunks.front();
        EXPECT_GT(next.offset + next.size - buckets[b].offset, max_floats) << "bucket " << b;
      }
    }
  }
}

TEST(ReducerPlan, SizeZeroOrSmallerThanAChunkGivesOneBucketPerChunk) {
  const TensorLayout layout = mixed_layout();
  const std::size_t n_chunks = make_chunks(layout).size();
  // The smallest tensor is 5 floats (20 bytes): any smaller size gives each
  // chunk a bucket of its own, as does 0 (documented, not an error).
  for (std::size_t bytes : {0, 1, 3, 4, 19}) {
    SCOPED_TRACE("bucket of " + std::to_string(bytes) + " bytes");
    const std::vector<GradientBucket> buckets = plan_buckets(layout, bytes);
    ASSERT_EQ(buckets.size(), n_chunks);
    for (const GradientBucket& b : buckets) {
      ASSERT_EQ(b.chunks.size(), 1u);
      EXPECT_EQ(b.size, b.chunks.front().size);
    }
  }
}

TEST(ReducerPlan, SizeOfTheWholeBufferGivesOneBucket) {
  const TensorLayout layout = mixed_layout();
  const TensorSpec& last = layout.tensors().back();
  for (std::size_t bytes : {layout.total() * sizeof(float), std::size_t{1} << 40}) {
    const std::vector<GradientBucket> buckets = plan_buckets(layout, bytes);
    ASSERT_EQ(buckets.size(), 1u);
    EXPECT_EQ(buckets[0].offset, 0u);
    EXPECT_EQ(buckets[0].size, last.offset + last.numel);  // the trailing padding left out
    EXPECT_EQ(buckets[0].chunks.size(), make_chunks(layout).size());
  }
}

TEST(ReducerPlan, TensorLargerThanAChunkIsSplitIntoChunks) {
  TensorLayout layout;
  layout.add("wte", {5, static_cast<std::int64_t>(kChunkFloats / 2)});  // 2.5 chunks
  // One chunk per bucket: three buckets, the last one half a chunk.
  const std::vector<GradientBucket> per_chunk = plan_buckets(layout, kChunkBytes);
  ASSERT_EQ(per_chunk.size(), 3u);
  EXPECT_EQ(per_chunk[0].offset, 0u);
  EXPECT_EQ(per_chunk[0].size, kChunkFloats);
  EXPECT_EQ(per_chunk[1].offset, kChunkFloats);
  EXPECT_EQ(per_chunk[1].size, kChunkFloats);
  EXPECT_EQ(per_chunk[2].offset, 2 * kChunkFloats);
  EXPECT_EQ(per_chunk[2].size, kChunkFloats / 2);
  for (const GradientBucket& b : per_chunk) EXPECT_TRUE(b.chunks.front().decay);
  // Two chunks fit in a bucket of 2.2 chunks, the third does not.
  const std::vector<GradientBucket> two = plan_buckets(layout, 2 * kChunkBytes + kChunkBytes / 5);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].chunks.size(), 2u);
  EXPECT_EQ(two[0].size, 2 * kChunkFloats);
  EXPECT_EQ(two[1].chunks.size(), 1u);
}

TEST(ReducerPlan, GptLayoutInDefaultBucketsCoversEveryParameter) {
  // The small preset in the default 4 MiB buckets: several buckets, and
  // between them every parameter once.
  ModelConfig cfg;
  cfg.vocab_size = 256, cfg.seq_len = 128, cfg.n_layer = 4, cfg.n_head = 4, cfg.n_embd = 256;
  const TensorLayout layout = gpt_parameter_layout(cfg);
  const std::vector<GradientBucket> buckets = plan_buckets(layout, 4 * 1048576);
  EXPECT_GT(buckets.size(), 1u);
  std::size_t elements = 0;
  for (const GradientBucket& b : buckets)
    for (const Chunk& c : b.chunks) elements += c.size;
  EXPECT_EQ(elements, layout.numel());
}

TEST(ReducerPlan, BucketsNeverSpanTwoUnitsOfTheGptLayout) {
  // The units of backward (embeddings, each block's attention and MLP
  // halves, ln_f): every bucket lies in one, whatever the size, and each
  // unit's buckets cover exactly its tensors, in buffer order.
  ModelConfig cfg;
  cfg.vocab_size = 256, cfg.seq_len = 128, cfg.n_layer = 3, cfg.n_head = 4, cfg.n_embd = 64;
  const TensorLayout layout = gpt_parameter_layout(cfg);
  const std::vector<std::size_t> starts = gpt_unit_starts(cfg.n_layer);
  ASSERT_EQ(starts.size(), 8u);  // embeddings, 3 blocks' 2 halves, ln_f
  EXPECT_EQ(layout[starts[gpt_attention_unit(1)]].name, "transformer.h.1.ln_1.weight");
  EXPECT_EQ(layout[starts[gpt_mlp_unit(1)]].name, "transformer.h.1.ln_2.weight");
  EXPECT_EQ(layout[starts[gpt_mlp_unit(1)] - 1].name, "transformer.h.1.attn.c_proj.bias");
  EXPECT_EQ(layout[starts[gpt_ln_f_unit(3)]].name, "transformer.ln_f.weight");
  for (std::size_t bytes : bucket_sizes(layout)) {
    const std::vector<GradientBucket> buckets = plan_buckets(layout, bytes, starts);
    std::vector<std::size_t> elements(starts.size(), 0);
    int previous_unit = 0;
    for (const GradientBucket& b : buckets) {
      ASSERT_GE(b.unit, previous_unit) << bytes << " bytes: units out of buffer order";
      previous_unit = b.unit;
      const std::size_t first = starts[b.unit];
      const std::size_t end = b.unit + 1 < static_cast<int>(starts.size()) ? starts[b.unit + 1]
                                                                            : layout.count();
      const std::size_t unit_begin = layout[first].offset;
      const std::size_t unit_end = layout[end - 1].offset + layout[end - 1].numel;
      EXPECT_GE(b.offset, unit_begin) << bytes << " bytes, unit " << b.unit;
      EXPECT_LE(b.offset + b.size, unit_end) << bytes << " bytes, unit " << b.unit;
      for (const Chunk& c : b.chunks) elements[b.unit] += c.size;
    }
    for (std::size_t u = 0; u < starts.size(); ++u) {
      const std::size_t end = u + 1 < starts.size() ? starts[u + 1] : layout.count();
      std::size_t want = 0;
      for (std::size_t t = starts[u]; t < end; ++t) want += layout[t].numel;
      EXPECT_EQ(elements[u], want) << bytes << " bytes, unit " << u;
    }
  }
  // Without units, the whole buffer fits one bucket; with them, one a unit.
  const std::size_t whole = layout.total() * sizeof(float);
  EXPECT_EQ(plan_buckets(layout, whole).size(), 1u);
  EXPECT_EQ(plan_buckets(layout, whole, starts).size(), starts.size());
  const std::vector<std::size_t> descending{0, 14, 2};
  EXPECT_THROW(plan_buckets(layout, whole, descending), std::invalid_argument);
}

// ---------------------------------------------------------------- one rank

TEST(ReducerOneRank, MakesNoMpiCallAndWaitsForNothing) {
  // MPI_COMM_NULL: any MPI call would fail here (no MPI_Init).
  const TensorLayout layout = mixed_layout();
  const Comm one_rank;
  const std::vector<std::size_t> starts{0, 2, 4};
  GradientReducer reducer(one_rank, layout, kChunkBytes, starts);
  EXPECT_EQ(reducer.units(), 3);
  std::vector<float> sum(layout.total(), 1.5f);
  for (int step = 0; step < 2; ++step) {
    reducer.start(sum);
    reducer.post(2);
    reducer.progress();
    reducer.post(0);
    reducer.post(7);  // no such unit: ignored
    EXPECT_EQ(reducer.finish(), 0.0);
    EXPECT_EQ(reducer.mpi_seconds(), 0.0);
  }
  for (float x : sum) ASSERT_EQ(x, 1.5f);  // the one rank's sum is the sum
  std::vector<float> short_sum(layout.total() - 1, 0.0f);
  EXPECT_THROW(reducer.start(short_sum), std::invalid_argument);
}

}  // namespace
}  // namespace cllm
