// `fpsim explore`: exhaustive breadth-first exploration (sim/search/explore.h).
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>

namespace fpsim::tools {

struct ExploreArgs {
  int depth = 8;
  int inodes = 2;
  int files = 3;
  int ids = 2;
  int mappings = 2;
  int writes = 2;
  std::string kernel = "6.18";
  std::string mutant = "none";
  std::string shard;
  int shard_depth = 2;
  bool no_symmetry = false;
  bool no_reference = false;
  bool exact_ids = false;
  std::string dio_mmap = "both";
  bool check_merges = false;
  std::size_t max_states = 0;
  std::string output;
  bool quiet = false;
};

// Registers the subcommand and its options on app; run_explore runs it once parsed.
CLI::App *add_explore_command(CLI::App &app, ExploreArgs &args);
// Exit codes: 0 every level explored clean, 1 a counterexample, 2 usage error.
int run_explore(const ExploreArgs &args);

} // namespace fpsim::tools
