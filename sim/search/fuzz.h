// Fuzzing: generated traces through the simulator under a profile and (optionally) a seeded
// bug, an oracle that says whether a trace fails, shrinking of the first failure and a
// counterexample file with the one-line command that reproduces it.
//
// The oracle. A trace fails when
//  - its replay (with the invariant checker after every step, teardown and the drain check)
//    reports a violation, a failed check or a leak; or
//  - under a mutant, some statement's outcome differs from the unmutated model's outcome for
//    the same statement (a "divergence": the first such statement, with both outcomes).
// The second catches behavioural mutants: bugs that break no invariant the checker knows but
// change what a call returns (an id handed out again, a write that now waits for the lock, an
// open refused with a different internal errno). Outcomes are compared with their internal
// errno, so a refusal for another reason counts too. Mismatches against expectations do not
// count (generated traces have none) and invalid steps do not count: the generator never
// writes one for the unmutated model, and under a mutant one shows up as a divergence.
//
// Cases. Case k of a run with seed S has case seed S + k * 0x9E3779B97F4A7C15 (mod 2^64) and
// the profile given, or else the profiles cycling with k (v15, 6.9, 6.18); its trace is
// generate_trace(case seed). Case 0's seed is S itself, so `fpsim fuzz --seed C --runs 1
// --kernel P` replays exactly the case whose seed is C. With shard I/N, a run executes the cases
// k with k % N == I: shards of one seed are disjoint and together are the unsharded run.
//
// Counterexamples. The first failing case is shrunk (to a trace with a failure of the same
// signature) and written to OUT/<profile>-<case seed>.trace, or OUT/<profile>-<case seed>-
// <mutant>.trace under a mutant (one directory can collect every mutant's): comments with the
// failure, the case and the repro line, then the trace with the unmutated model's outcomes as
// expectations. It is parsed back and checked to fail the same way before it is
// written. With keep_going every case runs, and the first failure of each signature is shrunk.
#pragma once

#include "model/fuse.h"
#include "sim/search/generate.h"
#include "sim/search/shrink.h"
#include "sim/trace/statement.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::sim {

struct FuzzFailure {
  enum class Kind : std::uint8_t { Violation, CheckFailed, Leak, Divergence };
  Kind kind = Kind::Violation;
  std::string rule;      // "I6", "warn", "leak", ...; empty for a divergence or failed check
  int line = 0;          // 0: at teardown
  std::string statement; // as printed
  std::string message;
  std::string reference; // Divergence: the unmutated model's outcome
  std::string actual;    // Divergence: the mutant's outcome

  // What "the same failure" means when shrinking: kind and rule ("violation [I6]", "leak",
  // "divergence").
  std::string signature() const;
  // One line: the signature, where, and the message or both outcomes.
  std::string describe() const;
};

std::string_view fuzz_failure_kind_name(FuzzFailure::Kind k);

struct OracleResult {
  std::vector<FuzzFailure> failures; // replay failures in order, then the divergence
  std::size_t steps = 0;             // statements replayed under the mutant, teardown included
  bool failed() const { return !failures.empty(); }
  // Whether some failure has this signature.
  bool has(const std::string &signature) const;
};

// Runs the oracle on one trace under its own profile. `reference`: the unmutated model's
// outcome of each statement when the caller already has them (generate_trace hands them back);
// otherwise, under a mutant, the trace is replayed a second time on the unmutated model.
OracleResult run_oracle(const Trace &t, model::Mutant mutant,
                        const std::vector<std::optional<Outcome>> *reference = nullptr);

// The seed of case k of a run with seed `seed`.
constexpr std::uint64_t fuzz_case_seed(std::uint64_t seed, std::uint64_t k) {
  return seed + k * kSplitMix64Gamma;
}

struct FuzzProgress {
  std::uint64_t cases = 0;      // run by this process so far
  std::uint64_t failed = 0;
  std::uint64_t statements = 0; // generated statements so far
  double elapsed = 0;           // seconds
};

struct FuzzOptions {
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> runs; // cases 0..runs-1 (this shard's share of them)
  std::optional<double> seconds;     // or: as many as fit; one of the two must be set
  int max_ops = 40;
  std::optional<model::KernelProfile> profile; // nullopt: the three profiles cycle
  std::uint64_t shard_index = 0;
  std::uint64_t shard_count = 1;
  model::Mutant mutant = model::Mutant::None;
  std::string out_dir;    // where counterexamples go; empty: nowhere
  bool keep_going = false; // run every case (shrink the first failure of each signature)
  bool shrink = true;
  ShrinkOptions shrink_options;
  bool record_cases = false; // fill FuzzResult::case_indices
  std::function<void(const FuzzProgress &)> progress; // called after every case
};

struct FuzzCounterexample {
  std::uint64_t case_index = 0;
  std::uint64_t case_seed = 0;
  model::KernelProfile profile = model::kDefaultProfile;
  FuzzFailure failure;          // as found on the generated trace
  FuzzFailure shrunk_failure;   // on the shrunk trace
  std::size_t original_statements = 0;
  std::size_t shrunk_statements = 0;
  std::size_t shrink_attempts = 0;
  Trace trace;                  // the shrunk trace (as written, with its expectations)
  std::string text;             // the file's text: comments, then the trace
  std::string path;             // where it was written; empty when not written
  std::string write_error;      // why it could not be written, if it could not
  std::string repro;            // the one-line command that reruns this case
};

struct FuzzResult {
  std::uint64_t cases = 0;
  std::uint64_t passed = 0;
  std::uint64_t failed = 0;
  std::uint64_t statements = 0; // generated statements run through the oracle
  std::uint64_t steps = 0;      // replayed steps (under the mutant), teardown included
  double elapsed = 0;           // seconds
  std::vector<FuzzCounterexample> counterexamples; // one per distinct signature, in order
  std::vector<std::uint64_t> case_indices;         // with record_cases: every case run
};

FuzzResult fuzz(const FuzzOptions &opts);

// `fpsim fuzz --seed <case seed> --runs 1 --kernel P [--max-ops N] [--mutant M]`.
std::string fuzz_repro_command(std::uint64_t case_seed, model::KernelProfile p, int max_ops,
                               model::Mutant mutant);

} // namespace fpsim::sim
