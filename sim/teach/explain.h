// `fpsim explain`: replays a trace exactly as `fpsim replay` does (same replay(), same invariant
// checker) and says, for every statement, which kernel rule decided its outcome and why, in
// plain language, with the state after each step as tables.
//
// The explanation of a step renders the decisions the model recorded in it (model/decision.h:
// the rule, the errno, the objects), with the statement, its Outcome and the model state before
// and after the step for the names and numbers; the model is only read, and no kernel rule is
// worked out again here. Every refused operation (an errno, or a call that blocks) names the
// kernel function that enforces the rule (fuse_inode_uncached_io_start, fuse_file_io_open,
// fuse_backing_open, ...), as the model's functions are named after them.
#pragma once

#include "model/fuse.h"
#include "sim/exec/checker.h"
#include "sim/exec/replay.h"
#include "sim/trace/statement.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::sim {

// The state after a step, with every model object under its trace name.
struct StateTables {
  struct Inode {
    std::string name;
    std::int32_t ctr = 0;
    std::string mode; // NEUTRAL, CACHED(k), DIO(k), PT(fb,k)
    std::string fb;   // the attached fb's name, or "-"
    bool cache_io_mode = false;
    std::string lock; // i_rwsem: "-", "excl (W1)", "shared x2 (W1, W2)"
    bool evicted = false;
    bool operator==(const Inode &) const = default;
  };
  struct Backing {
    std::string name;
    std::int32_t id = 0; // the id it was registered under
    std::int32_t refs = 0;
    bool freed = false;
    std::string source;               // the backing file it wraps
    std::vector<std::string> holders; // "id map (id 1)", "inode a"
    bool operator==(const Backing &) const = default;
  };
  struct File {
    std::string handle;
    std::string inode;
    std::string iomode;                         // none, cached, uncached
    std::string passthrough;                    // the fb it was opened with, or "-"
    std::vector<std::string> backing_file_pins; // who pins its per-file backing_file
    std::vector<std::string> alive_by;          // fd, mapping M1, write W1 in flight, ...
    bool dir = false;
    bool operator==(const File &) const = default;
  };
  struct Id {
    std::int32_t id = 0;
    std::string backing;
    bool operator==(const Id &) const = default;
  };
  struct Conn {
    bool initialized = false;
    bool passthrough = false;
    int max_stack_depth = 0;
    bool connected = true;
    bool mounted = false;
    bool sb_alive = false;
    bool dev_open = true;
    bool freed = false;
    bool no_open = false;
    bool operator==(const Conn &) const = default;
  };
  std::vector<Inode> inodes;
  std::vector<Backing> backings; // live ones, and those freed by this very step
  std::vector<File> files;       // not yet released
  std::vector<Id> ids;
  std::int32_t next_id = 1;        // idr_alloc_cyclic's cursor
  std::vector<std::string> asleep; // calls that blocked and have not returned
  Conn conn;
  bool operator==(const StateTables &) const = default;
};

// explain keeps the state tables of every step (and `fpsim explain` the text it prints) until the
// trace is explained, and looks at the whole model before and after each step: its cost grows
// with statements x objects where replay's grows with statements + live objects. Its own bounds
// (README "Limits"): `fpsim explain` refuses a trace with more statements (a usage error at the
// first one past it), and once the tables of a trace hold this many rows in all, later steps are
// explained without theirs (ExplainedStep::state_omitted).
inline constexpr std::size_t kExplainMaxStatements = 10'000;
inline constexpr std::size_t kExplainMaxStateRows = 1'000'000;

// One decision the model recorded in a step, as --json shows it: the rule, the kernel function,
// the errno, the objects under their trace names, and the rule's own text.
struct ExplainedDecision {
  std::string rule;     // model::rule_name
  std::string function; // model::rule_function
  int err = 0;
  std::vector<std::pair<std::string, std::string>> objects; // ("inode", "a"), ("fb", "B1"), ...
  std::string why;
};

struct ExplainedStep {
  int line = 0; // 0: a teardown step replay added after the trace
  bool teardown = false;
  bool check = false;    // a `check` statement (no state change)
  std::string statement; // the statement as printed by the trace printer
  std::string outcome;   // format_outcome_detailed, or "pass" / "fail" for checks
  Outcome::Kind kind = Outcome::Kind::Ok;
  int err = 0;
  std::string expected;                // the trace's expectation, if it has one
  bool mismatch = false;               // the outcome does not match the expectation
  std::string rule;                    // the kernel function(s) that decided it
  std::string why;                     // plain language, including the effects below
  std::vector<std::string> effects;    // side effects: releases, wake-ups, frees, ...
  std::vector<std::string> violations; // invariant violations found after the step
  std::vector<ExplainedDecision> decisions; // what the model decided, in order
  StateTables state;                   // after the step, unless omitted
  bool state_omitted = false;          // the trace's tables reached kExplainMaxStateRows
};

struct Explanation {
  std::string path;
  std::string title;
  KernelProfile profile = model::kDefaultProfile;
  std::vector<ExplainedStep> steps;    // the trace's statements, then teardown steps
  std::vector<ReplayFailure> failures; // replay's verdict
  bool passed() const { return failures.empty(); }
};

// Replays t under profile p with the simulator and explains every statement.
Explanation explain_trace(const Trace &t, KernelProfile p);

} // namespace fpsim::sim
