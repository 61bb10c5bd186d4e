#include "cllm/collective.h"

#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

namespace cllm {

void collectively(const Comm& comm, const std::function<void()>& work) {
  enum : std::uint64_t { kOk = 0, kError = 1, kInvalidSetting = 2 };
  std::uint64_t mine = kOk;
  std::string reason;
  try {
    work();
  } catch (const std::invalid_argument& e) {
    mine = kInvalidSetting;
    reason = e.what();
  } catch (const std::bad_alloc&) {  // the big buffers say what and how much themselves
    mine = kError;
    reason = "out of memory while setting up";
  } catch (const std::exception& e) {
    mine = kError;
    reason = e.what();
  }
  const std::vector<std::uint64_t> outcomes = comm.all_gather(mine);
  const auto first = std::find_if(outcomes.begin(), outcomes.end(), [](auto o) { return o != kOk; });
  if (first == outcomes.end()) return;
  const int failed = static_cast<int>(first - outcomes.begin());
  const bool here = failed == comm.rank();
  throw CollectiveFailure(here ? reason : "rank " + std::to_string(failed) + " failed", failed,
                          here, *first == kInvalidSetting);
}

}  // namespace cllm
