// Finding and loading trace files for the command-line tools.
#pragma once

#include "sim/statement.h"

#include <string>
#include <variant>
#include <vector>

namespace fpsim::sim {

struct LoadFailure {
  bool no_traces = false; // the paths held no *.trace file at all
  std::string message;    // otherwise one line naming the file (and line:col for a parse error)
};

// Files as given; directories recursively, *.trace only, sorted so runs are reproducible. Every
// trace is parsed before any is returned: a malformed one stops the run before anything runs.
std::variant<std::vector<Trace>, LoadFailure> load_traces(const std::vector<std::string> &paths);

} // namespace fpsim::sim
