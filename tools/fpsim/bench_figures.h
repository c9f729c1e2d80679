// `fpsim bench`'s whole-run figures (issue "Performance"): replay throughput on a generated
// 1,000,000-statement trace (parse only, with and without the per-step checks), explore and fuzz
// rates, bytes per live model object, per-statement cost against the number of live objects, and
// the running kernel's rate for the same kind of statements through fpsim-harness when it can run.
#pragma once

#include "sim/trace/statement.h"

#include <nlohmann/json.hpp>

#include <string>

namespace fpsim::tools {

struct FiguresOptions {
  std::size_t statements = 1'000'000; // the long trace
  std::size_t scale_small = 1'000;    // live objects, the two ends of the scaling figure
  std::size_t scale_large = 1'000'000;
  std::size_t scale_steps = 20'000;   // statements timed at each end
  std::size_t kernel_statements = 20'000; // the trace run on the kernel and on the simulator
  double fuzz_seconds = 5;
  double replay_budget = 20;          // seconds each replay rate may take (it stops early)
  int explore_depth = 8;
  std::string harness;                // fpsim-harness to run for the kernel's rate ("": look beside fpsim)
};

// The generated replay trace: 16 files held open beside an open, read, write, close churn, each
// open with a handle of its own.
sim::Trace bench_trace(std::size_t statements);

// Runs every measurement; what could not be measured says why in its place.
nlohmann::json measure_figures(const FiguresOptions &o);

// The figures as a short table for people.
std::string figures_table(const nlohmann::json &f);

} // namespace fpsim::tools
