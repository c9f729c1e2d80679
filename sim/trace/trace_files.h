// Finding and loading trace files for the command-line tools.
#pragma once

#include "sim/trace/statement.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace fpsim::sim {

// Per-run bounds (README "Limits"): every trace of a run is parsed, and held, before any is
// replayed.
inline constexpr std::size_t kMaxTracesPerRun = 10'000;
inline constexpr std::uintmax_t kMaxBytesPerRun = std::uintmax_t{256} << 20;
inline constexpr std::size_t kMaxLinesPerRun = 2'000'000; // blank and comment lines included

struct LoadFailure {
  bool no_traces = false; // the paths held no *.trace file at all
  std::string message;    // otherwise one line naming the file (and line:col for a parse error)
};

// Files as given; directories recursively, *.trace only, sorted so runs are reproducible. Every
// trace is parsed before any is returned: a malformed one, or a run over the limits above, stops
// the run before anything runs.
std::variant<std::vector<Trace>, LoadFailure> load_traces(const std::vector<std::string> &paths);

} // namespace fpsim::sim
