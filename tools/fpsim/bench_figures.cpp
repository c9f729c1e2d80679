#include "tools/fpsim/bench_figures.h"

#include "model/fuse.h"
#include "sim/search/explore.h"
#include "sim/search/fuzz.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <malloc.h>
#include <regex>
#include <sys/utsname.h>
#include <thread>
#include <unistd.h>

namespace fpsim::tools {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A trace built statement by statement: one mount file `a`, one backing file, fresh handle names.
class TraceBuilder {
public:
  TraceBuilder() {
    t_.path = "generated";
    t_.profile = model::KernelProfile::V6_18;
    t_.profile_given = true;
    t_.title = "fpsim bench: generated";
    t_.names.mount_files = {"a"};
    t_.names.mount_file_created = {false};
    t_.names.backing_files = {"x.dat"};
    sim::Statement s;
    s.op = sim::Op::Init;
    s.init.passthrough = true;
    s.init.max_stack_depth = 1;
    push(s);
  }
  int open(sim::AccessMode access) {
    const int h = static_cast<int>(t_.names.handles.size());
    t_.names.handles.push_back(fmt::format("H{}", h + 1));
    sim::Statement s;
    s.op = sim::Op::Open;
    s.handle = h;
    s.file = 0;
    s.access = access;
    push(s);
    return h;
  }
  void on_handle(sim::Op op, int h) {
    sim::Statement s;
    s.op = op;
    s.handle = h;
    push(s);
  }
  // open, read, write, close: the steady churn of a cached server.
  void churn_until(std::size_t total) {
    while (t_.statements.size() + 4 <= total) {
      const int h = open(sim::AccessMode::ReadWrite);
      on_handle(sim::Op::Read, h);
      on_handle(sim::Op::Write, h);
      on_handle(sim::Op::Close, h);
    }
  }
  std::size_t size() const { return t_.statements.size(); }
  sim::Trace take() { return std::move(t_); }

private:
  void push(sim::Statement s) {
    s.line = static_cast<int>(t_.statements.size()) + 4;
    t_.statements.push_back(std::move(s));
  }
  sim::Trace t_;
};

// `live` cached files held open, then churn up to `total` statements.
sim::Trace generated(std::size_t live, std::size_t total) {
  TraceBuilder b;
  for (std::size_t i = 0; i < live; ++i)
    b.open(sim::AccessMode::ReadOnly);
  b.churn_until(total);
  return b.take();
}

// Steps statements [from, end) of t on a fresh executor after running [0, from) the same way,
// checked if `checks` (incrementally, as replay does); returns seconds per timed statement.
// Stops early once `budget` seconds are spent.
double seconds_per_statement(const sim::Trace &t, std::size_t from, bool checks, double budget,
                             std::size_t *timed) {
  sim::SimExecutor ex;
  ex.set_checks(checks);
  ex.begin(t, t.profile);
  sim::Bindings b;
  b.backing_ids.assign(t.names.backings.size(), std::nullopt);
  std::size_t violations = 0;
  for (std::size_t i = 0; i < from; ++i) {
    ex.step(t.statements[i], b);
    violations += ex.after_step().size();
  }
  std::size_t n = 0;
  const auto t0 = Clock::now();
  for (std::size_t i = from; i < t.statements.size(); ++i) {
    ex.step(t.statements[i], b);
    violations += ex.after_step().size();
    ++n;
    if ((n & 1023) == 0 && since(t0) > budget)
      break;
  }
  const double secs = since(t0);
  if (violations != 0)
    throw std::runtime_error(fmt::format("the generated trace broke {} invariants", violations));
  *timed = n;
  return n ? secs / static_cast<double>(n) : 0;
}

// Whole replay (expectations, teardown and the drain check included).
double replay_rate(const sim::Trace &t, bool checks) {
  sim::SimExecutor ex;
  ex.set_checks(checks);
  const auto t0 = Clock::now();
  const sim::ReplayResult r = sim::replay(t, ex, t.profile, sim::Transcript::Skip);
  const double secs = since(t0);
  if (!r.failures.empty())
    throw std::runtime_error("the generated trace does not replay clean: " + r.failures.front().message);
  return static_cast<double>(r.steps) / secs;
}

// Heap bytes in use (glibc's count of allocated chunks), for bytes per model object.
std::size_t heap_in_use() { return mallinfo2().uordblks; }

json memory_figures() {
  constexpr std::size_t kN = 100'000;
  json out;
  auto mounted = [] {
    model::Model m;
    model::InitReply init;
    init.passthrough = true;
    init.max_stack_depth = 1;
    model::fuse_mount(m, init);
    return m;
  };
  // make_one(m) readies a mounted model and returns the step that makes one object.
  auto bytes_each = [&](const char *key, auto make_one) {
    model::Model m = mounted();
    auto one = make_one(m);
    const std::size_t before = heap_in_use();
    for (std::uint32_t i = 0; i < kN; ++i) {
      one(i);
      m.clear_touched(); // as the driver does after every step
    }
    out[key] = static_cast<double>(heap_in_use() - before) / kN;
  };
  bytes_each("bytes_per_inode",
             [](model::Model &m) { return [&m](std::uint32_t i) { model::fuse_iget(m, i); }; });
  bytes_each("bytes_per_file", [](model::Model &m) {
    const model::InodeId inode = model::fuse_iget(m, 0);
    return [&m, inode](std::uint32_t) { model::fuse_open(m, inode, {}, model::OpenReply{}); };
  });
  bytes_each("bytes_per_backing", [](model::Model &m) {
    return [&m](std::uint32_t) { model::fuse_dev_ioctl_backing_open(m, {}); };
  });
  out["objects_each"] = kN;
  out["note"] = "heap growth over 100,000 objects of the model alone (no checker), vector growth "
                "included";
  return out;
}

std::string harness_path(const FiguresOptions &o) {
  if (!o.harness.empty())
    return o.harness;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec)
    return {};
  return (self.parent_path().parent_path() / "harness" / "fpsim-harness").string();
}

