// `fpsim explore`: see sim/search/explore.h for the search, the alphabet and the state hashing.
#include "tools/fpsim/explore_cmd.h"

#include "sim/search/explore.h"
#include "tools/fpsim/cli_util.h"
#include "tools/exit_codes.h"

#include <fmt/format.h>
#include <fstream>

namespace fpsim::tools {

CLI::App *add_explore_command(CLI::App &app, ExploreArgs &a) {
  CLI::App *cmd = app.add_subcommand(
      "explore", "every statement sequence up to a depth, breadth first, with invariants, the "
                 "teardown drain property and (mutants) the unmutated model in lockstep");
  cmd->add_option("--depth", a.depth, "statements after init (default 8)");
  cmd->add_option("--inodes", a.inodes, "mount files, and backing files (default 2)");
  cmd->add_option("--files", a.files, "handles open at a time (default 3)");
  cmd->add_option("--ids", a.ids, "backing ids registered at a time (default 2)");
  cmd->add_option("--mappings", a.mappings, "mappings live at a time (default 2)");
  cmd->add_option("--writes", a.writes, "writes held by the server at a time (default 2)");
  cmd->add_option("--kernel", a.kernel, "profile v15, 6.9, 6.18 or all (default 6.18)");
  cmd->add_option("--mutant", a.mutant, "a seeded bug to explore (default none)");
  cmd->add_option("--shard", a.shard,
                  "I/N: keep only the states at the shard depth whose hash % N == I");
  cmd->add_option("--shard-depth", a.shard_depth, "the depth at which --shard splits (default 2)");
  cmd->add_flag("--no-symmetry", a.no_symmetry, "hash states with their names (no reduction)");
  cmd->add_flag("--no-reference", a.no_reference,
                "mutants: do not run the unmutated model in lockstep");
  cmd->add_flag("--exact-ids", a.exact_ids, "hash backing id values and the idr cursor");
  cmd->add_option("--dio-mmap", a.dio_mmap,
                  "init with direct_io_allow_mmap: both (default), on or off (disjoint halves)")
      ->check(CLI::IsMember({"both", "on", "off"}));
  cmd->add_flag("--check-merges", a.check_merges,
                "self-check of the reduction: merged states must behave alike one step ahead");
  cmd->add_option("--max-states", a.max_states, "stop after storing this many states");
  cmd->add_option("-o,--output", a.output, "write the (first) counterexample trace here");
  cmd->add_flag("-q,--quiet", a.quiet, "no line per depth");
  return cmd;
}

int run_explore(const ExploreArgs &a) {
  sim::ExploreOptions o;
  o.depth = a.depth;
  o.inodes = a.inodes;
  o.files = a.files;
  o.ids = a.ids;
  o.mappings = a.mappings;
  o.writes = a.writes;
  o.symmetry = !a.no_symmetry;
  o.compare_reference = !a.no_reference;
  o.init_plain = a.dio_mmap != "on";
  o.init_dio_mmap = a.dio_mmap != "off";
  if (a.exact_ids)
    o.exact_ids = true;
  o.shard_depth = a.shard_depth;
  o.max_states = a.max_states;
  o.check_merges = a.check_merges;
  std::vector<model::KernelProfile> profiles;
  if (a.kernel == "all") {
    profiles.assign(model::kBuiltinProfiles.begin(), model::kBuiltinProfiles.end());
  } else if (auto p = profile_arg("fpsim explore", a.kernel, stderr)) {
    profiles = {*p};
  } else {
    return kExitUsage;
  }
  const auto mutant = mutant_arg("fpsim explore", a.mutant);
  if (!mutant)
    return kExitUsage;
  o.mutant = *mutant;
  if (!shard_arg("fpsim explore", a.shard, &o.shard_index, &o.shard_count))
    return kExitUsage;
  if (auto why = sim::validate(o)) {
    fmt::print(stderr, "fpsim explore: {}\n", *why);
    return kExitUsage;
  }
  if (!a.quiet)
    o.on_level = [](int depth, std::size_t states, std::size_t transitions, double secs) {
      fmt::print("  depth {}: {} states, {} transitions, {:.2f} s\n", depth, states, transitions,
                 secs);
      std::fflush(stdout);
    };
  int rc = kExitOk;
  for (model::KernelProfile p : profiles) {
    o.profile = p;
    fmt::print("fpsim explore: kernel {}, mutant {}: depth {}, {} inodes, {} files, {} ids, {} "
               "mappings, {} writes{}{}{}\n",
               model::profile_name(p), model::mutant_name(o.mutant), o.depth, o.inodes, o.files,
               o.ids, o.mappings, o.writes, o.symmetry ? "" : ", no symmetry reduction",
               a.dio_mmap == "both" ? "" : ", direct_io_allow_mmap " + a.dio_mmap,
               o.shard_count > 1 ? fmt::format(", shard {}/{} at depth {}", o.shard_index,
                                               o.shard_count, o.shard_depth)
                                 : "");
    std::fflush(stdout);
    const sim::ExploreResult r = sim::explore(o);
    if (r.counterexample) {
      const sim::Counterexample &c = *r.counterexample;
      fmt::print("fpsim explore: [{}] {} at depth {}: [{}] {}\n", model::profile_name(p),
                 sim::counterexample_kind_name(c.kind), c.depth, c.rule, c.message);
      fmt::print("  at: {}\n", c.statement);
      fmt::print("  replayed: {}\n",
                 c.reproduced ? c.replay_failure : "DID NOT REPRODUCE (" + c.replay_failure + ")");
      fmt::print("{}", c.text);
      if (!a.output.empty() && rc == kExitOk) {
        std::ofstream out(a.output, std::ios::binary | std::ios::trunc);
        out << c.text;
        if (!out) {
          fmt::print(stderr, "fpsim explore: cannot write {}\n", a.output);
          return kExitUsage;
        }
      }
      fmt::print("fpsim explore: counterexample at depth {}, {} states, {} transitions\n", c.depth,
                 r.states, r.transitions);
      rc = kExitFailed;
      continue;
    }
    fmt::print("  {:.1f} s, {:.1f} bytes per stored state (hash set and path records)\n", r.seconds,
               r.bytes_per_state);
    if (o.check_merges) {
      fmt::print("  merge check: {} transitions into visited states, {} behaved unlike the stored "
                 "state\n",
                 r.merges_checked, r.merge_mismatches);
      if (r.merge_mismatches)
        rc = kExitFailed;
    }
    if (r.complete)
      fmt::print("fpsim explore: depth {} complete, {} states, {} transitions, {:.0f} states/s\n",
                 r.depth_completed, r.states, r.transitions,
                 rate(static_cast<double>(r.states), r.seconds));
    else
      fmt::print("fpsim explore: stopped at {} states (--max-states), depth {} complete, {} "
                 "transitions, {:.0f} states/s\n",
                 r.states, r.depth_completed, r.transitions,
                 rate(static_cast<double>(r.states), r.seconds));
  }
  return rc;
}

} // namespace fpsim::tools
