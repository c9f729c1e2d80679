// fpsim explore: the unmutated model is clean on every profile, every mutant is caught at the
// shortest depth with a counterexample that parses and replays failing, the symmetry reduction
// reduces and merges only states that behave alike, shards cover the space.
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "sim/search/explore.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "tests/traces.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <map>

using namespace fpsim;
using namespace fpsim::sim;
using model::KernelProfile;
using model::Mutant;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
// Under ASan+UBSan the search is ~10x slower: one level less.
constexpr int kCleanDepth = kSanitized ? 4 : 5;

constexpr KernelProfile kProfiles[] = {KernelProfile::V15, KernelProfile::V6_9,
                                       KernelProfile::V6_18};

ExploreOptions options(KernelProfile p, int depth, Mutant m = Mutant::None) {
  ExploreOptions o;
  o.profile = p;
  o.depth = depth;
  o.mutant = m;
  return o;
}

Trace parse(const std::string &text) { return test::parse_ok(text, "explore.trace"); }

void expect_replays_clean(const std::string &text) {
  const Trace t = parse(text);
  SimExecutor ex;
  const ReplayResult r = replay(t, ex, t.profile);
  EXPECT_TRUE(r.passed()) << (r.failures.empty() ? "" : r.failures[0].message);
}

TEST(Explore, UnmutatedModelIsCleanOnEveryProfile) {
  for (KernelProfile p : kProfiles) {
    const ExploreResult r = explore(options(p, kCleanDepth));
    EXPECT_TRUE(r.complete) << model::profile_name(p);
    EXPECT_EQ(r.depth_completed, kCleanDepth);
    EXPECT_FALSE(r.counterexample)
        << model::profile_name(p) << ": "
        << (r.counterexample ? r.counterexample->message + "\n" + r.counterexample->text : "");
    EXPECT_GT(r.states, 1000u);
    EXPECT_GT(r.transitions, r.states);
    ASSERT_EQ(r.level_states.size(), static_cast<std::size_t>(kCleanDepth) + 1);
    EXPECT_EQ(r.level_states[0], 2u); // with and without direct_io_allow_mmap
  }
}

// The shortest counterexample of each mutant on 6.18 (the search is breadth first).
const std::map<Mutant, int> kCatchDepth = {
    {Mutant::ParallelWriteSetsIomode, 2}, {Mutant::NullFbConflict, 4},
    {Mutant::MissingPutSameFb, 3},        {Mutant::MissingPutOnRefusal, 3},
    {Mutant::NoFbDetachAtZero, 2},        {Mutant::BackingCloseKeepsRef, 1},
    {Mutant::BackingFileNotReleased, 2},  {Mutant::IdsReusedImmediately, 3},
    {Mutant::CachedReleaseSkipsDec, 1},   {Mutant::NoEbusyCheck, 4},
    {Mutant::IdrKeptOnClose, 1},
};

TEST(Explore, EveryMutantIsCaughtWithAReplayableCounterexample) {
  ASSERT_EQ(kCatchDepth.size(), model::all_mutants().size());
  for (KernelProfile p : kProfiles)
    for (Mutant m : model::all_mutants()) {
      const std::string what =
          fmt::format("{} on {}", model::mutant_name(m), model::profile_name(p));
      // The seed already treats a NULL fb as a conflict: this mutant is the seed's own rule.
      if (m == Mutant::NullFbConflict && p == KernelProfile::V15)
        continue;
      const ExploreResult r = explore(options(p, 8, m));
      ASSERT_TRUE(r.counterexample) << what;
      const Counterexample &c = *r.counterexample;
      EXPECT_LE(c.depth, 8) << what;
      if (p == KernelProfile::V6_18) {
        EXPECT_EQ(c.depth, kCatchDepth.at(m)) << what << ": " << c.text;
      }
      EXPECT_TRUE(c.reproduced) << what << ": " << c.replay_failure << "\n" << c.text;
      // init + the path.
      EXPECT_EQ(c.trace.statements.size(), static_cast<std::size_t>(c.depth) + 1) << what;
      // It parses, prints back the same, fails under the mutant and passes without it.
      const Trace t = parse(c.text);
      EXPECT_EQ(print_trace(t), c.text) << what;
      SimExecutor mutated(m), kernel;
      const ReplayResult bad = replay(t, mutated, p);
      EXPECT_FALSE(bad.passed()) << what << "\n" << c.text;
      const ReplayResult good = replay(t, kernel, p);
      EXPECT_TRUE(good.passed()) << what << ": "
                                 << (good.failures.empty() ? "" : good.failures[0].message) << "\n"
                                 << c.text;
      if (c.kind == Counterexample::Kind::Divergence) {
        ASSERT_FALSE(bad.failures.empty());
        EXPECT_EQ(bad.failures[0].kind, ReplayFailure::Kind::Mismatch) << what;
        EXPECT_EQ(bad.failures[0].line, t.statements.back().line) << what;
      }
    }
}

