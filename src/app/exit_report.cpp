#include "cllm/app/exit_report.h"

#include <algorithm>
#include <cstdio>
#include <new>
#include <string>

#include "cllm/base/exit_codes.h"

namespace cllm {

namespace {

void print_error(const Comm& comm, std::string what, bool name_rank = true) {
  std::replace(what.begin(), what.end(), '\n', ' ');
  const bool ranked = name_rank && comm.size() > 1;
  const std::string line = "cllm: error: " + (ranked ? "rank " + std::to_string(comm.rank()) + ": " : "") + what + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace

int report(const Comm& comm, const CollectiveFailure& failure, const SettingNames& names) {
  if (!failure.reported_here()) return failure.exit_code();
  try {
    std::rethrow_exception(failure.cause());
  } catch (const HelpRequested& help) {
    std::fputs(help.text.c_str(), stdout);
    std::fflush(stdout);
  } catch (const CommandLineError& e) {  // the ranks share the command line: no rank named
    print_error(comm, e.what(), false);
  } catch (const SettingError& e) {
    print_error(comm, e.text(names));
  } catch (const std::bad_alloc&) {
    print_error(comm, failure.what());  // collectively's words for it
  } catch (const std::exception& e) {
    print_error(comm, e.what());
  } catch (...) {
    print_error(comm, failure.what());
  }
  return failure.exit_code();
}

}  // namespace cllm
