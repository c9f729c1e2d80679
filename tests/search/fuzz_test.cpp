// The trace generator, the shrinker and the fuzzing oracle: determinism, valid traces, a clean
// run on the unmutated model, every seeded bug found and shrunk, shards that partition a run.
#include "sim/search/fuzz.h"
#include "sim/search/generate.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/search/shrink.h"
#include "sim/exec/sim_executor.h"
#include "tests/traces.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <gtest/gtest.h>
#include <ostream>
#include <unistd.h>
#include <set>

namespace fpsim::model {
// How gtest names the parameters (internal linkage: other test files may print them too).
static void PrintTo(Mutant m, std::ostream *os) { *os << mutant_name(m); }
static void PrintTo(KernelProfile p, std::ostream *os) { *os << profile_name(p); }
} // namespace fpsim::model

using namespace fpsim;
using namespace fpsim::sim;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr int kCleanCases = 500; // ASan+UBSan: the same checks on fewer cases
#else
constexpr int kCleanCases = 2000;
#endif

constexpr model::KernelProfile kProfiles[] = {model::KernelProfile::V15, model::KernelProfile::V6_9,
                                              model::KernelProfile::V6_18};

std::string profile_param_name(const testing::TestParamInfo<model::KernelProfile> &i) {
  std::string n(model::profile_name(i.param));
  std::replace(n.begin(), n.end(), '.', '_');
  return "k" + n;
}

class PerProfile : public testing::TestWithParam<model::KernelProfile> {};

TEST(Rng, SameSeedSameStreamAndKnownValues) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const std::uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs = differs || x != c.next();
  }
  EXPECT_TRUE(differs);
  // Pinned: a change here changes every case seed's trace (and every repro line printed).
  Rng d(1);
  EXPECT_EQ(d.next(), 0xb3f2af6d0fc710c5ull);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(d.below(7), 7u);
    const int r = d.range(-2, 3);
    EXPECT_GE(r, -2);
    EXPECT_LE(r, 3);
  }
}

TEST_P(PerProfile, GeneratorIsDeterministic) {
  GenOptions g;
  g.profile = GetParam();
  std::set<std::string> distinct;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const std::string a = print_trace(generate_trace(seed, g));
    EXPECT_EQ(a, print_trace(generate_trace(seed, g))) << "seed " << seed;
    distinct.insert(a);
  }
  EXPECT_GT(distinct.size(), 190u);
}

TEST_P(PerProfile, GeneratedTracesRoundTripThroughText) {
  GenOptions g;
  g.profile = GetParam();
  for (std::uint64_t seed = 0; seed < 500; ++seed) {
    const Trace t = generate_trace(seed * 7919, g);
    ASSERT_LE(t.statements.size(), static_cast<std::size_t>(g.max_ops));
    const std::string text = print_trace(t);
    ParseResult p = parse_trace(text, t.path);
    ASSERT_TRUE(std::holds_alternative<Trace>(p)) << std::get<ParseError>(p).str() << "\n" << text;
    const Trace &back = std::get<Trace>(p);
    EXPECT_EQ(print_trace(back), text);
    EXPECT_EQ(back.profile, t.profile);
    // The Names tables exactly as the parser fills them.
    SCOPED_TRACE(text);
    test::expect_same_names(back.names, t.names);
    ASSERT_EQ(back.statements.size(), t.statements.size());
    for (std::size_t i = 0; i < t.statements.size(); ++i) {
      EXPECT_EQ(back.statements[i].line, t.statements[i].line);
      EXPECT_EQ(back.statements[i].file, t.statements[i].file);
      EXPECT_EQ(back.statements[i].backing_file, t.statements[i].backing_file);
      EXPECT_EQ(back.statements[i].reply, t.statements[i].reply);
    }
  }
}

// Every generated case replays on the unmutated model with no failure of any kind (not even an
// invalid step), and replay reproduces the outcomes the generator saw.
TEST_P(PerProfile, UnmutatedModelPassesEveryGeneratedCase) {
  GenOptions g;
  g.profile = GetParam();
  std::size_t statements = 0;
  std::set<std::string> ops;
  for (int k = 0; k < kCleanCases; ++k) {
    std::vector<std::optional<Outcome>> reference;
    const Trace t = generate_trace(fuzz_case_seed(2024, static_cast<std::uint64_t>(k)), g, &reference);
    statements += t.statements.size();
    SimExecutor ex;
    const ReplayResult r = replay(t, ex, t.profile);
    for (const ReplayFailure &f : r.failures)
      ADD_FAILURE() << failure_kind_name(f.kind) << " at line " << f.line << ": " << f.statement
                    << ": " << f.message << " " << f.actual << "\n"
                    << print_trace(t);
    ASSERT_EQ(reference.size(), t.statements.size());
    for (std::size_t i = 0; i < t.statements.size(); ++i) {
      ASSERT_TRUE(reference[i] && r.outcomes[i]);
      EXPECT_EQ(format_outcome_detailed(*reference[i]), format_outcome_detailed(*r.outcomes[i]))
          << "line " << t.statements[i].line << "\n"
          << print_trace(t);
      ops.insert(std::string(op_name(t.statements[i].op)) + " " +
                 format_outcome(*r.outcomes[i]).substr(0, 5));
    }
    if (HasFailure())
      return;
  }
  // The corners the generator is meant to reach.
  for (const char *want : {"write_begin ok", "write_begin block", "write_end fuse", "await ok",
                           "open block", "open EIO +", "backing_close ENOEN", "mmap ok",
                           "mmap block", "backing_open id=1"})
    EXPECT_TRUE(ops.count(want)) << "never generated: " << want;
  std::printf("[ profile %s ] %d cases, %zu statements\n",
              std::string(model::profile_name(GetParam())).c_str(), kCleanCases, statements);
}

