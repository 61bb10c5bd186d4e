// Agreement across ranks on early exits. Every rank calls agree() at the
// same points with its own outcome; if any rank stops, all return the lowest
// stopping rank's exit code and that rank alone prints its reason: the
// reason appears once, and no rank is left waiting in a collective for one
// that has gone (MPI_Finalize would hang).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include "cli.h"
#include "cllm/dist/collective.h"
#include "cllm/dist/comm.h"

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

// The exit code of a collective failure (collective.h), after the rank that
// holds the reason prints it: a bad setting is a usage error (exit 2),
// anything else an error (exit 1).
int report(const Comm& comm, const CollectiveFailure& failure);

// Runs work, which may fail on some ranks only, and agrees on the outcome:
// nullopt, or every rank's exit code.
std::optional<int> agree_on_setup(const Comm& comm, const std::function<void()>& work);

// Parses argv with app; help and parse errors (a missing --config file
// among them) stop this rank.
std::optional<Stop> parse(CLI::App& app, int argc, char** argv);

}  // namespace cllm
