#include "fuzz_kernel.h"

#include "sim/search/fuzz.h"
#include "sim/search/generate.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/search/shrink.h"
#include "sim/exec/live.h"
#include "sim/exec/sim_executor.h"
#include "tools/exit_codes.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>

namespace fpsim::harness {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A race of the kernel's own that no expectation can state: when a write-through WRITE unlocks
// its folio, the folio goes to whoever runs first, a call sleeping on it (an invalidating open,
// a page-cache read, a direct_io mmap) or the next page-cache writer queued on the inode lock,
// which locks the folio again (page lock unfairness: both orders were seen on 6.18).
bool folio_race(const model::Model &m) {
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i) {
    bool sleeper = false;
    bool writer = false;
    for (const model::Task &t : m.tasks) {
      if (t.done || t.inode != model::InodeId{i})
        continue;
      switch (t.kind) {
      case model::TaskKind::OpenInvalidateWait:
      case model::TaskKind::ReadPageWait:
      case model::TaskKind::MmapInvalidateWait:
        sleeper = true;
        break;
      case model::TaskKind::WriteLockWait: {
        const model::FuseFile &ff = m.file(t.file);
        writer = writer || (m.writes.at(model::idx(t.write)).held &&
                            !(ff.open_flags & model::fopen::DIRECT_IO) && !ff.f_flags.o_direct &&
                            !m.fc.writeback_cache);
        break;
      }
      case model::TaskKind::OpenCachedIoWait:
      case model::TaskKind::MmapCachedIoWait:
      case model::TaskKind::TruncateLockWait:
      case model::TaskKind::DirectReadLockWait:
      case model::TaskKind::FlushLockWait:
        break;
      }
    }
    if (sleeper && writer)
      return true;
  }
  return false;
}

// How many leading statements of `t` stay clear of folio_race on the model.
std::size_t race_free_prefix(const sim::Trace &t) {
  sim::SimExecutor ex;
  ex.begin(t, t.profile);
  sim::Live live(t.names);
  for (std::size_t i = 0; i < t.statements.size(); ++i) {
    const sim::Statement &s = t.statements[i];
    if (s.op == sim::Op::Check)
      continue;
    live.track(s, ex.step(s, live.bindings()));
    if (folio_race(ex.model()))
      return i;
  }
  return t.statements.size();
}

std::string repro_command(std::uint64_t case_seed, int max_ops) {
  return max_ops == 40 ? fmt::format("fpsim-harness fuzz --seed {} --runs 1", case_seed)
                       : fmt::format("fpsim-harness fuzz --seed {} --runs 1 --max-ops {}", case_seed, max_ops);
}

