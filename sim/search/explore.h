// Exhaustive exploration: breadth-first search over every statement sequence within bounds,
// starting after `init passthrough max_stack_depth=1`, with the invariant checker after every
// step, the teardown drain property from every reachable state and, for a mutant, lockstep
// comparison with the unmutated model. States are deduplicated by a canonical 64-bit hash that
// is invariant under renaming of inodes, handles, backing objects, mappings and writes.
#pragma once

#include "model/fuse.h"
#include "sim/search/server_policy.h"
#include "sim/trace/statement.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::sim {

struct ExploreOptions {
  int depth = 8;    // statements after init
  int inodes = 2;   // mount files, and backing files
  int files = 3;    // open handles at a time (fds and opens still blocked)
  int ids = 2;      // registered backing objects at a time
  int mappings = 2; // live mappings at a time (with mmaps still blocked)
  int writes = 2;   // writes held by the server at a time (with write_begins still blocked)
  KernelProfile profile = model::kDefaultProfile;
  model::Mutant mutant = model::Mutant::None;
  // Mutants only: run the unmutated model in lockstep and report the first statement whose
  // outcome differs (catches behavioural mutants that break no invariant).
  bool compare_reference = true;
  // Roots: `init passthrough max_stack_depth=1` without and with direct_io_allow_mmap (shared
  // mmap of direct_io files). The flag never changes, so the two subspaces are disjoint.
  bool init_plain = true;
  bool init_dio_mmap = true;
  // Canonical hashing up to renaming. Off: objects are hashed in creation order, names as they
  // are (for measuring what the reduction buys).
  bool symmetry = true;
  // Backing id values: by default abstracted to which fb each id maps to (sound while ids are
  // never reused; see explore.cpp). Exact: values and the idr cursor are part of the state.
  // Unset: exact for mutants, abstract for the kernel.
  std::optional<bool> exact_ids;
  // Sharding: at depth shard_depth keep only states whose hash % shard_count == shard_index.
  int shard_index = 0;
  int shard_count = 1;
  int shard_depth = 2;
  // Self-check of the reduction: for every transition into an already visited state, compare
  // the set of (outcome, successor state) over all actions with the stored state's; a
  // difference means two states were merged that behave differently. Expands every state twice.
  bool check_merges = false;
  // Off: violations and leaks do not end the search (deriving a mutant's automaton needs all of
  // its transitions, not the first bad one).
  bool stop_at_violation = true;
  // verify-policy: a server policy answers every open and registers and closes the backing ids,
  // and the actions are the clients' only: opens of each mount file with each access mode, with
  // O_DIRECT and with O_TRUNC, closes, mmaps, held writes and awaits. Besides violations and
  // leaks the search stops at an open that fails with EIO, a BACKING_CLOSE of an id a file still
  // uses, and an id the server still holds once every file is released.
  std::shared_ptr<policy::ServerPolicy> policy;
  // verify-policy: the last `stacked` mount files are served from an overlayfs (their BACKING_OPEN
  // fails with ELOOP, as max_stack_depth is 1).
  int stacked = 0;
  // Stop (incomplete) once this many states are stored; 0: no limit.
  std::size_t max_states = 0;
  // Called with the path to every new state, as a trace whose statements expect their
  // outcomes (replays it from scratch: for tests and for dumping the explored space).
  std::function<void(const Trace &)> on_state;
  // Called for every transition explored (into new and into visited states alike), with the
  // model before and after the statement and its outcome: for deriving automata (fpsim dot).
  std::function<void(const model::Model &before, const Statement &, const Outcome &,
                     const model::Model &after)>
      on_transition;
  // Called after each completed depth.
  std::function<void(int depth, std::size_t states, std::size_t transitions, double seconds)>
      on_level;
};

struct Counterexample {
  enum class Kind : std::uint8_t { Violation, Leak, Divergence, OpenFailed, ClosedInUse };
  Kind kind = Kind::Violation;
  int depth = 0;    // statements after init
  std::string rule; // "I6", "leak", "divergence", ...
  std::string message;
  std::string statement;      // the failing statement ("(teardown)" for leaks)
  std::string expected;       // Divergence: the unmutated model's outcome
  std::string actual;         // Divergence: the mutant's
  Trace trace;                // init + the path, each statement expecting the reference outcome
  std::string text;           // print_trace(trace)
  // text parses and replays failing under the explored model (verify-policy's OpenFailed and
  // ClosedInUse: replays with every expectation met, the EIO or the close included)
  bool reproduced = false;
  std::string replay_failure; // replay's first failure for it
};

struct ExploreResult {
  bool complete = false;    // every level up to options.depth was explored
  int depth_completed = -1; // deepest level whose states were all expanded and checked
  std::size_t states = 0;
  std::size_t transitions = 0;
  double seconds = 0;
  double bytes_per_state = 0;            // hash set + path records, per stored state
  std::vector<std::size_t> level_states; // new states per depth
  std::size_t merges_checked = 0;        // check_merges: transitions into visited states
  std::size_t merge_mismatches = 0;      // ... whose state behaved unlike the stored one
  std::optional<Counterexample> counterexample;
};

std::string_view counterexample_kind_name(Counterexample::Kind k);

// Usage errors (bounds out of range) come back as a message; nothing is explored then.
std::optional<std::string> validate(const ExploreOptions &o);

ExploreResult explore(const ExploreOptions &o);

// verify-policy --from: whether a trace's server side (its BACKING_OPENs and BACKING_CLOSEs and
// every open's reply) is what a built-in policy does for the trace's client side (its opens,
// closes, mmaps, writes, in its order). Creates keep the trace's reply.
struct PolicyConformance {
  bool follows = false;
  int line = 0;            // the trace's first statement the policy does otherwise (0: past its end)
  std::string trace_has;   // that statement
  std::string policy_does; // what the policy does instead
};
PolicyConformance follows_policy(const Trace &t, policy::Stock s);

} // namespace fpsim::sim
