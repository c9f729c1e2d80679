// Replay over the corpus: every trace passes and replays identically twice; teardown drains
// what a trace leaves open; annotate fills in outcomes that then replay clean.
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "tests/traces.h"

#include <gtest/gtest.h>

using namespace fpsim;
using namespace fpsim::sim;

namespace {

using test::corpus;
using test::load_ok;
using test::parse_ok;

TEST(Replay, CorpusIsLargeEnough) { EXPECT_GE(corpus().size(), 45u); }

TEST(Replay, CorpusPassesAndIsDeterministic) {
  for (const std::string &path : corpus()) {
    const Trace t = load_ok(path);
    SimExecutor a, b;
    const ReplayResult ra = replay(t, a, t.profile);
    const ReplayResult rb = replay(t, b, t.profile);
    EXPECT_TRUE(ra.passed()) << path << ": " << (ra.failures.empty() ? "" : ra.failures[0].message);
    EXPECT_EQ(ra.transcript, rb.transcript) << path;
    EXPECT_GT(ra.steps, 0u) << path;
  }
}

// Without the transcript a replay decides the same: same outcomes, same failures (a mutant's).
TEST(Replay, SkippingTheTranscriptChangesNoResult) {
  for (const std::string &path : corpus()) {
    const Trace t = load_ok(path);
    SimExecutor a(model::Mutant::NoFbDetachAtZero), b(model::Mutant::NoFbDetachAtZero);
    const ReplayResult ra = replay(t, a, t.profile);
    const ReplayResult rb = replay(t, b, t.profile, Transcript::Skip);
    EXPECT_TRUE(rb.transcript.empty());
    ASSERT_EQ(ra.failures.size(), rb.failures.size()) << path;
    for (std::size_t i = 0; i < ra.failures.size(); ++i)
      EXPECT_EQ(ra.failures[i].message, rb.failures[i].message) << path;
    ASSERT_EQ(ra.outcomes.size(), rb.outcomes.size());
    for (std::size_t i = 0; i < ra.outcomes.size(); ++i)
      EXPECT_EQ(ra.outcomes[i].has_value(), rb.outcomes[i].has_value()) << path;
    EXPECT_EQ(ra.steps, rb.steps) << path;
  }
}

TEST(Replay, TeardownDrainsWhatATraceLeavesOpen) {
  const Trace t = parse_ok(R"(fpsim-trace 1
init passthrough max_stack_depth=1 direct_io_allow_mmap
backing_open B1 a.dat
open H1 a rdwr reply=passthrough@B1
mmap M1 H1 shared
open H2 b rdwr reply=direct_io|parallel_direct_writes
write_begin W1 H2 => ok
open H3 b reply=cached => blocks
)");
  SimExecutor ex;
  const ReplayResult r = replay(t, ex, t.profile);
  EXPECT_TRUE(r.passed()) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_TRUE(ex.model().fc.freed);
  for (const auto &b : ex.model().backings)
    EXPECT_TRUE(b.freed);
  EXPECT_TRUE(fpsim::test::contains(r.transcript, "0: await H3 -> ok"));
}

TEST(Replay, AwaitReportsTheBlockedOutcome) {
  const Trace t = parse_ok(R"(fpsim-trace 1
init passthrough max_stack_depth=1
open H1 a rdwr reply=direct_io|parallel_direct_writes
write_begin W1 H1 => ok
check inode a ctr=-1
open H2 a reply=cached => blocks
check inode a cache_io_mode=1
await H2 => blocks
write_end W1 => fuse
await H2 => ok
check inode a ctr=1
await H2
)");
  SimExecutor ex;
  const ReplayResult r = replay(t, ex, t.profile);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].kind, ReplayFailure::Kind::Invalid);
  EXPECT_EQ(r.failures[0].line, 12);
  EXPECT_NE(r.failures[0].message.find("nothing is blocked on H2"), std::string::npos);
}

TEST(Replay, KernelOverrideChangesOutcomes) {
  const Trace t = parse_ok("fpsim-trace 1\nbacking_open B1 a.dat => EPERM\n");
  SimExecutor ex;
  EXPECT_TRUE(replay(t, ex, model::KernelProfile::V6_18).passed());
  const ReplayResult r = replay(t, ex, model::KernelProfile::V15);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].actual, "EINVAL");
}

TEST(Replay, AnnotateFillsInOutcomes) {
  const std::string text = "fpsim-trace 1\n"
                           "init passthrough max_stack_depth=1\n"
                           "backing_open B1 a.dat   # first id\n"
                           "open H1 a reply=passthrough@B2x => ok\n";
  ParseResult bad = parse_trace(text, "x.trace");
  ASSERT_TRUE(std::holds_alternative<ParseError>(bad));
  const Trace t = parse_ok("fpsim-trace 1\n"
                           "init passthrough max_stack_depth=1\n"
                           "backing_open B1 a.dat   # first id\n"
                           "open H1 a reply=passthrough@B1 => EIO\n"
                           "open H2 a reply=cached\n");
  SimExecutor ex;
  const ReplayResult r = replay(t, ex, t.profile);
  const std::string annotated = annotate(t, r);
  EXPECT_TRUE(fpsim::test::contains(annotated, "=> id=1  # first id"));
  EXPECT_NE(annotated.find("reply=passthrough@B1"), std::string::npos);
  EXPECT_TRUE(fpsim::test::contains(annotated, "=> EIO +release"));
  const Trace again = parse_ok(annotated);
  SimExecutor ex2;
  EXPECT_TRUE(replay(again, ex2, again.profile).passed());
}

} // namespace