INSTANTIATE_TEST_SUITE_P(Fuzz, PerProfile, testing::ValuesIn(kProfiles), profile_param_name);

TEST(Oracle, UnmutatedRunPasses) {
  FuzzOptions o;
  o.seed = 7;
  o.runs = 600;
  const FuzzResult r = fuzz(o);
  EXPECT_EQ(r.cases, 600u);
  EXPECT_EQ(r.passed, 600u);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_TRUE(r.counterexamples.empty());
}

TEST(Oracle, SameSeedSameResult) {
  FuzzOptions o;
  o.seed = 99;
  o.runs = 1000;
  o.mutant = model::Mutant::NullFbConflict;
  o.keep_going = true;
  const FuzzResult a = fuzz(o);
  const FuzzResult b = fuzz(o);
  EXPECT_GT(a.failed, 0u);
  EXPECT_EQ(a.failed, b.failed);
  EXPECT_EQ(a.statements, b.statements);
  ASSERT_EQ(a.counterexamples.size(), b.counterexamples.size());
  for (std::size_t i = 0; i < a.counterexamples.size(); ++i)
    EXPECT_EQ(a.counterexamples[i].text, b.counterexamples[i].text);
}

// Shrinking with a predicate of our own: the cascade keeps names declared.
TEST(Shrink, KeepsDeclarationsOfWhatRemains) {
  GenOptions g;
  g.profile = model::KernelProfile::V6_18;
  int shrunk = 0;
  for (std::uint64_t seed = 0; seed < 300 && shrunk < 20; ++seed) {
    const Trace t = generate_trace(seed, g);
    auto has_munmap = [](const Trace &c) {
      return std::any_of(c.statements.begin(), c.statements.end(),
                         [](const Statement &s) { return s.op == Op::Munmap; });
    };
    if (!has_munmap(t))
      continue;
    ++shrunk;
    const ShrinkResult r = shrink_trace(t, has_munmap);
    EXPECT_FALSE(r.exhausted);
    // init, open, mmap, munmap: nothing else is needed, and each is.
    ASSERT_EQ(r.trace.statements.size(), 4u) << print_trace(r.trace);
    EXPECT_EQ(r.trace.statements[0].op, Op::Init);
    EXPECT_TRUE(r.trace.statements[1].op == Op::Open || r.trace.statements[1].op == Op::Create);
    EXPECT_EQ(print_trace(r.trace), print_trace(shrink_trace(t, has_munmap).trace));
    const std::string open = format_statement(r.trace.statements[1], r.trace.names);
    EXPECT_TRUE(open.rfind("open H1 ", 0) == 0 || open.rfind("create H1 ", 0) == 0) << open;
    EXPECT_TRUE(open.ends_with(" reply=cached")) << open;
    EXPECT_EQ(open.find("rdwr"), std::string::npos) << open;
  }
  EXPECT_EQ(shrunk, 20);
}

TEST(Shrink, BoundedByMaxAttempts) {
  GenOptions g;
  const Trace t = generate_trace(5, g);
  ShrinkOptions o;
  o.max_attempts = 3;
  std::size_t calls = 0;
  const ShrinkResult r = shrink_trace(
      t,
      [&calls](const Trace &) {
        ++calls;
        return false;
      },
      o);
  EXPECT_LE(calls, 4u); // three, plus the final renaming check at most
  EXPECT_TRUE(r.exhausted);
}

// Every seeded bug is found within 20000 cases; its shrunk counterexample still fails the same
// way, is small, parses back, and the repro line's case seed regenerates the failing case.
class PerMutant : public testing::TestWithParam<model::Mutant> {};

