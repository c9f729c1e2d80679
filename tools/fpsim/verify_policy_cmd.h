// `fpsim verify-policy`: every client behaviour within bounds against one server policy
// (sim/search/server_policy.h), explored as sim/search/explore.h describes.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace fpsim::tools {

struct VerifyPolicyArgs {
  std::string policy;
  std::string from; // a trace: which built-in policy its server follows
  int depth = 10;
  int inodes = 2;
  int clients = 3;
  int stacked = 0;
  int mappings = 2;
  int writes = 2;
  std::string kernel = "6.18";
  bool check_merges = false;
  std::string output;
  bool quiet = false;
};

CLI::App *add_verify_policy_command(CLI::App &app, VerifyPolicyArgs &args);
// Exit codes: 0 nothing found within the bounds (--from: some built-in policy is followed), 1 a
// counterexample (--from: none is), 2 usage error or an unreadable trace.
int run_verify_policy(const VerifyPolicyArgs &args);

} // namespace fpsim::tools
