#include "tools/fpsim/dot_cmd.h"

#include "sim/teach/automaton.h"
#include "tools/fpsim/cli_util.h"
#include "tools/exit_codes.h"

#include <fmt/format.h>
#include <fstream>

namespace fpsim::tools {

CLI::App *add_dot_command(CLI::App &app, DotArgs &a) {
  CLI::App *cmd = app.add_subcommand(
      "dot", "the per-inode io-mode automaton (or a backing object's lifetime) derived by "
             "exploring the model, as Graphviz");
  cmd->add_option("--kernel", a.kernel, "profile v15, 6.9 or 6.18 (default 6.18)");
  cmd->add_option("--diff", a.diff, "a second profile: mark the transitions that differ");
  cmd->add_option("--mutant", a.mutant, "derive it from this seeded bug instead of the model");
  cmd->add_option("--diff-mutant", a.diff_mutant,
                  "a seeded bug for the --diff side (with --mutant and no --diff: the model)");
  cmd->add_option("--view", a.view, "iomode (default) or backing")
      ->check(CLI::IsMember({"iomode", "backing"}));
  cmd->add_option("--depth", a.depth, "statements explored after init (default 6)")
      ->check(CLI::Range(1, 10));
  cmd->add_flag("--teardown", a.teardown, "include abort, umount, dev_close and what follows");
  cmd->add_option("-o,--output", a.output, "write here instead of standard output");
  return cmd;
}

int run_dot(const DotArgs &a) {
  const auto profile = profile_arg("fpsim dot", a.kernel, stderr);
  if (!profile)
    return kExitUsage;
  const auto mutant = model::parse_mutant(a.mutant);
  const auto diff_mutant = model::parse_mutant(a.diff_mutant);
  if (!mutant || !diff_mutant) {
    fmt::print(stderr, "fpsim dot: unknown mutant '{}' (expected one of: {})\n",
               mutant ? a.diff_mutant : a.mutant, mutant_list());
    return kExitUsage;
  }
  std::optional<model::KernelProfile> diff_profile;
  if (!a.diff.empty()) {
    diff_profile = profile_arg("fpsim dot: --diff", a.diff, stderr);
    if (!diff_profile)
      return kExitUsage;
  }
  const bool compare = diff_profile || *mutant != model::Mutant::None ||
                       *diff_mutant != model::Mutant::None;
  const sim::AutomatonView view =
      a.view == "backing" ? sim::AutomatonView::Backing : sim::AutomatonView::IoMode;
  sim::ExploreOptions o;
  o.depth = a.depth;
  o.profile = *profile;
  o.mutant = *mutant;
  const sim::Automaton first = sim::derive_automaton(view, o, a.teardown);
  std::optional<sim::Automaton> second;
  if (compare) {
    o.profile = diff_profile.value_or(*profile);
    o.mutant = *diff_mutant;
    second = sim::derive_automaton(view, o, a.teardown);
  }
  const std::string text = sim::to_dot(first, second ? &*second : nullptr);
  if (a.output.empty()) {
    fmt::print("{}", text);
    return kExitOk;
  }
  std::ofstream out(a.output, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    fmt::print(stderr, "fpsim dot: cannot write {}\n", a.output);
    return kExitFailed;
  }
  return kExitOk;
}

} // namespace fpsim::tools