TEST_P(PerMutant, FuzzingFindsAndShrinksIt) {
  const model::Mutant m = GetParam();
  const std::string out =
      (std::filesystem::path(testing::TempDir()) /
       ("fpsim-fuzz-" + std::string(model::mutant_name(m)) + "-" + std::to_string(::getpid())))
          .string();
  FuzzOptions o;
  o.seed = 20240607;
  o.runs = 20000;
  o.mutant = m;
  o.out_dir = out;
  const FuzzResult r = fuzz(o);
  ASSERT_EQ(r.failed, 1u) << model::mutant_name(m) << " not found in 20000 cases";
  ASSERT_EQ(r.counterexamples.size(), 1u);
  const FuzzCounterexample &c = r.counterexamples[0];
  const std::string sig = c.failure.signature();
  EXPECT_TRUE(run_oracle(c.trace, m).has(sig)) << print_trace(c.trace);
  EXPECT_LE(c.shrunk_statements, 8u) << c.text;
  EXPECT_LT(c.shrunk_statements, c.original_statements + 1);
  EXPECT_TRUE(c.write_error.empty()) << c.write_error;
  // The file as written: a valid trace, failing the same way, passing on the unmutated model
  // unless the failure is the model's own (never, for a mutant).
  ParseResult p = load_trace(c.path);
  ASSERT_TRUE(std::holds_alternative<Trace>(p)) << std::get<ParseError>(p).str();
  EXPECT_TRUE(run_oracle(std::get<Trace>(p), m).has(sig));
  {
    SimExecutor ref;
    EXPECT_TRUE(replay(std::get<Trace>(p), ref, c.profile).passed()) << c.text;
  }
  EXPECT_NE(c.text.find("# repro: " + c.repro), std::string::npos);
  // The repro line: this case's seed as the run seed, one run, its profile.
  FuzzOptions again;
  again.seed = c.case_seed;
  again.runs = 1;
  again.profile = c.profile;
  again.mutant = m;
  const FuzzResult r2 = fuzz(again);
  ASSERT_EQ(r2.failed, 1u);
  EXPECT_EQ(r2.counterexamples[0].failure.describe(), c.failure.describe());
  EXPECT_EQ(print_trace(r2.counterexamples[0].trace), print_trace(c.trace));
  std::printf("[ %-26s ] found at case %llu (%s), %zu -> %zu statements, %zu shrink attempts: %s\n",
              std::string(model::mutant_name(m)).c_str(),
              static_cast<unsigned long long>(c.case_index),
              std::string(model::profile_name(c.profile)).c_str(), c.original_statements,
              c.shrunk_statements, c.shrink_attempts, sig.c_str());
  std::filesystem::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Fuzz, PerMutant, testing::ValuesIn(model::all_mutants()),
                         [](const testing::TestParamInfo<model::Mutant> &i) {
                           std::string n(model::mutant_name(i.param));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(Shard, ShardsPartitionTheUnshardedRun) {
  FuzzOptions o;
  o.seed = 31337;
  o.runs = 301;
  o.record_cases = true;
  o.keep_going = true;
  o.shrink = false;
  o.mutant = model::Mutant::NoEbusyCheck;
  const FuzzResult all = fuzz(o);
  std::set<std::uint64_t> whole(all.case_indices.begin(), all.case_indices.end());
  ASSERT_EQ(whole.size(), 301u);
  std::set<std::uint64_t> seen;
  std::uint64_t failed = 0, statements = 0;
  for (std::uint64_t i = 0; i < 2; ++i) {
    FuzzOptions s = o;
    s.shard_index = i;
    s.shard_count = 2;
    const FuzzResult part = fuzz(s);
    failed += part.failed;
    statements += part.statements;
    for (std::uint64_t k : part.case_indices) {
      EXPECT_EQ(k % 2, i);
      EXPECT_TRUE(seen.insert(k).second) << "case " << k << " ran in two shards";
    }
  }
  EXPECT_EQ(seen, whole);
  EXPECT_EQ(failed, all.failed);
  EXPECT_EQ(statements, all.statements);
  EXPECT_GT(all.failed, 0u);
}

TEST(Shard, SecondsModeRunsThisShardsCases) {
  FuzzOptions o;
  o.seed = 5;
  o.seconds = 0.05;
  o.shard_index = 2;
  o.shard_count = 3;
  o.record_cases = true;
  const FuzzResult r = fuzz(o);
  EXPECT_GT(r.cases, 0u);
  for (std::size_t i = 0; i < r.case_indices.size(); ++i)
    EXPECT_EQ(r.case_indices[i], 2 + 3 * i);
}

TEST(Oracle, ReproCommand) {
  EXPECT_EQ(fuzz_repro_command(17, model::KernelProfile::V6_9, 40, model::Mutant::None),
            "fpsim fuzz --seed 17 --runs 1 --kernel 6.9");
  EXPECT_EQ(fuzz_repro_command(17, model::KernelProfile::V15, 12, model::Mutant::NoEbusyCheck),
            "fpsim fuzz --seed 17 --runs 1 --kernel v15 --max-ops 12 --mutant no-ebusy-check");
  EXPECT_EQ(fuzz_case_seed(17, 0), 17u);
}

} // namespace
