// One vocabulary, two executors: the simulator (model + invariant checker) and the real kernel
// (tools/harness). Replay drives either through this interface.
#pragma once

#include "sim/trace/statement.h"

#include <boost/container/small_vector.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::sim {

// The backing id each backing name is bound to, filled in by replay from backing_open outcomes.
// Inline for a few names: fpsim explore copies them with every state.
struct Bindings {
  boost::container::small_vector<std::optional<std::int32_t>, 16> backing_ids; // per backing slot

  // The id of a backing name; none before its backing_open succeeded, and then *why says so
  // (the statement naming it cannot run).
  std::optional<std::int32_t> id(int backing, const Names &names, std::string *why) const {
    const std::optional<std::int32_t> &bound = backing_ids.at(static_cast<std::size_t>(backing));
    if (!bound)
      *why = names.backings.at(static_cast<std::size_t>(backing)) +
             " has no id: its backing_open did not succeed";
    return bound;
  }
  // The id a backing_close closes: its literal one, or its name's.
  std::optional<std::uint32_t> close_target(const Statement &s, const Names &names,
                                            std::string *why) const {
    if (s.literal_id)
      return s.literal_id;
    if (const std::optional<std::int32_t> bound = id(s.backing, names, why))
      return static_cast<std::uint32_t>(*bound);
    return std::nullopt;
  }
};

// The reply an open statement has the server send under profile p, with a backing name resolved
// through `bindings`. nullopt, and *why, when it names a backing whose backing_open did not
// succeed. Error replies need no id.
std::optional<model::OpenReply> open_reply(const ReplySpec &r, const Bindings &bindings,
                                           const Names &names, KernelProfile p, std::string *why);

struct CheckResult {
  enum class Kind : std::uint8_t { Pass, Fail, NotObservable };
  Kind kind = Kind::Pass;
  std::string message; // Fail: what differed
};

struct Violation {
  std::string rule;    // "I1".."I13", "warn", "leak", ...
  std::string message; // names the objects involved
};

class Executor {
public:
  virtual ~Executor() = default;
  // Prepares a fresh kernel (or model) for one trace under profile p.
  virtual void begin(const Trace &t, KernelProfile p) = 0;
  // Executes one non-check statement.
  virtual Outcome step(const Statement &s, const Bindings &bindings) = 0;
  virtual CheckResult check(const Statement &s, const Bindings &bindings) = 0;
  // Invariant violations found after the last step (empty for executors that cannot see them).
  virtual std::vector<Violation> after_step() = 0;
  // After teardown: every reference that did not drain, with its holders.
  virtual std::vector<Violation> drain() = 0;
  virtual void end() = 0;
};

} // namespace fpsim::sim
