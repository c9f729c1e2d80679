// The invariant checker has teeth: each deliberately broken transition is caught, and the same
// scenarios on the intact model are clean.
#include "sim/exec/live.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "sim/search/generate.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "tests/traces.h"

#include <gtest/gtest.h>

using namespace fpsim;
using namespace fpsim::sim;

namespace {

// Opens in every io mode, closes ids and files, ends writes: touches each faulted transition.
constexpr const char *kScenario = R"(fpsim-trace 1
kernel 6.18
init passthrough max_stack_depth=1
backing_open B1 a.dat
backing_open B2 b.dat
open H1 a rdwr reply=passthrough@B1
open H2 a reply=passthrough@B2
open H3 b reply=cached
open H4 c rdwr reply=direct_io|parallel_direct_writes
write_begin W1 H4
write_end W1
close H1
close H3
close H4
backing_close B1
backing_close B2
)";

Trace parse(const char *text) { return test::parse_ok(text, "scenario.trace"); }

std::vector<ReplayFailure> run(model::Mutant mutant, const char *text = kScenario) {
  const Trace t = parse(text);
  SimExecutor ex(mutant);
  return replay(t, ex, t.profile).failures;
}

bool reported(const std::vector<ReplayFailure> &fs, ReplayFailure::Kind kind,
              const std::string &fragment) {
  for (const auto &f : fs)
    if (f.kind == kind && f.message.find(fragment) != std::string::npos)
      return true;
  return false;
}

std::string dump(const std::vector<ReplayFailure> &fs) {
  std::string s;
  for (const auto &f : fs)
    s += "  line " + std::to_string(f.line) + ": " + f.message + "\n";
  return s;
}

TEST(CheckerTeeth, IntactModelIsClean) {
  const auto fs = run(model::Mutant::None);
  EXPECT_TRUE(fs.empty()) << dump(fs);
}

// Each mutant of the scenario: what the checker must report (kind and a fragment of the message).
struct Caught {
  const char *name;
  model::Mutant mutant;
  std::vector<std::pair<ReplayFailure::Kind, std::string>> reports;
};
void PrintTo(const Caught &c, std::ostream *os) { *os << c.name; }
constexpr auto kViolation = ReplayFailure::Kind::Violation;
constexpr auto kLeak = ReplayFailure::Kind::Leak;
const Caught kCaught[] = {
    {"FbKeptWhenTheCounterReturnsToZero", model::Mutant::NoFbDetachAtZero,
     {{kViolation, "[I1] inode a: fb attached but iocachectr=0"}}},
    {"MissingCounterDecrementOnCachedRelease", model::Mutant::CachedReleaseSkipsDec,
     {{kViolation, "[I2]"}, {kViolation, "fuse_evict_inode"}}},
    {"MissingEbusyCheckLetsASecondFbIn", model::Mutant::NoEbusyCheck, {{kViolation, "[I3]"}}},
    {"BackingCloseThatKeepsTheIdMapped", model::Mutant::IdrKeptOnClose,
     {{kViolation, "[I5] B1 (fb#0, id 1): freed but refcount=0 and still reachable from the "
                   "id map (id 1)"}}},
    {"ReleaseThatForgetsThePerFileBackingFile", model::Mutant::BackingFileNotReleased,
     {{kViolation, "[backing_file]"}, {kLeak, "backing_file#0 (for H1) not put"}}},
    {"LeakReportNamesTheObject", model::Mutant::BackingCloseKeepsRef,
     {{kViolation, "[I6] B1 (fb#0, id 1): refcount=1 but held by nobody it knows of"},
      {kLeak, "B2 (fb#1, id 2) not freed: refcount 1"}}},
};

class Mutated : public testing::TestWithParam<Caught> {};
TEST_P(Mutated, IsCaught) {
  const auto fs = run(GetParam().mutant);
  for (const auto &[kind, fragment] : GetParam().reports)
    EXPECT_TRUE(reported(fs, kind, fragment)) << fragment << "\n" << dump(fs);
}
INSTANTIATE_TEST_SUITE_P(CheckerTeeth, Mutated, testing::ValuesIn(kCaught),
                         [](const testing::TestParamInfo<Caught> &i) { return i.param.name; });

