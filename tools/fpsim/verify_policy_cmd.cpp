// `fpsim verify-policy`: the explorer with a server policy deciding the server's side.
#include "tools/fpsim/verify_policy_cmd.h"

#include "sim/search/explore.h"
#include "sim/trace/parser.h"
#include "tools/fpsim/cli_util.h"
#include "tools/exit_codes.h"
#include "base/assert.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>

namespace fpsim::tools {

namespace {

constexpr const char *kWho = "fpsim verify-policy";

std::vector<std::string> stock_names() {
  std::vector<std::string> names;
  for (policy::Stock s : policy::kStocks)
    names.emplace_back(policy::stock_name(s));
  return names;
}

void print_counterexample(const sim::Counterexample &c, const sim::ExploreResult &r) {
  fmt::print("{}: {} after {} client steps: [{}] {}\n", kWho, sim::counterexample_kind_name(c.kind), c.depth,
             c.rule, c.message);
  if (!c.statement.empty())
    fmt::print("  at: {}\n", c.statement);
  fmt::print("  replayed: {}\n", c.reproduced ? (c.replay_failure.empty() ? "as expected" : c.replay_failure)
                                              : "DID NOT REPRODUCE (" + c.replay_failure + ")");
  fmt::print("{}", c.text);
  fmt::print("{}: counterexample after {} states, {} transitions, {:.1f} s\n", kWho, r.states, r.transitions,
             r.seconds);
}

// Which built-in policies the trace's server follows. 0 when one does, 1 when none, 2 unreadable.
int run_from(const std::string &path) {
  sim::ParseResult p = sim::load_trace(path);
  if (auto *e = std::get_if<sim::ParseError>(&p)) {
    fmt::print(stderr, "{}: {}\n", kWho, e->str());
    return kExitUsage;
  }
  const sim::Trace &t = std::get<sim::Trace>(p);
  std::vector<std::string> follows;
  for (policy::Stock s : policy::kStocks) {
    const sim::PolicyConformance c = sim::follows_policy(t, s);
    if (c.follows) {
      follows.emplace_back(policy::stock_name(s));
      fmt::print("  {}: follows\n", policy::stock_name(s));
    } else {
      fmt::print("  {}: departs at {}:{}: the trace has `{}`, the policy does `{}`\n", policy::stock_name(s),
                 path, c.line, c.trace_has, c.policy_does);
    }
  }
  if (follows.empty()) {
    fmt::print("{}: {}: no built-in policy does what this server does\n", kWho, path);
    return kExitFailed;
  }
  fmt::print("{}: {}: the server follows {}\n", kWho, path, fmt::join(follows, ", "));
  return kExitOk;
}

} // namespace

CLI::App *add_verify_policy_command(CLI::App &app, VerifyPolicyArgs &a) {
  CLI::App *cmd = app.add_subcommand(
      "verify-policy", "every client behaviour within bounds against a server policy: finds the first open "
                       "that fails with EIO, backing id closed while in use, or leak");
  CLI::Option *policy =
      cmd->add_option("--policy", a.policy, "the server policy: " + fmt::format("{}", fmt::join(stock_names(), ", ")))
          ->check(CLI::IsMember(stock_names()));
  cmd->add_option("--from", a.from,
                  "a trace (a recording): say which built-in policy its server follows, or where it departs "
                  "from each")
      ->excludes(policy);
  cmd->add_option("--depth", a.depth, "client steps (default 10)");
  cmd->add_option("--inodes", a.inodes, "files in the mount (default 2)");
  cmd->add_option("--clients", a.clients, "files open at a time (default 3)");
  cmd->add_option("--stacked", a.stacked,
                  "of the files, how many the server serves from an overlayfs, whose BACKING_OPEN fails with "
                  "ELOOP (default 0)");
  cmd->add_option("--mappings", a.mappings, "mappings live at a time (default 2)");
  cmd->add_option("--writes", a.writes, "writes held by the server at a time (default 2)");
  cmd->add_option("--kernel", a.kernel, "kernel profile (default 6.18)");
  cmd->add_flag("--check-merges", a.check_merges,
                "self-check of the reduction: merged states must behave alike one step ahead");
  cmd->add_option("-o,--output", a.output, "write the counterexample trace here");
  cmd->add_flag("-q,--quiet", a.quiet, "no line per depth");
  return cmd;
}

int run_verify_policy(const VerifyPolicyArgs &a) {
  if (!a.from.empty())
    return run_from(a.from);
  if (a.policy.empty()) {
    fmt::print(stderr, "{}: one of --policy NAME or --from TRACE is required\n", kWho);
    return kExitUsage;
  }
  const std::optional<model::KernelProfile> profile = profile_arg(kWho, a.kernel, stderr);
  if (!profile)
    return kExitUsage;
  const std::optional<policy::Stock> stock = policy::parse_stock(a.policy);
  FPSIM_ASSERT(stock.has_value(), "--policy is checked against the stock policies' names");
  sim::ExploreOptions o;
  o.depth = a.depth;
  o.inodes = a.inodes;
  o.files = a.clients;
  o.stacked = a.stacked;
  o.mappings = a.mappings;
  o.writes = a.writes;
  o.profile = *profile;
  o.check_merges = a.check_merges;
  // What passthrough servers offer in INIT (passthrough_hp and go-fuse alike).
  o.init_plain = false;
  o.init_dio_mmap = true;
  o.policy = policy::make_stock(*stock, *profile);
  if (auto why = sim::validate(o)) {
    fmt::print(stderr, "{}: {}\n", kWho, *why);
    return kExitUsage;
  }
  fmt::print("{}: policy {}, kernel {}: {} client steps, {} files ({} on an overlay), {} open at a time, {} "
             "mappings, {} held writes\n",
             kWho, a.policy, model::profile_name(*profile), o.depth, o.inodes, o.stacked, o.files, o.mappings,
             o.writes);
  if (!a.quiet)
    o.on_level = [](int depth, std::size_t states, std::size_t transitions, double secs) {
      fmt::print("  depth {}: {} states, {} transitions, {:.2f} s\n", depth, states, transitions, secs);
      std::fflush(stdout);
    };
  std::fflush(stdout);
  const sim::ExploreResult r = sim::explore(o);
  if (r.counterexample) {
    const sim::Counterexample &c = *r.counterexample;
    print_counterexample(c, r);
    if (!a.output.empty())
      if (auto why = write_atomically(a.output, c.text, ".tmp")) {
        fmt::print(stderr, "{}: {}\n", kWho, *why);
        return kExitUsage;
      }
    return kExitFailed;
  }
  if (o.check_merges) {
    fmt::print("  merge check: {} transitions into visited states, {} behaved unlike the stored state\n",
               r.merges_checked, r.merge_mismatches);
    if (r.merge_mismatches)
      return kExitFailed;
  }
  const bool exhausted = !r.level_states.empty() && r.level_states.back() == 0;
  fmt::print("{}: nothing found: depth {} complete, {} states, {} transitions, {:.1f} s{}\n", kWho,
             r.depth_completed, r.states, r.transitions, r.seconds,
             exhausted ? " (no new state at the last depth: every state within the bounds)" : "");
  return kExitOk;
}

} // namespace fpsim::tools
