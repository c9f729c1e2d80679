// Differential fuzzing of the simulator against the running kernel: generated traces (sim/search/generate.h)
// run on both, statement by statement; the first disagreement is shrunk (each attempt on the kernel)
// and written as a regression trace whose expectations are the kernel's outcomes.
#pragma once

#include "model/profile.h"
#include "sim/trace/statement.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::harness {

// One thing on which the simulator and the kernel disagree.
struct Disagreement {
  int line = 0;          // 0: not tied to a statement (teardown, leak, kernel run error)
  std::string statement; // as printed; empty when line == 0
  std::string sim;       // the simulator's outcome (or its failure)
  std::string kernel;    // the kernel's outcome (or its failure)
  std::string text;      // one line, as crosscheck prints it
};

// One trace run on the simulator and on the kernel.
struct CrossResult {
  bool interrupted = false;
  bool kernel_ok = false; // the kernel run produced outcomes
  std::vector<Disagreement> disagreements;
  std::vector<std::optional<sim::Outcome>> kernel_outcomes; // per statement
  std::size_t kernel_steps = 0;
  double kernel_seconds = 0;
  std::size_t checks_not_observable = 0;
  bool sim_invalid = false; // some statement cannot run on the simulator (a malformed candidate)
  bool agrees() const { return kernel_ok && disagreements.empty(); }
};

using CrossRunner = std::function<CrossResult(const sim::Trace &)>;

struct KernelFuzzOptions {
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> runs;
  std::optional<double> seconds;
  int max_ops = 40;
  std::string out_dir = "traces/regressions";
  std::size_t shrink_attempts = 60;
  double shrink_seconds = 60;
};

// Exit code: 0 no disagreement, 1 some, 130/143 interrupted (the caller maps `interrupted`).
// `cancelled`: true once the run must stop (a signal).
int fuzz_kernel(const KernelFuzzOptions &opts, model::KernelProfile profile, const CrossRunner &cross,
                const std::function<bool()> &cancelled);

} // namespace fpsim::harness