TEST(CheckerTeeth, WrongExpectationIsAMismatch) {
  const auto fs = run(model::Mutant::None, "fpsim-trace 1\ninit passthrough max_stack_depth=1\n"
                                           "backing_open B1 a.dat => id=2\n");
  ASSERT_EQ(fs.size(), 1u) << dump(fs);
  EXPECT_EQ(fs[0].kind, ReplayFailure::Kind::Mismatch);
  EXPECT_EQ(fs[0].line, 3);
  EXPECT_EQ(fs[0].expected, "id=2");
  EXPECT_EQ(fs[0].actual, "id=1");
}

TEST(CheckerTeeth, FailedCheckIsReported) {
  const auto fs = run(model::Mutant::None, "fpsim-trace 1\ninit passthrough max_stack_depth=1\n"
                                           "backing_open B1 a.dat\ncheck backing B1 refs=2\n");
  ASSERT_EQ(fs.size(), 1u) << dump(fs);
  EXPECT_EQ(fs[0].kind, ReplayFailure::Kind::CheckFailed);
  EXPECT_NE(fs[0].message.find("refs: expected 2, got 1"), std::string::npos);
}

// ---- incremental checking sees what a full check sees ------------------------------------------

// Two simulators in lockstep, one checking incrementally and one checking everything after
// every step; every step's violations must be the same, in the same order.
class LockstepExecutor final : public Executor {
public:
  explicit LockstepExecutor(model::Mutant mutant) : inc_(mutant), full_(mutant), copied_(mutant) {
    full_.set_check_mode(CheckMode::Full);
  }
  void begin(const Trace &t, KernelProfile p) override {
    inc_.begin(t, p);
    full_.begin(t, p);
    copied_.begin(t, p);
  }
  Outcome step(const Statement &s, const Bindings &b) override {
    full_.step(s, b);
    // As fpsim explore does: a copy before every step, whose checker recounts.
    copied_ = SimExecutor(copied_);
    copied_.step(s, b);
    return inc_.step(s, b);
  }
  CheckResult check(const Statement &s, const Bindings &b) override {
    full_.check(s, b);
    copied_.check(s, b);
    return inc_.check(s, b);
  }
  std::vector<Violation> after_step() override {
    std::vector<Violation> a = inc_.after_step(), b = full_.after_step();
    const std::vector<Violation> c = copied_.after_step();
    if (c.size() != b.size() && mismatch.empty())
      mismatch = fmt_step("copied " + std::to_string(c.size()) + " violations, full " +
                          std::to_string(b.size()), c, b);
    steps++;
    violations += b.size();
    if (a.size() != b.size()) {
      mismatch = fmt_step("incremental " + std::to_string(a.size()) + " violations, full " +
                          std::to_string(b.size()), a, b);
    } else {
      for (std::size_t i = 0; i < a.size() && mismatch.empty(); ++i)
        if (a[i].rule != b[i].rule || a[i].message != b[i].message)
          mismatch = fmt_step("violation " + std::to_string(i) + " differs", a, b);
    }
    return a;
  }
  std::vector<Violation> drain() override { return inc_.drain(); }
  void end() override {}

  std::string mismatch;
  std::size_t steps = 0;
  std::size_t violations = 0;

private:
  std::string fmt_step(const std::string &what, const std::vector<Violation> &a,
                       const std::vector<Violation> &b) const {
    std::string s = "step " + std::to_string(steps) + ": " + what + "\n";
    for (const auto &v : a)
      s += "  incremental [" + v.rule + "] " + v.message + "\n";
    for (const auto &v : b)
      s += "  full        [" + v.rule + "] " + v.message + "\n";
    return s;
  }
  SimExecutor inc_, full_, copied_;
};

