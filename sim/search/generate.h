// Random trace generation for fuzzing: deterministic (own PRNG, no <random> distributions, whose
// output is implementation-defined), valid by construction (the trace parses, and every
// statement can run), weighted towards the corners of the passthrough state machine.
#pragma once

#include "sim/trace/statement.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace fpsim::sim {

// splitmix64's output function: a bijection on 64-bit values with good avalanche.
constexpr std::uint64_t splitmix64_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline constexpr std::uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ull;

// xoshiro256** seeded through splitmix64: the same seed gives the same stream on every
// platform and compiler.
class Rng {
public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  // Uniform in [0, n); n > 0.
  std::uint64_t below(std::uint64_t n);
  // Uniform in [lo, hi].
  int range(int lo, int hi);
  // True with probability num/den.
  bool chance(std::uint64_t num, std::uint64_t den) { return below(den) < num; }
  // An index into weights, chosen with probability proportional to its weight; the weights
  // must not all be zero.
  std::size_t weighted(const std::vector<unsigned> &weights);

private:
  std::uint64_t s_[4];
};

struct GenOptions {
  KernelProfile profile = model::kDefaultProfile;
  int max_ops = 40; // at most this many statements (init included); at least 2
  // Calls blocked at once (opens, mmaps, writes waiting, not yet awaited), at most. A replay
  // teardown that resolves waiting calls in a fixed three rounds reports a longer chain of
  // calls waiting on each other as a leak; two always drain in three rounds. A teardown that
  // goes on while its awaits wake something needs no bound (350,000 cases clean unbounded).
  int max_blocked = 2;
};

// A trace for `profile` of at most max_ops statements. Names are declared once and the Names
// tables are filled exactly as the parser fills them, so print_trace -> parse_trace gives the
// same trace back. The generator drives the unmutated model while it writes the trace, so it
// only emits write_end for writes the server holds, await for calls that blocked, and @B or
// backing_close B for names whose backing_open succeeded: replayed on the unmutated model, a
// generated trace has no invalid step (and, the model being right, no violation or leak).
Trace generate_trace(std::uint64_t seed, const GenOptions &opts);

// As above; also hands back every statement's outcome on the unmutated model, which replay of
// the trace reproduces exactly (the reference outcomes of the fuzzing oracle).
Trace generate_trace(std::uint64_t seed, const GenOptions &opts,
                     std::vector<std::optional<Outcome>> *outcomes);

} // namespace fpsim::sim