// The running kernel's statements/s on the same kind of trace, through fpsim-harness run.
json kernel_figures(const FiguresOptions &o, const sim::Trace &t, double sim_rate) {
  json out;
  const std::string harness = harness_path(o);
  if (harness.empty() || access(harness.c_str(), X_OK) != 0) {
    out["skipped"] = "fpsim-harness not found beside fpsim (pass --harness PATH)";
    return out;
  }
  if (geteuid() != 0) {
    out["skipped"] = "needs root (fpsim-harness mounts a real FUSE passthrough file system)";
    return out;
  }
  char dir_template[] = "/tmp/fpsim-bench.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    out["skipped"] = fmt::format("mkdtemp: {}", std::strerror(errno));
    return out;
  }
  const std::string path = std::string(dir_template) + "/kernel-rate.trace";
  {
    std::ofstream f(path);
    f << sim::print_trace(t);
  }
  const std::string cmd = fmt::format("'{}' run '{}' 2>&1", harness, path);
  std::string text;
  if (FILE *p = popen(cmd.c_str(), "r")) {
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), buf.size(), p))
      text += buf.data();
    const int status = pclose(p);
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (rc == 77)
      out["skipped"] = text.substr(0, text.find('\n'));
    else if (rc != 0)
      out["skipped"] = fmt::format("fpsim-harness run exited {}: {}", rc, text.substr(0, 300));
  }
  std::filesystem::remove_all(dir_template);
  if (out.contains("skipped"))
    return out;
  std::smatch m;
  static const std::regex rate(R"(kernel: (\d+) statements in ([0-9.]+) s \(([0-9.]+) statements/s\))");
  if (!std::regex_search(text, m, rate)) {
    out["skipped"] = "fpsim-harness run printed no rate line";
    return out;
  }
  const double kernel_rate = std::stod(m[3]);
  out["statements"] = std::stoull(m[1]);
  out["statements_per_s"] = kernel_rate;
  out["sim_statements_per_s_with_checks"] = sim_rate;
  out["sim_over_kernel"] = kernel_rate > 0 ? sim_rate / kernel_rate : 0;
  return out;
}

std::string machine() {
  utsname u{};
  uname(&u);
  return fmt::format("{} {}, {} cpus", u.sysname, u.release, std::thread::hardware_concurrency());
}

} // namespace

sim::Trace bench_trace(std::size_t statements) { return generated(16, statements); }

