// Where a step's time goes, and the one list of those figures: the step
// record holds them, a benchmark sums them, and its table and JSON show each
// as a share of the step, in the list's order and words.
#pragma once

#include <span>

namespace cllm {

struct StepSeconds {
  double data = 0;              // reading the step's windows
  double forward_backward = 0;  // the threads' pass, their in-rank sums excluded
  // Of forward_backward: a thread's mean seconds in matrix products (all of
  // them, attention's included), in the rest of attention (its softmax), and
  // waiting for the other threads at the layers' meeting points (the rest is
  // the other kernels).
  double matmul = 0, attention = 0, waiting = 0;
  double reduce = 0;     // a thread's mean seconds summing layers in-rank
  double allreduce = 0;  // waited for the allreduce after the threads were done: the exposed part
  double optimizer = 0;  // norm, clipping and AdamW (and the loss's sum over ranks)
  double total = 0;

  StepSeconds& operator+=(const StepSeconds& other);
};

// One figure of the split: its key in bench's JSON time_split, its words in
// bench's table, whether it is a part of forward+backward (shown in its
// parentheses), and its field (null: the other kernels, what
// forward_backward leaves of its parts). The shares of the figures outside
// forward+backward add up to about 1, those inside to forward+backward.
struct StepPhase {
  const char* key;
  const char* label;
  bool in_forward_backward;
  double StepSeconds::*field;

  double seconds(const StepSeconds& s) const;
};
// Every field of StepSeconds but total, once.
std::span<const StepPhase> step_phases();

}  // namespace cllm
