// Trace format v1 printer: the canonical text of statements, outcomes and whole traces.
#pragma once

#include "sim/trace/statement.h"

#include <optional>
#include <string>

namespace fpsim::sim {

// "EIO", "EPERM", ...; "errno N" for numbers glibc has no name for.
std::string errno_name(int e);
std::optional<int> parse_errno(std::string_view name);

// The outcome as an expectation would be written: "EIO +release", "id=3", "backing".
std::string format_outcome(const Outcome &o);
// As format_outcome, plus the internal errno where the kernel hid it: "EIO +release (internal EBUSY)".
std::string format_outcome_detailed(const Outcome &o);

std::string format_reply(const ReplySpec &r, const Names &names);
// The statement without its expectation.
std::string format_statement(const Statement &s, const Names &names);
std::string print_trace(const Trace &t);

} // namespace fpsim::sim