json measure_figures(const FiguresOptions &o) {
  json f;
  f["machine"] = machine();

  // Replay: one generated trace of o.statements statements (16 live files under the churn).
  const sim::Trace big = bench_trace(o.statements);
  json replay;
  replay["statements"] = big.statements.size();
  const std::string text = sim::print_trace(big);
  const auto p0 = Clock::now();
  sim::ParseResult parsed = sim::parse_trace(text, "generated");
  const double parse_secs = since(p0);
  if (auto *e = std::get_if<sim::ParseError>(&parsed))
    replay["parse_error"] = e->str();
  else
    replay["parse_lines_per_s"] =
        static_cast<double>(std::count(text.begin(), text.end(), '\n')) / parse_secs;
  // Each rate says how many statements it timed: all of them unless the budget ran out.
  for (const auto &[key, checks] : {std::pair{"with_checks", true}, std::pair{"without_checks", false}}) {
    std::size_t timed = 0;
    const double per = seconds_per_statement(big, 1, checks, o.replay_budget, &timed);
    replay[std::string(key) + "_per_s"] = per > 0 ? 1 / per : 0;
    replay[std::string(key) + "_statements_timed"] = timed;
  }
  f["replay"] = replay;

  sim::ExploreOptions eo;
  eo.depth = o.explore_depth;
  const sim::ExploreResult er = sim::explore(eo);
  f["explore"] = {{"depth", eo.depth},
                  {"states", er.states},
                  {"seconds", er.seconds},
                  {"states_per_s", static_cast<double>(er.states) / er.seconds},
                  {"bytes_per_state", er.bytes_per_state},
                  {"complete", er.complete}};

  sim::FuzzOptions fo;
  fo.seed = 1;
  fo.seconds = o.fuzz_seconds;
  const sim::FuzzResult fr = sim::fuzz(fo);
  f["fuzz"] = {{"seconds", fr.elapsed},
               {"cases", fr.cases},
               {"failed", fr.failed},
               {"cases_per_s", static_cast<double>(fr.cases) / fr.elapsed},
               {"statements_per_s", static_cast<double>(fr.statements) / fr.elapsed}};

  f["memory"] = memory_figures();

  // Scaling: the per-statement cost (with checks) of the same churn beside 1,000 and 1,000,000
  // live files. Each end gets at most 20 s.
  json scaling;
  for (const auto &[key, live] : {std::pair{"small", o.scale_small}, std::pair{"large", o.scale_large}}) {
    const sim::Trace t = generated(live, live + 1 + o.scale_steps);
    std::size_t timed = 0;
    const double per = seconds_per_statement(t, live + 1, true, 20.0, &timed);
    scaling[key] = {{"live_files", live}, {"statements_timed", timed}, {"ns_per_statement", per * 1e9}};
  }
  scaling["large_over_small"] = scaling["large"]["ns_per_statement"].get<double>() /
                                scaling["small"]["ns_per_statement"].get<double>();
  f["scaling"] = scaling;

  // The kernel: the same kind of statements (16 live files, churn), a few seconds on a real mount.
  const sim::Trace small = generated(16, o.kernel_statements);
  f["kernel"] = kernel_figures(o, small, replay_rate(small, true));

  const auto rate = [&](const char *k) { return f["replay"].value(k, 0.0); };
  f["targets"] = {
      {"replay_with_checks_5M", rate("with_checks_per_s") >= 5e6},
      {"replay_without_checks_20M", rate("without_checks_per_s") >= 20e6},
      {"parse_2M_lines", rate("parse_lines_per_s") >= 2e6},
      {"explore_2M_states", f["explore"]["states_per_s"].get<double>() >= 2e6},
      {"explore_64_bytes", f["explore"]["bytes_per_state"].get<double>() <= 64},
      {"scaling_within_2x", scaling["large_over_small"].get<double>() <= 2},
      {"kernel_500x", f["kernel"].contains("sim_over_kernel") &&
                          f["kernel"]["sim_over_kernel"].get<double>() >= 500},
  };
  return f;
}

std::string figures_table(const json &f) {
  std::string s = fmt::format("fpsim bench: {}\n", f["machine"].get<std::string>());
  auto num = [](const json &j, const char *k) { return j.contains(k) ? j[k].get<double>() : 0.0; };
  const json &r = f["replay"];
  s += fmt::format("  replay ({} statements): parse {:.2f}M lines/s, with checks {:.3f}M/s (first {} "
                   "statements), without {:.3f}M/s (first {})\n",
                   r["statements"].get<std::size_t>(), num(r, "parse_lines_per_s") / 1e6,
                   num(r, "with_checks_per_s") / 1e6,
                   r["with_checks_statements_timed"].get<std::size_t>(),
                   num(r, "without_checks_per_s") / 1e6,
                   r["without_checks_statements_timed"].get<std::size_t>());
  if (r.contains("parse_error"))
    s += fmt::format("    parse: {}\n", r["parse_error"].get<std::string>());
  const json &e = f["explore"];
  s += fmt::format("  explore depth {}: {} states, {:.0f} states/s, {:.1f} bytes/state\n",
                   e["depth"].get<int>(), e["states"].get<std::size_t>(), num(e, "states_per_s"),
                   num(e, "bytes_per_state"));
  const json &z = f["fuzz"];
  s += fmt::format("  fuzz: {:.0f} cases/s, {:.0f} statements/s\n", num(z, "cases_per_s"),
                   num(z, "statements_per_s"));
  const json &m = f["memory"];
  s += fmt::format("  memory: {:.0f} B/inode, {:.0f} B/file, {:.0f} B/backing object\n",
                   num(m, "bytes_per_inode"), num(m, "bytes_per_file"), num(m, "bytes_per_backing"));
  const json &c = f["scaling"];
  s += fmt::format("  scaling: {:.0f} ns/statement beside {} live files, {:.0f} ns beside {} ({:.1f}x)\n",
                   num(c["small"], "ns_per_statement"), c["small"]["live_files"].get<std::size_t>(),
                   num(c["large"], "ns_per_statement"), c["large"]["live_files"].get<std::size_t>(),
                   num(c, "large_over_small"));
  const json &k = f["kernel"];
  if (k.contains("skipped"))
    s += fmt::format("  kernel: skipped: {}\n", k["skipped"].get<std::string>());
  else
    s += fmt::format("  kernel: {:.0f} statements/s; simulator with checks {:.0f}/s ({:.0f}x)\n",
                     num(k, "statements_per_s"), num(k, "sim_statements_per_s_with_checks"),
                     num(k, "sim_over_kernel"));
  s += "  targets:";
  for (const auto &[name, met] : f["targets"].items())
    s += fmt::format(" {}={}", name, met.get<bool>() ? "met" : "MISSED");
  s += "\n";
  return s;
}

} // namespace fpsim::tools
