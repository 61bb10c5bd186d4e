// Agreement across ranks on early exits. Every rank calls agree() at the
// same points with its own outcome; if any rank stops, all return the lowest
// stopping rank's exit code and that rank alone prints its reason: the
// reason appears once, and no rank is left waiting in a collective for one
// that has gone (MPI_Finalize would hang).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "cllm/cli.h"
#include "cllm/comm.h"

namespace cllm {

// Why this rank stops (a bad option, a file it cannot read, memory it
// cannot get, or --help), and what it would print.
struct Stop {
  int code = kExitError;
  std::string text;  // printed as is
  std::FILE* stream = stderr;
};

std::optional<int> agree(const Comm& comm, const std::optional<Stop>& mine);

// "cllm: error: [rank R: ]what\n", on one line whatever what holds
std::string error_line(const Comm& comm, const std::string& what);

// Runs work, which may fail on some ranks only, and agrees on the outcome:
// std::invalid_argument is a usage error (exit 2), any other exception an
// error (exit 1).
std::optional<int> agree_on_setup(const Comm& comm, auto&& work) {
  std::optional<Stop> stop;
  try {
    work();
  } catch (const std::invalid_argument& e) {
    stop = Stop{kExitUsage, error_line(comm, e.what())};
  } catch (const std::bad_alloc&) {  // the big buffers say what and how much themselves
    stop = Stop{kExitError, error_line(comm, "out of memory while setting up")};
  } catch (const std::exception& e) {
    stop = Stop{kExitError, error_line(comm, e.what())};
  }
  return agree(comm, stop);
}

// Parses argv with app; help and parse errors (a missing --config file
// among them) stop this rank.
std::optional<Stop> parse(CLI::App& app, int argc, char** argv);

}  // namespace cllm
