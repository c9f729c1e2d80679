// `fpsim fuzz`: see sim/search/fuzz.h for the oracle, the case seeds and sharding.
#include "tools/fpsim/fuzz_cmd.h"

#include "sim/search/fuzz.h"
#include "tools/fpsim/cli_util.h"
#include "tools/exit_codes.h"

#include <cstdio>
#include <fmt/format.h>
#include <unistd.h>

namespace fpsim::tools {

CLI::App *add_fuzz_command(CLI::App &app, FuzzArgs &a) {
  CLI::App *cmd = app.add_subcommand(
      "fuzz", "generated traces through the simulator; the first failure is shrunk and written");
  cmd->add_option("--seed", a.seed, "run seed (default 1); case k's seed is seed + k*0x9E3779B97F4A7C15");
  auto *runs = cmd->add_option("--runs", a.runs, "number of cases (default 10000)");
  auto *secs = cmd->add_option("--seconds", a.seconds, "run cases for this long instead");
  runs->excludes(secs);
  cmd->add_option("--max-ops", a.max_ops, "statements per trace, at most (default 40)")
      ->check(CLI::Range(2, 100000));
  cmd->add_option("--kernel", a.kernel, "profile v15, 6.9 or 6.18 (default: the three in turn)");
  cmd->add_option("--shard", a.shard, "I/N: run only the cases k with k % N == I");
  cmd->add_option("--out", a.out, "directory for counterexamples (default fuzz-out)");
  cmd->add_option("--mutant", a.mutant, "a seeded bug to run the model with (default none)");
  cmd->add_flag("--keep-going", a.keep_going,
                "run every case; shrink the first failure of each kind");
  return cmd;
}

int run_fuzz(const FuzzArgs &a, const CLI::App &cmd) {
  sim::FuzzOptions o;
  o.seed = a.seed;
  o.max_ops = a.max_ops;
  o.out_dir = a.out;
  o.keep_going = a.keep_going;
  if (cmd.count("--seconds")) {
    if (!(a.seconds > 0)) {
      fmt::print(stderr, "fpsim fuzz: --seconds must be positive\n");
      return kExitUsage;
    }
    o.seconds = a.seconds;
  } else {
    o.runs = cmd.count("--runs") ? a.runs : 10000;
  }
  if (!a.kernel.empty()) {
    o.profile = profile_arg("fpsim fuzz", a.kernel, stderr);
    if (!o.profile)
      return kExitUsage;
  }
  if (!shard_arg("fpsim fuzz", a.shard, &o.shard_index, &o.shard_count))
    return kExitUsage;
  const auto mutant = mutant_arg("fpsim fuzz", a.mutant);
  if (!mutant)
    return kExitUsage;
  o.mutant = *mutant;
  const bool tty = isatty(STDERR_FILENO) == 1;
  double last = -1;
  if (tty)
    o.progress = [&last](const sim::FuzzProgress &p) {
      if (p.elapsed - last < 0.25)
        return;
      last = p.elapsed;
      fmt::print(stderr, "\rfpsim fuzz: {} cases, {:.0f} cases/s, {:.1f}s elapsed", p.cases,
                 rate(static_cast<double>(p.cases), p.elapsed), p.elapsed);
      std::fflush(stderr);
    };
  const sim::FuzzResult r = sim::fuzz(o);
  if (tty && last >= 0)
    fmt::print(stderr, "\r\x1b[K");
  for (const sim::FuzzCounterexample &c : r.counterexamples) {
    fmt::print("FAIL case {} (case seed {}, {}): {}\n", c.case_index, c.case_seed,
               model::profile_name(c.profile), c.failure.describe());
    if (!c.path.empty())
      fmt::print("  shrunk from {} to {} statements: {}: {}\n", c.original_statements,
                 c.shrunk_statements, c.path, c.shrunk_failure.describe());
    else
      fmt::print("  shrunk from {} to {} statements, not written: {}\n", c.original_statements,
                 c.shrunk_statements, c.write_error);
    fmt::print("  repro: {}\n", c.repro);
  }
  fmt::print("fpsim fuzz: {} passed, {} failed ({:.0f} cases/s, {:.0f} statements/s)\n", r.passed,
             r.failed, rate(static_cast<double>(r.cases), r.elapsed),
             rate(static_cast<double>(r.statements), r.elapsed));
  return r.failed ? kExitFailed : kExitOk;
}

} // namespace fpsim::tools
