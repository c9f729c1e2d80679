// Fault injection for fpsim-harness (environment variable FPSIM_HARNESS_FAULT, read by `run` and
// `crosscheck`): a server that never answers, answers garbage or dies, and an isolated child killed
// while one of its calls waits in the kernel. Tests use it to show that each of these is reported
// with the statement it hit, ends with exit 3 and leaves nothing behind (tests/harness/harness_faults.sh,
// tests/harness/harness_soak.sh).
//
//   silent-at:OP:N          the server reads the Nth OP request and never answers it
//   garbage-at:OP:N:HOW     the server answers the Nth OP request with a reply the kernel must refuse:
//                           unique (no request has that unique), short (cut to half), errno (a
//                           positive error, the missing minus), oversized (4 KiB too long)
//   kill-server-at:OP:N     the server dies on reading the Nth OP request: it is left unanswered and
//                           the /dev/fuse file is released, as when a server process is SIGKILLed
//   kill-server-at-step:N   the server dies right before the Nth statement runs
//   kill-child-at:OP:N      the isolated child (its client threads and its server thread alike) is
//                           SIGKILLed once the Nth OP request is read and left unanswered, i.e.
//                           while the call that sent it is blocked in the kernel
//
// N counts from 1, per trace run (each run has its own server). Statements are counted as they are
// executed: `check` lines do not count, the teardown replay adds at the end does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace fpsim::harness {

struct Fault {
  enum class Kind { Silent, Garbage, KillServer, KillServerAtStep, KillChild };
  enum class Garbage { Unique, Short, Errno, Oversized };

  Kind kind = Kind::Silent;
  std::uint32_t opcode = 0; // every kind but KillServerAtStep
  std::uint64_t nth = 0;    // the request's number among those of `opcode`; KillServerAtStep: the step
  Garbage garbage = Garbage::Unique;
  std::string spec; // as given, for reports
};

inline constexpr const char *kFaultVariable = "FPSIM_HARNESS_FAULT";

// Parses a fault spec. nullopt with `err` (one line, naming what is wrong) when it is malformed.
std::optional<Fault> parse_fault(const std::string &text, std::string &err);

// The accepted forms, for error messages.
std::string fault_forms();

} // namespace fpsim::harness
