#include "tools/fpsim/mutants_cmd.h"

#include "sim/search/explore.h"
#include "tools/fpsim/cli_util.h"
#include "sim/search/fuzz.h"
#include "tools/exit_codes.h"

#include <chrono>
#include <fmt/format.h>

namespace fpsim::tools {

namespace {

struct Row {
  std::string explore;  // "depth N (rule)" or "survived"
  std::string fuzz;     // "case N (rule)" or "survived"
  bool caught = false;
  double seconds = 0;
  std::string length;   // counterexample statements: explore / fuzz (shrunk)
};

Row run_one(model::Mutant mutant, model::KernelProfile profile, const MutantsArgs &args) {
  Row row;
  const auto start = std::chrono::steady_clock::now();
  sim::ExploreOptions eo;
  eo.depth = args.depth;
  eo.profile = profile;
  eo.mutant = mutant;
  const sim::ExploreResult er = sim::explore(eo);
  std::size_t explore_len = 0;
  if (er.counterexample) {
    row.explore = fmt::format("depth {} ({})", er.counterexample->depth, er.counterexample->rule);
    explore_len = er.counterexample->trace.statements.size();
  } else {
    row.explore = fmt::format("survived depth {}", er.depth_completed);
  }
  sim::FuzzOptions fo;
  fo.seed = args.seed;
  fo.seconds = args.fuzz_seconds;
  fo.profile = profile;
  fo.mutant = mutant;
  const sim::FuzzResult fr = sim::fuzz(fo);
  std::size_t fuzz_len = 0;
  if (!fr.counterexamples.empty()) {
    const sim::FuzzCounterexample &c = fr.counterexamples.front();
    row.fuzz = fmt::format("case {} ({})", c.case_index,
                           sim::fuzz_failure_kind_name(c.shrunk_failure.kind));
    fuzz_len = c.shrunk_statements;
  } else {
    row.fuzz = fmt::format("survived {} cases", fr.cases);
  }
  row.caught = er.counterexample.has_value() && !fr.counterexamples.empty();
  row.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  row.length = fmt::format("{} / {}", explore_len, fuzz_len);
  return row;
}

} // namespace

CLI::App *add_mutants_command(CLI::App &app, MutantsArgs &args) {
  CLI::App *c = app.add_subcommand(
      "mutants", "run every seeded bug through explore and fuzz; a mutant that survives either fails");
  c->add_option("--depth", args.depth, "explore depth (1..8, default 8)")->check(CLI::Range(1, 8));
  c->add_option("--fuzz-seconds", args.fuzz_seconds,
                "fuzzing budget per mutant, stopping at the first failure (default 60)")
      ->check(CLI::Range(0.1, 3600.0));
  c->add_option("--seed", args.seed, "fuzz seed (default 1)");
  c->add_option("--kernel", args.kernel, "profile: v15, 6.9 or 6.18 (default 6.18)");
  return c;
}

int run_mutants(const MutantsArgs &args) {
  const std::optional<model::KernelProfile> profile =
      profile_arg("fpsim mutants", args.kernel, stderr);
  if (!profile)
    return kExitUsage;
  fmt::print("{:<28} {:<26} {:<26} {:>8}  {}\n", "mutant", "explore", "fuzz", "time",
             "length (explore / fuzz)");
  int passed = 0, failed = 0;
  for (model::Mutant m : model::all_mutants()) {
    // Without null_fb_counts_as_uncached (the seed) the kernel itself refuses a NULL fb on a
    // passthrough inode: this mutant is the kernel's own code path, nothing to catch.
    if (!profile->has(model::Feature::NullFbCountsAsUncached) &&
        m == model::Mutant::NullFbConflict) {
      fmt::print("{:<28} equivalent on {} (the kernel's own rule), not counted\n",
                 model::mutant_name(m), model::profile_name(*profile));
      continue;
    }
    const Row row = run_one(m, *profile, args);
    fmt::print("{:<28} {:<26} {:<26} {:>7.2f}s  {}\n", model::mutant_name(m), row.explore,
               row.fuzz, row.seconds, row.length);
    (row.caught ? passed : failed)++;
  }
  fmt::print("fpsim mutants: {} passed, {} failed\n", passed, failed);
  return failed ? kExitFailed : kExitOk;
}

} // namespace fpsim::tools
