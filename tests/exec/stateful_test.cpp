// A rapidcheck stateful test: commands for the trace statements over a model state that tracks
// which names exist, run one by one through a SimExecutor with the invariant checker after
// every step; at the end the accumulated statements are printed, parsed back and replayed, and
// teardown must drain everything.
//
// The model state knows only what a trace's text knows (what is declared, whether init ran), so
// every precondition is about names: shrinking that drops a declaration also drops its users,
// and every command sequence rapidcheck tries is a trace that parses. Outcomes are the SUT's
// business: a write_end of a write the server never held, or an await of a call that did not
// block, is an invalid step (reported by the executor, harmless), never a violation.
#include "sim/exec/live.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <cerrno>
#include <map>
#include <ostream>
#include <set>

namespace fpsim::model {
// How rapidcheck shows the generated profile in a counterexample.
static void showValue(KernelProfile p, std::ostream &os) { os << profile_name(p); }
} // namespace fpsim::model

using namespace fpsim;
using namespace fpsim::sim;

namespace {

constexpr int kCapacity = 128; // names of each kind a sequence may declare
constexpr int kMountFiles = 2;
constexpr int kBackingFiles = 2;

struct State {
  model::KernelProfile profile = model::kDefaultProfile;
  bool init = false;
  int backings = 0;
  int handles = 0;
  int mappings = 0;
  int writes = 0;
};

// Room for every name a sequence may declare.
Names capacity_names() {
  Names n;
  n.number(kCapacity);
  for (int i = 0; i < kMountFiles; ++i) {
    n.mount_files.push_back(std::string(1, static_cast<char>('a' + i)));
    n.mount_file_created.push_back(false);
  }
  for (int i = 0; i < kBackingFiles; ++i)
    n.backing_files.push_back(std::string(1, static_cast<char>('x' + i)) + ".dat");
  return n;
}

// The system under test: one SimExecutor fed statement by statement.
class Sut {
public:
  explicit Sut(model::KernelProfile p) : live_(capacity_names()) {
    scratch_.profile = p;
    scratch_.profile_given = true;
    scratch_.names = capacity_names();
    ex_.begin(scratch_, p);
  }

  // Runs one statement; returns the invariant violations it caused.
  std::vector<Violation> step(Statement s) {
    s.line = static_cast<int>(stmts_.size()) + 3;
    const Outcome o = ex_.step(s, live_.bindings());
    live_.track(s, o);
    stmts_.push_back(s);
    outcomes_.push_back(o);
    return ex_.after_step();
  }

  // Answers every held write and awaits every blocked call until nothing changes, so that the
  // replay's teardown (three rounds) never meets a longer chain of waiting calls than it can
  // resolve.
  std::vector<Violation> settle() {
    std::vector<Violation> all;
    for (int round = 0; round < 16 && (!live_.writes().empty() || live_.any_blocked()); ++round) {
      const SlotSet held = live_.writes();
      held.for_each([&](int w) {
        Statement s;
        s.op = Op::WriteEnd;
        s.write = w;
        auto v = step(s);
        all.insert(all.end(), v.begin(), v.end());
      });
      for (NameKind kind : {NameKind::Handle, NameKind::Mapping, NameKind::Write}) {
        const SlotSet blocked = live_.blocked(kind);
        blocked.for_each([&](int slot) {
          Statement s;
          s.op = Op::Await;
          s.await_kind = kind;
          s.await_slot = slot;
          auto v = step(s);
          all.insert(all.end(), v.begin(), v.end());
        });
      }
    }
    return all;
  }