// Writes OUT/kernel-<seed>.trace: comments, then the trace with the kernel's outcomes as expectations.
// Returns the path, or empty with *error set.
std::string write_regression(const KernelFuzzOptions &opts, std::uint64_t case_seed, std::uint64_t case_index,
                             std::size_t original, const sim::ShrinkResult &shrunk, double shrink_secs,
                             const sim::Trace &small, const CrossResult &r, const CrossResult &found,
                             std::string *error) {
  sim::Trace t = small;
  for (std::size_t i = 0; i < t.statements.size() && i < r.kernel_outcomes.size(); ++i) {
    const auto &o = r.kernel_outcomes[i];
    if (o && o->kind != sim::Outcome::Kind::Invalid)
      t.statements[i].expect = *o;
    else
      t.statements[i].expect.reset();
  }
  t.title = fmt::format("fpsim-harness fuzz: kernel vs simulator, case seed {}", case_seed);
  // A kernel outcome the trace language cannot state for that statement (e.g. `fuse` for a
  // write_begin the server did not hold) is left without an expectation and named in a comment.
  std::vector<std::string> unstated;
  for (std::size_t i = 0; i < t.statements.size(); ++i) {
    if (!t.statements[i].expect)
      continue;
    sim::Trace one = t;
    for (std::size_t j = 0; j < one.statements.size(); ++j)
      if (j != i)
        one.statements[j].expect.reset();
    if (std::holds_alternative<sim::ParseError>(sim::parse_trace(sim::print_trace(one), "check"))) {
      unstated.push_back(fmt::format("#   {} => {} (kernel; not expressible as an expectation)",
                                     sim::format_statement(t.statements[i], t.names),
                                     sim::format_outcome(*t.statements[i].expect)));
      t.statements[i].expect.reset();
    }
  }
  const std::string body = sim::print_trace(t);
  std::vector<std::string> comments = {
      "# fpsim-harness fuzz counterexample: the simulator disagrees with the running kernel",
      fmt::format("# case {} of seed {}: case seed {}, profile {}", case_index, opts.seed, case_seed,
                  model::profile_name(t.profile)),
      fmt::format("# shrunk from {} to {} statements ({} shrink attempts, {:.1f} s{}); expectations are the "
                  "KERNEL's outcomes",
                  original, t.statements.size(), shrunk.attempts, shrink_secs,
                  shrunk.exhausted ? ", stopped at the cap" : ""),
      "# found on the generated trace as:",
  };
  auto said = [&comments](const CrossResult &x) {
    for (const Disagreement &d : x.disagreements)
      comments.push_back(d.line ? fmt::format("#   {}: sim {}, kernel {}", d.statement, d.sim, d.kernel)
                                : fmt::format("#   {}", d.text));
  };
  said(found);
  comments.push_back("# disagreements (on the shrunk trace as written):");
  said(r);
  if (!unstated.empty()) {
    comments.push_back("# kernel outcomes left without an expectation:");
    comments.insert(comments.end(), unstated.begin(), unstated.end());
  }
  comments.push_back(fmt::format("# repro: {}", repro_command(case_seed, opts.max_ops)));
  std::string text;
  for (const std::string &l : comments)
    text += l + "\n";
  text += body;
  const std::string name = fmt::format("kernel-{}.trace", case_seed);
  sim::ParseResult back = sim::parse_trace(text, name);
  if (auto *e = std::get_if<sim::ParseError>(&back)) {
    *error = "internal: the regression trace does not parse: " + e->str();
    return {};
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(opts.out_dir, ec);
  if (ec) {
    *error = fmt::format("{}: cannot create directory: {}", opts.out_dir, ec.message());
    return {};
  }
  const std::string path = (fs::path(opts.out_dir) / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    *error = fmt::format("{}: cannot write", path);
    return {};
  }
  return path;
}

void print_disagreements(const CrossResult &r) {
  for (const Disagreement &d : r.disagreements)
    fmt::print("  {}\n", d.text);
}

} // namespace

