// Test-case reduction: a failing trace shrunk to a small one that still fails the same way.
#pragma once

#include "sim/trace/statement.h"

#include <cstddef>
#include <functional>

namespace fpsim::sim {

// "Still fails the same way": true for a trace that reproduces the failure being shrunk.
using ShrinkPredicate = std::function<bool(const Trace &)>;

struct ShrinkOptions {
  std::size_t max_attempts = 4000; // predicate evaluations, at most
};

struct ShrinkResult {
  Trace trace;              // the smallest failing trace found (re-parsed: canonical names)
  std::size_t attempts = 0; // predicate evaluations
  std::size_t accepted = 0; // candidates that still failed and were kept
  bool exhausted = false;   // stopped at max_attempts before reaching a fixpoint
};

// Deterministic reduction of `failing` (for which still_fails must hold):
//  1. deletes chunks of statements, halving the chunk size down to single statements; a
//     statement whose name's declaration was deleted goes with it (read/close/mmap of a deleted
//     open, munmap of a deleted mmap, write_end and await of a deleted write_begin, @B or
//     backing_close of a deleted backing_open, and so on, transitively);
//  2. simplifies what is left: fewer reply flags, an error or enosys reply turned into
//     `cached`, no o_direct/o_trunc, rdonly, private mappings, plain umount, backing_open of a
//     plain file without odd flags, fewer init options, no expectations;
//  3. repeats until nothing more can go or max_attempts is reached;
//  4. renames what is left B1, B2, ..., H1, ..., M1, ..., W1, ... in declaration order (kept only
//     if the renamed trace still fails).
// Every candidate is printed and parsed back before the predicate sees it; one that does not
// parse (e.g. a file statement left without its init) is rejected without being run.
ShrinkResult shrink_trace(const Trace &failing, const ShrinkPredicate &still_fails,
                          const ShrinkOptions &opts = {});

} // namespace fpsim::sim
