// `fpsim profiles`: the kernel profiles fpsim models and the named features each one has, or
// (--diff A B) the features that tell two profiles apart. A and B may be composed profiles.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace fpsim::tools {

struct ProfilesArgs {
  bool json = false;
  std::vector<std::string> diff; // empty, or two profiles
};

CLI::App *add_profiles_command(CLI::App &app, ProfilesArgs &args);
// Exit codes: 0 printed, 2 an unknown profile or feature.
int run_profiles(const ProfilesArgs &args);

} // namespace fpsim::tools