  Trace trace() const {
    Trace t = scratch_;
    t.statements = stmts_;
    return t;
  }
  const std::vector<Outcome> &outcomes() const { return outcomes_; }

private:
  Trace scratch_;
  SimExecutor ex_;
  Live live_;
  std::vector<Statement> stmts_;
  std::vector<Outcome> outcomes_;
};

using Command = rc::state::Command<State, Sut>;

std::string describe(const std::vector<Violation> &v) {
  std::string s;
  for (const Violation &x : v)
    s += "[" + x.rule + "] " + x.message + "\n";
  return s;
}

// Shared by every command: run the statement, fail on any violation.
void run_statement(Sut &sut, const Statement &s) {
  const auto v = sut.step(s);
  if (!v.empty())
    RC_FAIL("after " + std::string(op_name(s.op)) + ":\n" + describe(v));
}

// Shows a statement with the names the accumulated trace will give it.
void show_statement(std::ostream &os, const Statement &s) {
  os << format_statement(s, capacity_names());
}

struct StatementCommand : Command {
  Statement s;
  void show(std::ostream &os) const override { show_statement(os, s); }
  void run(const State &, Sut &sut) const override { run_statement(sut, s); }
};

struct Init : StatementCommand {
  explicit Init(const State &) {
    s.op = Op::Init;
    s.init.passthrough = *rc::gen::inRange(0, 8) != 0;
    s.init.max_stack_depth = *rc::gen::inRange(0, 3);
    s.init.direct_io_allow_mmap = *rc::gen::arbitrary<bool>();
  }
  void checkPreconditions(const State &m) const override { RC_PRE(!m.init); }
  void apply(State &m) const override { m.init = true; }
};

struct BackingOpen : StatementCommand {
  explicit BackingOpen(const State &m) {
    s.op = Op::BackingOpen;
    s.backing = m.backings;
    s.backing_file = *rc::gen::inRange(0, kBackingFiles);
    s.unprivileged = *rc::gen::inRange(0, 20) == 0;
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(s.backing == m.backings && m.backings < kCapacity);
  }
  void apply(State &m) const override { m.backings++; }
};

struct BackingClose : StatementCommand {
  explicit BackingClose(const State &m) {
    s.op = Op::BackingClose;
    if (m.backings > 0 && *rc::gen::inRange(0, 4) != 0)
      s.backing = *rc::gen::inRange(0, m.backings);
    else
      s.literal_id = *rc::gen::element(0u, 1u, 2u, 3u, 0xFFFFFFFFu);
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(s.literal_id || s.backing < m.backings);
  }
};

ReplySpec gen_reply(const State &m) {
  ReplySpec r;
  const int kind = *rc::gen::inRange(0, 24);
  if (kind == 0) {
    r.kind = ReplySpec::Kind::Error;
    r.error = EACCES;
    return r;
  }
  if (kind == 1) {
    r.kind = ReplySpec::Kind::Enosys;
    return r;
  }
  namespace rf = reply_flag;
  r.flags = *rc::gen::element<std::uint32_t>(
      0, rf::KEEP_CACHE, rf::DIRECT_IO, rf::DIRECT_IO | rf::PARALLEL_DIRECT_WRITES,
      rf::PASSTHROUGH, rf::PASSTHROUGH, rf::PASSTHROUGH | rf::DIRECT_IO | rf::PARALLEL_DIRECT_WRITES,
      rf::PASSTHROUGH | rf::KEEP_CACHE);
  if (r.flags & rf::PASSTHROUGH) {
    if (m.backings > 0 && *rc::gen::inRange(0, 6) != 0) {
      r.id_kind = ReplySpec::IdKind::Name;
      r.backing = *rc::gen::inRange(0, m.backings);
    } else {
      r.id_kind = ReplySpec::IdKind::Literal;
      r.literal_id = *rc::gen::inRange(-1, 4);
    }
  }
  return r;
}

struct Open : StatementCommand {
  explicit Open(const State &m) {
    s.op = Op::Open;
    s.handle = m.handles;
    s.file = *rc::gen::inRange(0, kMountFiles);
    s.access = *rc::gen::element(model::AccessMode::ReadOnly, model::AccessMode::ReadWrite,
                                 model::AccessMode::WriteOnly);
    s.reply = gen_reply(m);
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(m.init && s.handle == m.handles && m.handles < kCapacity);
    RC_PRE(s.reply.id_kind != ReplySpec::IdKind::Name || s.reply.backing < m.backings);
  }
  void apply(State &m) const override { m.handles++; }
};

// read / write / close of a declared handle.
template <Op kOp> struct OnHandle : StatementCommand {
  explicit OnHandle(const State &m) {
    RC_PRE(m.handles > 0);
    s.op = kOp;
    s.handle = *rc::gen::inRange(0, m.handles);
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(m.init && s.handle < m.handles);
  }
};

struct Mmap : StatementCommand {
  explicit Mmap(const State &m) {
    RC_PRE(m.handles > 0);
    s.op = Op::Mmap;
    s.mapping = m.mappings;
    s.handle = *rc::gen::inRange(0, m.handles);
    s.shared = *rc::gen::arbitrary<bool>();
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(m.init && s.handle < m.handles && s.mapping == m.mappings && m.mappings < kCapacity);
  }
  void apply(State &m) const override { m.mappings++; }
};

struct Munmap : StatementCommand {
  explicit Munmap(const State &m) {
    RC_PRE(m.mappings > 0);
    s.op = Op::Munmap;
    s.mapping = *rc::gen::inRange(0, m.mappings);
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(m.init && s.mapping < m.mappings);
  }
};

struct WriteBegin : StatementCommand {
  explicit WriteBegin(const State &m) {
    RC_PRE(m.handles > 0);
    s.op = Op::WriteBegin;
    s.write = m.writes;
    s.handle = *rc::gen::inRange(0, m.handles);
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(m.init && s.handle < m.handles && s.write == m.writes && m.writes < kCapacity);
  }
  void apply(State &m) const override { m.writes++; }
};

struct WriteEnd : StatementCommand {
  explicit WriteEnd(const State &m) {
    RC_PRE(m.writes > 0);
    s.op = Op::WriteEnd;
    s.write = *rc::gen::inRange(0, m.writes);
  }
  void checkPreconditions(const State &m) const override { RC_PRE(m.init && s.write < m.writes); }
};

struct Await : StatementCommand {
  explicit Await(const State &m) {
    RC_PRE(m.handles + m.mappings + m.writes > 0);
    s.op = Op::Await;
    std::vector<NameKind> kinds;
    if (m.handles)
      kinds.push_back(NameKind::Handle);
    if (m.mappings)
      kinds.push_back(NameKind::Mapping);
    if (m.writes)
      kinds.push_back(NameKind::Write);
    s.await_kind = *rc::gen::elementOf(kinds);
    s.await_slot = *rc::gen::inRange(0, declared(m));
  }
  void checkPreconditions(const State &m) const override {
    RC_PRE(m.init && s.await_slot < declared(m));
  }
  // How many names of the awaited kind the state declares.
  int declared(const State &m) const {
    return s.await_kind == NameKind::Handle    ? m.handles
           : s.await_kind == NameKind::Mapping ? m.mappings
                                               : m.writes;
  }
};

struct Abort : StatementCommand {
  explicit Abort(const State &) {
    // Rare: an aborted connection makes the rest of the sequence uninteresting.
    RC_PRE(*rc::gen::inRange(0, 8) == 0);
    s.op = Op::Abort;
  }
  void checkPreconditions(const State &m) const override { RC_PRE(m.init); }
};

struct Umount : StatementCommand {
  explicit Umount(const State &) {
    RC_PRE(*rc::gen::inRange(0, 8) == 0);
    s.op = Op::Umount;
    s.detach = *rc::gen::arbitrary<bool>();
  }
  void checkPreconditions(const State &m) const override { RC_PRE(m.init); }
};

RC_GTEST_PROP(Stateful, EveryStepKeepsTheInvariantsAndTeardownDrains, ()) {
  State initial;
  initial.profile = *rc::gen::element(model::KernelProfile::V15, model::KernelProfile::V6_9,
                                      model::KernelProfile::V6_18);
  Sut sut(initial.profile);
  rc::state::check(initial, sut,
                   rc::state::gen::execOneOfWithArgs<
                       Init, Init, Init, BackingOpen, BackingOpen, BackingClose, Open, Open, Open,
                       OnHandle<Op::Read>, OnHandle<Op::Write>, OnHandle<Op::Close>,
                       OnHandle<Op::Close>, Mmap, Munmap, WriteBegin, WriteBegin, WriteEnd,
                       Await, Await, Abort, Umount>());
  const auto settled = sut.settle();
  if (!settled.empty())
    RC_FAIL("while answering held writes and awaiting blocked calls:\n" + describe(settled));
  // The accumulated statements as a trace file, replayed: the same outcomes, then teardown
  // in kernel order and the drain check.
  const Trace t = sut.trace();
  const std::string text = print_trace(t);
  ParseResult p = parse_trace(text, "stateful.trace");
  if (auto *e = std::get_if<ParseError>(&p))
    RC_FAIL(e->str() + "\n" + text);
  SimExecutor ex;
  const ReplayResult r = replay(std::get<Trace>(p), ex, t.profile);
  for (const ReplayFailure &f : r.failures)
    if (f.kind == ReplayFailure::Kind::Violation || f.kind == ReplayFailure::Kind::Leak ||
        f.kind == ReplayFailure::Kind::CheckFailed)
      RC_FAIL(std::string(failure_kind_name(f.kind)) + " at line " + std::to_string(f.line) +
              ": " + f.statement + ": " + f.message + "\n" + text);
  RC_ASSERT(r.outcomes.size() == sut.outcomes().size());
  for (std::size_t i = 0; i < r.outcomes.size(); ++i)
    RC_ASSERT(format_outcome_detailed(*r.outcomes[i]) == format_outcome_detailed(sut.outcomes()[i]));
}

} // namespace
