#include "cllm/dist/collective.h"

#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

namespace cllm {

void collectively(const Comm& comm, const std::function<void()>& work, Collective what) {
  enum : std::uint64_t { kOk = 0, kError = 1, kInvalidSetting = 2 };
  std::uint64_t mine = kOk;
  std::string reason;
  std::exception_ptr cause;
  try {
    work();
  } catch (const std::invalid_argument& e) {
    mine = kInvalidSetting;
    reason = e.what();
    cause = std::current_exception();
  } catch (const std::bad_alloc&) {  // the big buffers say what and how much themselves
    mine = kError;
    reason = "out of memory while setting up";
    cause = std::current_exception();
  } catch (const std::exception& e) {
    mine = kError;
    reason = e.what();
    cause = std::current_exception();
  }
  const std::vector<std::uint64_t> outcomes = comm.all_gather(mine, what);
  const auto first = std::find_if(outcomes.begin(), outcomes.end(), [](auto o) { return o != kOk; });
  if (first == outcomes.end()) return;
  const int failed = static_cast<int>(first - outcomes.begin());
  const bool here = failed == comm.rank();
  throw CollectiveFailure(here ? reason : "rank " + std::to_string(failed) + " failed", failed,
                          here, *first == kInvalidSetting, here ? cause : nullptr);
}

}  // namespace cllm