int fuzz_kernel(const KernelFuzzOptions &opts, model::KernelProfile profile, const CrossRunner &cross,
                const std::function<bool()> &cancelled) {
  sim::GenOptions gen;
  gen.profile = profile;
  gen.max_ops = opts.max_ops;
  const auto t0 = Clock::now();
  std::uint64_t passed = 0;
  std::uint64_t failed = 0;
  std::uint64_t statements = 0; // generated statements run on the kernel
  std::size_t kernel_steps = 0;
  double kernel_seconds = 0;
  bool interrupted = false;
  double shrink_total = 0; // seconds spent shrinking and writing, not fuzzing
  for (std::uint64_t k = 0;; ++k) {
    if (opts.runs && k >= *opts.runs)
      break;
    if (!opts.runs && opts.seconds && since(t0) >= *opts.seconds)
      break;
    if (opts.runs && opts.seconds && since(t0) >= *opts.seconds)
      break;
    if (cancelled()) {
      interrupted = true;
      break;
    }
    const std::uint64_t case_seed = sim::fuzz_case_seed(opts.seed, k);
    sim::Trace t = sim::generate_trace(case_seed, gen);
    t.statements.resize(race_free_prefix(t));
    t.path = fmt::format("case-{}", case_seed);
    const CrossResult r = cross(t);
    if (r.interrupted || cancelled()) {
      interrupted = true;
      break;
    }
    statements += t.statements.size();
    kernel_steps += r.kernel_steps;
    kernel_seconds += r.kernel_seconds;
    if (r.agrees()) {
      ++passed;
      continue;
    }
    ++failed;
    fmt::print("FAIL case {} (case seed {}, {} statements)\n", k, case_seed, t.statements.size());
    print_disagreements(r);
    std::fflush(stdout);
    // Shrink: any disagreement still there; every attempt runs on the kernel; capped.
    const auto s0 = Clock::now();
    struct AddShrinkTime {
      Clock::time_point s0;
      double &total;
      ~AddShrinkTime() { total += since(s0); }
    } add_shrink_time{s0, shrink_total};
    std::size_t kernel_runs = 0;
    sim::ShrinkOptions so;
    so.max_attempts = opts.shrink_attempts;
    const sim::ShrinkResult shrunk = sim::shrink_trace(
        t,
        [&](const sim::Trace &cand) {
          if (cancelled() || since(s0) >= opts.shrink_seconds)
            return false;
          if (race_free_prefix(cand) < cand.statements.size())
            return false;
          const CrossResult c = cross(cand);
          if (!c.sim_invalid)
            ++kernel_runs;
          return !c.interrupted && !c.sim_invalid && !c.agrees();
        },
        so);
    if (cancelled()) {
      interrupted = true;
      break;
    }
    const double shrink_secs = since(s0);
    sim::Trace small = shrunk.trace;
    small.path = t.path;
    CrossResult sr = cross(small);
    if (sr.interrupted) {
      interrupted = true;
      break;
    }
    if (sr.agrees()) { // flaky: keep the unshrunk trace
      fmt::print("  (the shrunk trace agrees on a rerun: writing the generated trace instead)\n");
      small = t;
      sr = r;
    }
    fmt::print("  shrunk from {} to {} statements ({} kernel runs in {:.1f} s{})\n", t.statements.size(),
               small.statements.size(), kernel_runs, shrink_secs, shrunk.exhausted ? ", capped" : "");
    print_disagreements(sr);
    std::string error;
    const std::string path =
        write_regression(opts, case_seed, k, t.statements.size(), shrunk, shrink_secs, small, sr, r, &error);
    if (path.empty())
      fmt::print("  cannot write the regression trace: {}\n", error);
    else
      fmt::print("  wrote {}\n", path);
    fmt::print("  repro: {}\n", repro_command(case_seed, opts.max_ops));
    std::fflush(stdout);
    break; // the first disagreement ends the run
  }
  const double wall = since(t0);
  fmt::print("fpsim-harness fuzz: {} passed, {} failed\n", passed, failed);
  fmt::print("{} cases in {:.2f} s wall clock ({:.2f} cases/s); kernel: {} statements ({} steps) in {:.2f} s "
             "({:.0f} statements/s in the kernel runs, {:.0f} statements/s wall clock)\n",
             passed + failed, wall, wall > 0 ? static_cast<double>(passed + failed) / wall : 0.0, statements,
             kernel_steps, kernel_seconds,
             kernel_seconds > 0 ? static_cast<double>(kernel_steps) / kernel_seconds : 0.0,
             wall > 0 ? static_cast<double>(statements) / wall : 0.0);
  const double fuzzing = wall - shrink_total;
  if (shrink_total > 0)
    fmt::print("excluding {:.2f} s of shrinking: {:.2f} cases/s, {:.0f} statements/s\n", shrink_total,
               fuzzing > 0 ? static_cast<double>(passed + failed) / fuzzing : 0.0,
               fuzzing > 0 ? static_cast<double>(statements) / fuzzing : 0.0);
  std::fflush(stdout);
  if (interrupted)
    return -1;
  return failed ? kExitFailed : kExitOk;
}

} // namespace fpsim::harness
