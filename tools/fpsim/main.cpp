// fpsim: replay traces through the simulator.
//
// Exit codes: 0 every trace passed; 1 a mismatch, failed check, invariant violation or leak;
// 2 usage, unreadable file or parse error (nothing is replayed then).
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "sim/trace/trace_files.h"
#include "tools/fpsim/bench.h"
#include "tools/fpsim/cli_util.h"
#include "tools/fpsim/bench_figures.h"
#include "tools/fpsim/dot_cmd.h"
#include "tools/fpsim/explain_cmd.h"
#include "tools/fpsim/explore_cmd.h"
#include "tools/fpsim/verify_policy_cmd.h"
#include "tools/fpsim/fuzz_cmd.h"
#include "tools/fpsim/mutants_cmd.h"
#include "tools/fpsim/profiles_cmd.h"
#include "tools/exit_codes.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

using namespace fpsim;

namespace {

nlohmann::json to_json(const sim::ReplayResult &r) {
  nlohmann::json j;
  j["path"] = r.path;
  j["kernel"] = std::string(model::profile_name(r.profile));
  j["passed"] = r.passed();
  j["steps"] = r.steps;
  j["checks"] = r.checks;
  j["failures"] = tools::failures_json(r.failures);
  return j;
}

int cmd_replay(const std::vector<std::string> &paths, const std::string &kernel, bool annotate,
               bool json) {
  std::optional<model::KernelProfile> forced;
  if (!kernel.empty()) {
    forced = tools::profile_arg("fpsim replay", kernel, stderr);
    if (!forced)
      return kExitUsage;
  }
  auto loaded = sim::load_traces(paths);
  if (auto *f = std::get_if<sim::LoadFailure>(&loaded)) {
    if (f->no_traces)
      fmt::print(stderr, "fpsim replay: {}\n", f->message);
    else
      fmt::print(stderr, "{}\n", f->message);
    return kExitUsage;
  }
  const std::vector<sim::Trace> traces = std::get<std::vector<sim::Trace>>(std::move(loaded));
  std::size_t passed = 0;
  nlohmann::json jtraces = nlohmann::json::array();
  for (const auto &t : traces) {
    sim::SimExecutor ex;
    const model::KernelProfile profile = forced.value_or(t.profile);
    const sim::ReplayResult r = sim::replay(t, ex, profile, sim::Transcript::Skip);
    passed += r.passed();
    if (json) {
      jtraces.push_back(to_json(r));
    } else {
      fmt::print("{} {} [{}] {} steps, {} checks\n", r.passed() ? "PASS" : "FAIL", t.path,
                 model::profile_name(profile), r.steps, r.checks);
      for (const auto &f : r.failures)
        fmt::print("{}", sim::format_failure(f, r.path));
    }
    if (annotate && tools::write_atomically(t.path, sim::annotate(t, r), ".fpsim-annotate.tmp")) {
      fmt::print(stderr, "{}: cannot write annotated trace\n", t.path);
      return kExitUsage;
    }
  }
  const std::size_t failed = traces.size() - passed;
  if (json) {
    nlohmann::json j;
    j["traces"] = jtraces;
    j["passed"] = passed;
    j["failed"] = failed;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("fpsim replay: {} passed, {} failed\n", passed, failed);
  }
  return failed ? kExitFailed : kExitOk;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"fpsim: a simulator of the Linux FUSE passthrough state machine"};
  app.require_subcommand(1);
  std::vector<std::string> paths;
  std::string kernel;
  bool annotate = false;
  bool json = false;
  CLI::App *replay = app.add_subcommand("replay", "replay traces through the simulator");
  replay->add_option("PATH", paths, "trace files or directories (recursively *.trace)")
      ->required();
  replay->add_option("--kernel", kernel,
                     "replay every trace under this profile (v15, 6.9, 6.18, or one composed "
                     "as 6.18+FEATURE-FEATURE: fpsim profiles), overriding its kernel header");
  replay->add_flag("--annotate", annotate, "write each trace back with its outcomes filled in");
  replay->add_flag("--json", json, "print results as JSON");
  std::string corpus = "traces";
  std::vector<std::string> bench_args;
  CLI::App *bench = app.add_subcommand(
      "bench", "whole-run figures (replay, explore, fuzz, memory, scaling, the kernel's rate), then "
               "Google Benchmark micro-benchmarks");
  bench->add_option("--corpus", corpus, "directory of traces to replay (default: traces)");
  bool bench_json = false;
  bool bench_figures_only = false;
  tools::FiguresOptions figures;
  bench->add_flag("--json", bench_json, "print the whole-run figures as JSON (no micro-benchmarks)");
  bench->add_flag("--figures-only", bench_figures_only, "the figures table, no micro-benchmarks");
  bool bench_micro_only = false;
  bench->add_flag("--micro-only", bench_micro_only, "the micro-benchmarks, no figures");
  bench->add_option("--statements", figures.statements,
                    "statements in the generated replay trace (default 1000000, the trace limit)")
      ->check(CLI::Range(std::size_t{1'000}, sim::kMaxStatements));
  bench->add_option("--kernel-statements", figures.kernel_statements,
                    "statements in the trace timed on the kernel and the simulator (default 20000)")
      ->check(CLI::Range(std::size_t{100}, sim::kMaxStatements));
  std::string write_trace;
  bench->add_option("--write-trace", write_trace,
                    "write the generated replay trace (--statements long) to FILE and exit: for "
                    "fpsim replay, fpsim-harness run or callgrind on the same input");
  bench->add_option("--harness", figures.harness,
                    "fpsim-harness for the kernel's rate (default: beside fpsim)");
  bench->add_option("BENCHMARK_FLAGS", bench_args, "flags for Google Benchmark, after --");
  tools::FuzzArgs fuzz_args;
  CLI::App *fuzz = tools::add_fuzz_command(app, fuzz_args);
  tools::ExploreArgs explore_args;
  CLI::App *explore = tools::add_explore_command(app, explore_args);
  tools::VerifyPolicyArgs verify_args;
  CLI::App *verify = tools::add_verify_policy_command(app, verify_args);
  tools::DotArgs dot_args;
  CLI::App *dot = tools::add_dot_command(app, dot_args);
  tools::ExplainArgs explain_args;
  CLI::App *explain = tools::add_explain_command(app, explain_args);
  tools::MutantsArgs mutants_args;
  CLI::App *mutants = tools::add_mutants_command(app, mutants_args);
  tools::ProfilesArgs profiles_args;
  CLI::App *profiles = tools::add_profiles_command(app, profiles_args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return kExitUsage;
  }
  if (bench->parsed() && !write_trace.empty()) {
    const auto why =
        tools::write_atomically(write_trace, sim::print_trace(tools::bench_trace(figures.statements)), ".tmp");
    if (why)
      fmt::print(stderr, "fpsim bench: {}\n", *why);
    return why ? kExitUsage : kExitOk;
  }
  if (bench->parsed() && !bench_micro_only) {
    nlohmann::json f;
    try {
      f = tools::measure_figures(figures);
    } catch (const std::exception &e) {
      fmt::print(stderr, "fpsim bench: {}\n", e.what());
      return kExitFailed;
    }
    if (bench_json) {
      fmt::print("{}\n", f.dump(2));
      return kExitOk;
    }
    fmt::print("{}", tools::figures_table(f));
    std::fflush(stdout);
    if (bench_figures_only)
      return kExitOk;
  }
  if (bench->parsed()) {
    std::vector<char *> bargv{argv[0]};
    for (auto &a : bench_args)
      bargv.push_back(a.data());
    int bargc = static_cast<int>(bargv.size());
    return tools::run_bench(corpus, bargc, bargv.data());
  }
  if (fuzz->parsed())
    return tools::run_fuzz(fuzz_args, *fuzz);
  if (explore->parsed())
    return tools::run_explore(explore_args);
  if (verify->parsed())
    return tools::run_verify_policy(verify_args);
  if (dot->parsed())
    return tools::run_dot(dot_args);
  if (explain->parsed())
    return tools::run_explain(explain_args);
  if (mutants->parsed())
    return tools::run_mutants(mutants_args);
  if (profiles->parsed())
    return tools::run_profiles(profiles_args);
  return cmd_replay(paths, kernel, annotate, json);
}
