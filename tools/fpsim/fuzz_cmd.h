// `fpsim fuzz`: generated traces through the simulator, shrinking of the first failure.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace fpsim::tools {

struct FuzzArgs {
  std::uint64_t seed = 1;
  std::uint64_t runs = 0;
  double seconds = 0;
  int max_ops = 40;
  std::string kernel;
  std::string shard;
  std::string out = "fuzz-out";
  std::string mutant = "none";
  bool keep_going = false;
};

// Registers the subcommand and its options on app; run_fuzz runs it once parsed.
CLI::App *add_fuzz_command(CLI::App &app, FuzzArgs &args);
// Exit codes: 0 every case passed, 1 a case failed, 2 usage error.
int run_fuzz(const FuzzArgs &args, const CLI::App &cmd);

} // namespace fpsim::tools
