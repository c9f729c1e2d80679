// `fpsim mutants`: every seeded bug must be caught by both exhaustive exploration and fuzzing.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace fpsim::tools {

struct MutantsArgs {
  int depth = 8;
  double fuzz_seconds = 60;
  std::uint64_t seed = 1;
  std::string kernel = "6.18";
};

CLI::App *add_mutants_command(CLI::App &app, MutantsArgs &args);
// Exit codes: 0 every mutant caught by both, 1 a mutant survived, 2 usage error.
int run_mutants(const MutantsArgs &args);

} // namespace fpsim::tools
