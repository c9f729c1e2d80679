// The invariant checker has teeth: each deliberately broken transition is caught, and the same
// scenarios on the intact model are clean.
#include "sim/parser.h"
#include "sim/replay.h"
#include "sim/sim_executor.h"

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

Trace parse(const char *text) {
  ParseResult p = parse_trace(text, "scenario.trace");
  if (auto *e = std::get_if<ParseError>(&p))
    ADD_FAILURE() << e->str();
  return std::get<Trace>(p);
}

std::vector<ReplayFailure> run(model::Mutant mutant) {
  const Trace t = parse(kScenario);
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

TEST(CheckerTeeth, FbKeptWhenTheCounterReturnsToZero) {
  const auto fs = run(model::Mutant::NoFbDetachAtZero);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation,
                       "[I1] inode a: fb attached but iocachectr=0"))
      << dump(fs);
}

TEST(CheckerTeeth, MissingCounterDecrementOnCachedRelease) {
  const auto fs = run(model::Mutant::CachedReleaseSkipsDec);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation, "[I2]")) << dump(fs);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation, "fuse_evict_inode")) << dump(fs);
}

TEST(CheckerTeeth, MissingEbusyCheckLetsASecondFbIn) {
  const auto fs = run(model::Mutant::NoEbusyCheck);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation, "[I3]")) << dump(fs);
}

TEST(CheckerTeeth, BackingCloseThatKeepsTheIdMapped) {
  const auto fs = run(model::Mutant::IdrKeptOnClose);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation,
                       "[I5] B1 (fb#0, id 1): freed but refcount=0 and still reachable from the "
                       "id map (id 1)"))
      << dump(fs);
}

TEST(CheckerTeeth, ReleaseThatForgetsThePerFileBackingFile) {
  const auto fs = run(model::Mutant::BackingFileNotReleased);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation, "[backing_file]")) << dump(fs);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Leak, "backing_file#0 (for H1) not put"))
      << dump(fs);
}

TEST(CheckerTeeth, LeakReportNamesTheObject) {
  const auto fs = run(model::Mutant::BackingCloseKeepsRef);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Violation, "[I6] B1 (fb#0, id 1): refcount=1 but held by nobody it knows of"))
      << dump(fs);
  EXPECT_TRUE(reported(fs, ReplayFailure::Kind::Leak, "B2 (fb#1, id 2) not freed: refcount 1"))
      << dump(fs);
}

TEST(CheckerTeeth, WrongExpectationIsAMismatch) {
  const Trace t = parse("fpsim-trace 1\ninit passthrough max_stack_depth=1\n"
                        "backing_open B1 a.dat => id=2\n");
  SimExecutor ex;
  const auto fs = replay(t, ex, t.profile).failures;
  ASSERT_EQ(fs.size(), 1u) << dump(fs);
  EXPECT_EQ(fs[0].kind, ReplayFailure::Kind::Mismatch);
  EXPECT_EQ(fs[0].line, 3);
  EXPECT_EQ(fs[0].expected, "id=2");
  EXPECT_EQ(fs[0].actual, "id=1");
}

TEST(CheckerTeeth, FailedCheckIsReported) {
  const Trace t = parse("fpsim-trace 1\ninit passthrough max_stack_depth=1\n"
                        "backing_open B1 a.dat\ncheck backing B1 refs=2\n");
  SimExecutor ex;
  const auto fs = replay(t, ex, t.profile).failures;
  ASSERT_EQ(fs.size(), 1u) << dump(fs);
  EXPECT_EQ(fs[0].kind, ReplayFailure::Kind::CheckFailed);
  EXPECT_NE(fs[0].message.find("refs: expected 2, got 1"), std::string::npos);
}

} // namespace
