#include "cllm/train/step_seconds.h"

namespace cllm {

namespace {

constexpr StepPhase kPhases[] = {
    {"data", "data", false, &StepSeconds::data},
    {"forward_backward", "forward+backward", false, &StepSeconds::forward_backward},
    {"matmul", "matrix products", true, &StepSeconds::matmul},
    {"attention", "attention's softmax", true, &StepSeconds::attention},
    {"other_forward_backward", "other kernels", true, nullptr},
    {"waiting", "waiting for other threads", true, &StepSeconds::waiting},
    {"thread_reduce", "thread reduce", false, &StepSeconds::reduce},
    {"allreduce", "allreduce", false, &StepSeconds::allreduce},
    {"optimizer", "optimizer", false, &StepSeconds::optimizer},
};

}  // namespace

double StepPhase::seconds(const StepSeconds& s) const {
  if (field) return s.*field;
  return s.forward_backward - s.matmul - s.attention - s.waiting;
}

StepSeconds& StepSeconds::operator+=(const StepSeconds& other) {
  for (const StepPhase& phase : kPhases)
    if (phase.field) this->*phase.field += other.*phase.field;
  total += other.total;
  return *this;
}

std::span<const StepPhase> step_phases() { return kPhases; }

}  // namespace cllm
