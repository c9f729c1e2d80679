// Replay: runs a trace through an executor, compares every outcome with its expectation, checks
// invariants after every step, tears down in kernel order and checks that everything drained.
#pragma once

#include "sim/exec/executor.h"
#include "sim/trace/statement.h"

#include <string>
#include <vector>

namespace fpsim::sim {

struct ReplayFailure {
  enum class Kind : std::uint8_t { Mismatch, Invalid, CheckFailed, Violation, Leak };
  Kind kind = Kind::Mismatch;
  int line = 0; // 0: teardown
  std::string statement;
  std::string expected;
  std::string actual;
  std::string message;
};

std::string_view failure_kind_name(ReplayFailure::Kind k);

// "  PATH:LINE: STATEMENT: ..." and a newline: one failure as fpsim replay lists it.
std::string format_failure(const ReplayFailure &f, const std::string &path);

struct ReplayResult {
  std::string path;
  KernelProfile profile = model::kDefaultProfile;
  std::size_t steps = 0;
  std::size_t checks = 0;
  std::size_t checks_not_observable = 0;
  std::vector<std::optional<Outcome>> outcomes; // per statement (nullopt for checks)
  std::vector<ReplayFailure> failures;
  std::string transcript; // every outcome and violation, for determinism checks
  bool passed() const { return failures.empty(); }
};

// Transcript off: the result's transcript stays empty, which saves formatting every statement
// (fpsim replay, fpsim bench); outcomes and failures are the same.
enum class Transcript : std::uint8_t { Keep, Skip };

ReplayResult replay(const Trace &t, Executor &ex, KernelProfile profile,
                    Transcript transcript = Transcript::Keep);

// The trace's source with each statement's actual outcome written as its expectation.
std::string annotate(const Trace &t, const ReplayResult &r);

} // namespace fpsim::sim