TEST(Explore, BehaviouralMutantsAreCaughtByDivergence) {
  const ExploreResult r = explore(options(KernelProfile::V6_18, 8, Mutant::NullFbConflict));
  ASSERT_TRUE(r.counterexample);
  EXPECT_EQ(r.counterexample->kind, Counterexample::Kind::Divergence);
  EXPECT_EQ(r.counterexample->expected, "ok");
  EXPECT_EQ(r.counterexample->actual, "blocks");
  // Without the reference it breaks no invariant within the same bound.
  ExploreOptions o = options(KernelProfile::V6_18, kCleanDepth, Mutant::NullFbConflict);
  o.compare_reference = false;
  EXPECT_FALSE(explore(o).counterexample);
}

TEST(Explore, NullFbConflictIsTheSeedsOwnRule) {
  // On v15 the mutant changes nothing: the seed refuses a NULL fb on a passthrough inode anyway.
  const ExploreResult r = explore(options(KernelProfile::V15, kCleanDepth, Mutant::NullFbConflict));
  EXPECT_TRUE(r.complete);
  EXPECT_FALSE(r.counterexample);
}

TEST(Explore, SymmetryReductionReducesAndKeepsVerdicts) {
  for (KernelProfile p : kProfiles) {
    ExploreOptions o = options(p, 4);
    const ExploreResult with = explore(o);
    o.symmetry = false;
    const ExploreResult without = explore(o);
    EXPECT_TRUE(with.complete && without.complete);
    EXPECT_FALSE(with.counterexample || without.counterexample);
    EXPECT_LT(with.states * 3, without.states) << model::profile_name(p);
  }
  // The same shortest counterexamples without the reduction.
  for (Mutant m : {Mutant::NoEbusyCheck, Mutant::NullFbConflict, Mutant::IdsReusedImmediately}) {
    ExploreOptions o = options(KernelProfile::V6_18, 8, m);
    o.symmetry = false;
    const ExploreResult r = explore(o);
    ASSERT_TRUE(r.counterexample);
    EXPECT_EQ(r.counterexample->depth, kCatchDepth.at(m)) << model::mutant_name(m);
  }
}

TEST(Explore, MergedStatesBehaveAlike) {
  // Every transition into a visited state: same outcomes, same successors (up to renaming),
  // same teardown verdict as the state stored under that hash.
  for (KernelProfile p : kProfiles) {
    ExploreOptions o = options(p, kSanitized ? 3 : 5);
    o.check_merges = true;
    const ExploreResult r = explore(o);
    EXPECT_TRUE(r.complete);
    EXPECT_GT(r.merges_checked, 500u);
    EXPECT_EQ(r.merge_mismatches, 0u) << model::profile_name(p);
  }
  ExploreOptions o = options(KernelProfile::V6_18, kSanitized ? 3 : 4, Mutant::NullFbConflict);
  o.check_merges = true;
  o.compare_reference = true;
  const ExploreResult r = explore(o);
  EXPECT_EQ(r.merge_mismatches, 0u);
}

TEST(Explore, EveryExploredPathReplaysAsATrace) {
  // The explorer's bookkeeping (names, bindings, teardown) against replay's: the path to every
  // state, printed and parsed back, replays with every outcome as the explorer saw it, no
  // violation, and drains at teardown.
  for (KernelProfile p : kProfiles) {
    ExploreOptions o = options(p, kCleanDepth);
    std::size_t paths = 0, failed = 0;
    o.on_state = [&](const Trace &path) {
      ++paths;
      const std::string text = print_trace(path);
      const Trace t = parse(text);
      SimExecutor ex;
      const ReplayResult r = replay(t, ex, p);
      if (!r.passed() && ++failed <= 3)
        ADD_FAILURE() << model::profile_name(p) << ": " << r.failures[0].message << " "
                      << r.failures[0].expected << " " << r.failures[0].actual << "\n"
                      << text;
    };
    const ExploreResult r = explore(o);
    EXPECT_EQ(paths, r.states);
    EXPECT_EQ(failed, 0u);
  }
}

