#include "agreement.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#include "cli.h"
#include "cllm/base/setting_error.h"

namespace cllm {

std::string option_name(std::string_view setting) {
  static constexpr std::pair<std::string_view, std::string_view> kNamedOtherwise[] = {
      {"n_layer", "--layers"},
      {"n_head", "--heads"},
      {"n_embd", "--embd"},
      {"vocab_size", "vocabulary size"},  // the data's, not an option
  };
  for (const auto& [name, option] : kNamedOtherwise)
    if (name == setting) return std::string(option);
  std::string option = "--" + std::string(setting);
  std::replace(option.begin(), option.end(), '_', '-');
  return option;
}

namespace {

// Why this rank stops, and what it prints.
struct Stop {
  int code = kExitError;
  std::string text;
  std::FILE* stream = stderr;
};

// "cllm: error: [rank R: ]what", on one line whatever what holds.
Stop error(const Comm& comm, int code, std::string what, bool name_rank = true) {
  std::replace(what.begin(), what.end(), '\n', ' ');
  const bool ranked = name_rank && comm.size() > 1;
  return {code, "cllm: error: " + (ranked ? "rank " + std::to_string(comm.rank()) + ": " : "") +
                    what + "\n"};
}

// The exception being handled, as a Stop.
Stop stop_for_current_exception(const Comm& comm) {
  try {
    throw;
  } catch (const HelpRequested& help) {
    return {kExitOk, help.text, stdout};
  } catch (const CLI::Error& e) {  // from the command line, which the ranks share: no rank named
    return error(comm, kExitUsage, e.what(), false);
  } catch (const SettingError& e) {
    return error(comm, kExitUsage, e.text(option_name));  // --layers, not n_layer
  } catch (const std::invalid_argument& e) {
    return error(comm, kExitUsage, e.what());
  } catch (const std::bad_alloc&) {  // the big buffers say what and how much themselves
    return error(comm, kExitError, "out of memory while setting up");
  } catch (const std::exception& e) {
    return error(comm, kExitError, e.what());
  }
}

int print(const Stop& stop) {
  std::fputs(stop.text.c_str(), stop.stream);
  std::fflush(stop.stream);
  return stop.code;
}

}  // namespace

std::optional<int> collectively_exit_code(const Comm& comm, const std::function<void()>& work) {
  std::optional<Stop> mine;
  try {
    work();
  } catch (const CollectiveFailure& failure) {  // agreed already
    return report(comm, failure);
  } catch (...) {
    mine = stop_for_current_exception(comm);
  }
  // Each rank's exit code + 1; 0 where it goes on.
  const std::vector<std::uint64_t> codes =
      comm.all_gather(mine ? static_cast<std::uint64_t>(mine->code) + 1 : 0, Collective::agreement);
  const auto first = std::find_if(codes.begin(), codes.end(), [](auto c) { return c != 0; });
  if (first == codes.end()) return std::nullopt;
  if (first - codes.begin() == comm.rank()) print(*mine);
  return static_cast<int>(*first - 1);
}

int report(const Comm& comm, const CollectiveFailure& failure) {
  if (!failure.reported_here()) return failure.invalid_setting() ? kExitUsage : kExitError;
  try {
    std::rethrow_exception(failure.cause());
  } catch (...) {
    return print(stop_for_current_exception(comm));
  }
}

}  // namespace cllm
