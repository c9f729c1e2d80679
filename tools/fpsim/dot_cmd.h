// `fpsim dot`: the io-mode and backing-lifetime automata derived by exploring the model
// (sim/teach/automaton.h), as Graphviz.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace fpsim::tools {

struct DotArgs {
  std::string kernel = "6.18";
  std::string diff;   // a second profile to compare with
  std::string mutant = "none"; // explore this seeded bug
  std::string diff_mutant = "none";
  std::string view = "iomode";
  int depth = 6;
  bool teardown = false;
  std::string output;
};

CLI::App *add_dot_command(CLI::App &app, DotArgs &args);
// Exit codes: 0 written, 2 usage error, 1 the output file could not be written.
int run_dot(const DotArgs &args);

} // namespace fpsim::tools