TEST(Explore, ExactIdsFindTheSameAndMore) {
  ExploreOptions o = options(KernelProfile::V6_18, 4);
  const ExploreResult abstract = explore(o);
  o.exact_ids = true;
  const ExploreResult exact = explore(o);
  EXPECT_FALSE(abstract.counterexample || exact.counterexample);
  EXPECT_LE(abstract.states, exact.states);
}

TEST(Explore, ShardsCoverTheSpace) {
  ExploreOptions o = options(KernelProfile::V6_18, kCleanDepth);
  const ExploreResult whole = explore(o);
  o.shard_count = 3;
  o.shard_depth = 2;
  std::vector<std::size_t> sum(static_cast<std::size_t>(kCleanDepth) + 1, 0);
  for (int i = 0; i < 3; ++i) {
    o.shard_index = i;
    const ExploreResult r = explore(o);
    EXPECT_TRUE(r.complete);
    EXPECT_FALSE(r.counterexample);
    for (std::size_t d = 0; d < sum.size(); ++d)
      sum[d] += r.level_states.at(d);
    // Above the split every shard does the same work.
    EXPECT_EQ(r.level_states[1], whole.level_states[1]);
  }
  // Each state at the split depth belongs to exactly one shard; below it shards may overlap.
  EXPECT_EQ(sum[2], whole.level_states[2]);
  for (std::size_t d = 3; d < sum.size(); ++d)
    EXPECT_GE(sum[d], whole.level_states[d]) << d;
  // The two inits never reach each other's states: they split the space exactly.
  o = options(KernelProfile::V6_18, kCleanDepth);
  o.init_dio_mmap = false;
  const ExploreResult plain = explore(o);
  o.init_dio_mmap = true;
  o.init_plain = false;
  const ExploreResult dio = explore(o);
  EXPECT_EQ(plain.states + dio.states, whole.states);
  EXPECT_EQ(plain.transitions + dio.transitions, whole.transitions);
}

TEST(Explore, BoundsAreValidated) {
  ExploreOptions o;
  EXPECT_FALSE(validate(o));
  o.depth = 32;
  EXPECT_TRUE(validate(o));
  o = ExploreOptions{};
  o.shard_count = 2;
  o.shard_index = 2;
  EXPECT_TRUE(validate(o));
  o = ExploreOptions{};
  o.inodes = 0;
  EXPECT_TRUE(validate(o));
}

// Found by exploration (both in sim/, not the model): an awaited write_begin that the server
// held and an abort then ended could not be ended by teardown, and teardown gave up after three
// rounds of blocked calls.
TEST(Explore, RegressionAwaitedHeldWriteAfterAbort) {
  expect_replays_clean(R"(fpsim-trace 1
kernel 6.18
init passthrough max_stack_depth=1 => ok
open H1 f1 rdonly reply=cached => ok
open H2 f1 rdwr reply=direct_io|parallel_direct_writes => ok
write_begin W1 H2 => ok
write_begin W2 H2 => blocks
write_end W1 => fuse
abort => ok
await W2 => ok
write_end W2 => ECONNABORTED
)");
}

TEST(Explore, RegressionTeardownWaitsOutChainsOfBlockedCalls) {
  expect_replays_clean(R"(fpsim-trace 1
kernel 6.18
init passthrough max_stack_depth=1 => ok
backing_open B1 s1 => id=1
open H1 f1 rdwr reply=direct_io|parallel_direct_writes => ok
write_begin W1 H1 => ok
open H2 f1 rdonly reply=cached => blocks
open H3 f1 rdwr reply=passthrough|direct_io|parallel_direct_writes@B1 => ok
write_begin W2 H1 => blocks
write_end W1 => fuse
write_begin W3 H3 => blocks
)");
}

} // namespace
