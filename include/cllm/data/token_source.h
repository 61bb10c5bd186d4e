// Where training and validation tokens come from: a text file read into
// memory, or an HDF5 dataset read window by window. The trainer asks for
// windows of seq_len + 1 tokens; which windows is the sampler's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cllm {

enum class Split { train, val };

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual std::uint64_t split_size(Split split) const = 0;
  // Copies tokens [start, start + count) of a split to out. Called from one
  // thread at a time (HDF5 is not thread-safe): the main thread, or the
  // trainer's prefetch thread while a step computes. Throws
  // std::runtime_error naming the source on a read error.
  virtual void read_tokens(Split split, std::uint64_t start, std::size_t count,
                           std::int32_t* out) const = 0;
  // Token ids are in [0, vocab()).
  virtual int vocab() const = 0;
  // The file, for messages.
  virtual const std::string& name() const = 0;
  // What the data is, so that a resumed run can tell whether it trains on the
  // data its checkpoint did wherever the file now lies: sizes and a hash of
  // the contents. Empty: unknown (synthetic data), not compared.
  virtual std::string identity() const { return {}; }
};

}  // namespace cllm
