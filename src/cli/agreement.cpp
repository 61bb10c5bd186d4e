#include "agreement.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cllm/model/setting_error.h"
#include "options.h"

namespace cllm {

std::optional<int> agree(const Comm& comm, const std::optional<Stop>& mine) {
  const std::vector<std::uint64_t> codes =
      comm.all_gather(mine ? static_cast<std::uint64_t>(mine->code) + 1 : 0);
  const auto first = std::find_if(codes.begin(), codes.end(), [](auto c) { return c != 0; });
  if (first == codes.end()) return std::nullopt;
  if (first - codes.begin() == comm.rank()) {
    std::fputs(mine->text.c_str(), mine->stream);
    std::fflush(mine->stream);
  }
  return static_cast<int>(*first - 1);
}

std::string error_line(const Comm& comm, const std::string& what) {
  std::string line = what;
  std::replace(line.begin(), line.end(), '\n', ' ');
  return "cllm: error: " + (comm.size() > 1 ? "rank " + std::to_string(comm.rank()) + ": " : "") +
         line + "\n";
}

int report(const Comm& comm, const CollectiveFailure& failure) {
  if (failure.reported_here()) {
    std::string reason = failure.what();
    try {
      if (failure.cause()) std::rethrow_exception(failure.cause());
    } catch (const SettingError& e) {
      reason = e.text(option_name);  // --layers, not n_layer
    } catch (...) {
    }
    std::fputs(error_line(comm, reason).c_str(), stderr);
    std::fflush(stderr);
  }
  return failure.invalid_setting() ? kExitUsage : kExitError;
}

std::optional<int> agree_on_setup(const Comm& comm, const std::function<void()>& work) {
  try {
    collectively(comm, work);
    return std::nullopt;
  } catch (const CollectiveFailure& failure) {
    return report(comm, failure);
  }
}

std::optional<Stop> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp&) {
    return Stop{kExitOk, app.help(), stdout};
  } catch (const CLI::CallForAllHelp&) {
    return Stop{kExitOk, app.help("", CLI::AppFormatMode::All), stdout};
  } catch (const CLI::Error& e) {
    return Stop{kExitUsage, std::string("cllm: error: ") + e.what() + "\n"};
  }
}

}  // namespace cllm
