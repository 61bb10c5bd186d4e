#include "cllm/dist/collective.h"

#include "cllm/base/out_of_memory.h"

#include <algorithm>
#include <cstdint>
#include <new>
#include <optional>
#include <vector>

#include "cllm/base/exit_codes.h"

namespace cllm {

void collectively(const Comm& comm, const std::function<void()>& work, Collective what) {
  std::exception_ptr cause;
  try {
    work();
  } catch (...) {
    cause = std::current_exception();
  }
  std::optional<int> code;  // this rank's exit code, if its work threw
  std::string reason;
  if (cause) try {
      std::rethrow_exception(cause);
    } catch (const CollectiveFailure&) {  // agreed by every rank already
      throw;
    } catch (const HelpRequested&) {
      code = kExitOk;
      reason = "help requested";
    } catch (const SettingsOutOfMemory& e) {  // settings this machine cannot hold
      code = kExitError;
      reason = e.what();
    } catch (const std::invalid_argument& e) {
      code = kExitUsage;
      reason = e.what();
    } catch (const std::bad_alloc&) {  // the big buffers say what and how much themselves
      code = kExitError;
      reason = "out of memory while setting up";
    } catch (const std::exception& e) {
      code = kExitError;
      reason = e.what();
    } catch (...) {
      code = kExitError;
      reason = "unknown error";
    }
  // Each rank's exit code + 1; 0 where the work went through.
  const std::vector<std::uint64_t> codes =
      comm.all_gather(code ? static_cast<std::uint64_t>(*code) + 1 : 0, what);
  const auto first = std::find_if(codes.begin(), codes.end(), [](auto c) { return c != 0; });
  if (first == codes.end()) return;
  const int failed = static_cast<int>(first - codes.begin());
  const bool here = failed == comm.rank();
  throw CollectiveFailure(here ? reason : "rank " + std::to_string(failed) + " failed", failed, here,
                          static_cast<int>(*first - 1), here ? cause : nullptr);
}

}  // namespace cllm