std::vector<model::Mutant> kernel_and_mutants() {
  std::vector<model::Mutant> all{model::Mutant::None};
  for (model::Mutant m : model::all_mutants())
    all.push_back(m);
  return all;
}

TEST(IncrementalChecker, SameViolationsAsFullOnTheCorpusUnderEveryMutant) {
  std::vector<Trace> corpus;
  for (const std::string &path : test::corpus()) {
    ParseResult p = load_trace(path);
    ASSERT_TRUE(std::holds_alternative<Trace>(p)) << path;
    corpus.push_back(std::get<Trace>(std::move(p)));
  }
  ASSERT_GT(corpus.size(), 50u);
  std::size_t violations = 0;
  for (model::Mutant mutant : kernel_and_mutants())
    for (const Trace &t : corpus) {
      LockstepExecutor ex(mutant);
      replay(t, ex, t.profile);
      ASSERT_TRUE(ex.mismatch.empty())
          << t.path << " under " << model::mutant_name(mutant) << ":\n" << ex.mismatch;
      violations += ex.violations;
    }
  // The mutants must have broken invariants, or the comparison compared nothing.
  EXPECT_GT(violations, 100u);
}

TEST(IncrementalChecker, SameViolationsAsFullOnGeneratedTraces) {
  std::size_t violations = 0, steps = 0;
  for (KernelProfile p : {KernelProfile::V15, KernelProfile::V6_9, KernelProfile::V6_18})
    for (model::Mutant mutant : kernel_and_mutants())
      for (std::uint64_t seed = 1; seed <= 150; ++seed) {
        GenOptions o;
        o.profile = p;
        o.max_ops = 60;
        const Trace t = generate_trace(seed * 7919 + static_cast<std::uint64_t>(mutant), o);
        LockstepExecutor ex(mutant);
        replay(t, ex, t.profile);
        ASSERT_TRUE(ex.mismatch.empty())
            << "seed " << seed << " under " << model::mutant_name(mutant) << ", "
            << profile_name(p) << ":\n" << ex.mismatch << "\n" << print_trace(t);
        violations += ex.violations;
        steps += ex.steps;
      }
  EXPECT_GT(violations, 1000u);
  EXPECT_GT(steps, 100000u);
}

// Checks switched off and on again: the checker has lost track and checks everything once.
TEST(IncrementalChecker, ChecksTurnedBackOnSeeWhatHappenedMeanwhile) {
  const Trace t = parse(kScenario);
  SimExecutor ex(model::Mutant::BackingCloseKeepsRef);
  ex.begin(t, t.profile);
  Live live(t.names);
  ex.set_checks(false);
  for (const Statement &s : t.statements) {
    live.track(s, ex.step(s, live.bindings()));
    EXPECT_TRUE(ex.after_step().empty());
  }
  ex.set_checks(true);
  Statement abort;
  abort.op = Op::Abort;
  ex.step(abort, live.bindings());
  const std::vector<Violation> v = ex.after_step();
  ASSERT_FALSE(v.empty()) << "the fb B1 keeps a reference nobody holds";
  EXPECT_EQ(v[0].rule, "I6");
}

// A state with an object in every table: two inodes, passthrough and cached files, a mapping
// of each kind, held parallel writes and cached opens asleep behind them.
constexpr const char *kRichState = R"(fpsim-trace 1
kernel 6.18
init passthrough max_stack_depth=1
backing_open B1 a.dat
backing_open B2 b.dat
open P1 a rdwr reply=passthrough@B1
mmap M1 P1 shared
open C1 b reply=cached
mmap M2 C1 shared
open D1 c rdwr reply=direct_io|parallel_direct_writes
write_begin W1 D1
write_begin W2 D1
open C2 c reply=cached
)";

// Each object corrupted alone, through its table as the model writes: the incremental check
// must see what the full check sees (the dependencies the traces above never exercise alone).
TEST(IncrementalChecker, EveryCorruptedObjectIsSeen) {
  const Trace t = parse(kRichState);
  SimExecutor ex;
  ex.begin(t, t.profile);
  Live live(t.names);
  for (const Statement &st : t.statements) {
    live.track(st, ex.step(st, live.bindings()));
    ASSERT_TRUE(ex.after_step().empty()) << st.line;
  }
  const model::Model &clean = ex.model();
  ASSERT_GE(clean.inodes.size(), 3u);
  ASSERT_FALSE(clean.vmas.empty());
  ASSERT_FALSE(clean.writes.empty());
  ASSERT_FALSE(clean.tasks.empty());
  ASSERT_FALSE(clean.backing_files.empty());
  const ObjectNames names;
  model::Model base = clean;
  base.clear_touched();

  std::size_t cases = 0, caught = 0;
  auto compare = [&](const std::string &what, auto &&corrupt) {
    // Two checkers in the same state: each has checked the clean model (a copy would recount).
    InvariantChecker inc, full;
    ASSERT_TRUE(inc.check(base, names, CheckMode::Full).empty());
    ASSERT_TRUE(full.check(base, names, CheckMode::Full).empty());
    model::Model m = base;
    corrupt(m);
    const auto a = inc.check(m, names, CheckMode::Incremental);
    const auto b = full.check(m, names, CheckMode::Full);
    ASSERT_EQ(a.size(), b.size()) << what;
    for (std::size_t i = 0; i < a.size(); ++i)
      EXPECT_EQ(a[i].message, b[i].message) << what;
    // And the next step, with nothing touched, still reports what persists.
    m.clear_touched();
    EXPECT_EQ(inc.check(m, names).size(), full.check(m, names, CheckMode::Full).size()) << what;
    cases++;
    caught += !b.empty();
  };
  for (std::uint32_t i = 0; i < base.inodes.size(); ++i) {
    compare("inode ctr " + std::to_string(i), [i](model::Model &m) { m.inodes.mut(i).iocachectr++; });
    compare("inode fb " + std::to_string(i), [i](model::Model &m) { m.inodes.mut(i).fb.reset(); });
  }
  for (std::uint32_t i = 0; i < base.files.size(); ++i) {
    compare("file f_count " + std::to_string(i), [i](model::Model &m) { m.files.mut(i).f_count = model::RefCount(0); });
    compare("file released " + std::to_string(i), [i](model::Model &m) { m.files.mut(i).released = true; });
    compare("file cred " + std::to_string(i), [i](model::Model &m) { m.files.mut(i).cred = model::CredId{0}; });
  }
  for (std::uint32_t i = 0; i < base.backings.size(); ++i)
    compare("fb count " + std::to_string(i), [i](model::Model &m) { m.backings.mut(i).count.inc(); });
  for (std::uint32_t i = 0; i < base.creds.size(); ++i)
    compare("cred " + std::to_string(i), [i](model::Model &m) { m.creds.mut(i).usage.inc(); });
  for (std::uint32_t i = 0; i < base.backing_files.size(); ++i)
    compare("backing_file " + std::to_string(i), [i](model::Model &m) { m.backing_files.mut(i).f_count.inc(); });
  for (std::uint32_t i = 0; i < base.vmas.size(); ++i)
    compare("vma " + std::to_string(i), [i](model::Model &m) { m.vmas.mut(i).mapped = false; });
  for (std::uint32_t i = 0; i < base.writes.size(); ++i) {
    compare("write counted " + std::to_string(i), [i](model::Model &m) { m.writes.mut(i).counted = !m.writes[i].counted; });
    compare("write done " + std::to_string(i), [i](model::Model &m) { m.writes.mut(i).done = true; });
  }
  for (std::uint32_t i = 0; i < base.tasks.size(); ++i)
    compare("task " + std::to_string(i), [i](model::Model &m) { m.tasks.mut(i).done = true; });
  compare("id map", [](model::Model &m) { m.fc.backing_files_map.erase(1); });
  EXPECT_GT(cases, 25u);
  EXPECT_GT(caught, 20u) << "most corruptions break an invariant";
}

} // namespace
