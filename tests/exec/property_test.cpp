// Random statement sequences on every profile: no invariant is ever violated, every reference
// drains at teardown, and printing then parsing a generated trace gives the same trace.
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

using namespace fpsim;
using namespace fpsim::sim;

namespace {

constexpr int kFiles = 3;
constexpr int kBackingFiles = 2;

// Builds a trace statement by statement, declaring fresh names as the parser would.
struct Builder {
  Trace t;
  int open_handles = 0;

  int fresh(std::vector<std::string> &table, const char *prefix) {
    table.push_back(prefix + std::to_string(table.size() + 1));
    return static_cast<int>(table.size() - 1);
  }
  int pick(const std::vector<std::string> &table) {
    return *rc::gen::inRange<int>(0, static_cast<int>(table.size()));
  }

  ReplySpec reply() {
    ReplySpec r;
    const int kind = *rc::gen::inRange(0, 20);
    if (kind == 0) {
      r.kind = ReplySpec::Kind::Error;
      r.error = EACCES;
      return r;
    }
    if (kind == 1) {
      r.kind = ReplySpec::Kind::Enosys;
      return r;
    }
    static constexpr std::uint32_t kChoices[] = {
        0,
        reply_flag::KEEP_CACHE,
        reply_flag::DIRECT_IO,
        reply_flag::DIRECT_IO | reply_flag::PARALLEL_DIRECT_WRITES,
        reply_flag::PASSTHROUGH,
        reply_flag::PASSTHROUGH,
        reply_flag::PASSTHROUGH | reply_flag::DIRECT_IO | reply_flag::PARALLEL_DIRECT_WRITES,
        reply_flag::PASSTHROUGH | reply_flag::KEEP_CACHE,
    };
    r.flags = *rc::gen::elementOf(std::vector<std::uint32_t>(std::begin(kChoices), std::end(kChoices)));
    if ((r.flags & reply_flag::PASSTHROUGH) && !t.names.backings.empty() && *rc::gen::inRange(0, 8)) {
      r.id_kind = ReplySpec::IdKind::Name;
      r.backing = pick(t.names.backings);
    } else if (r.flags & reply_flag::PASSTHROUGH) {
      r.id_kind = ReplySpec::IdKind::Literal;
      r.literal_id = *rc::gen::inRange(-1, 4);
    }
    return r;
  }

  void add(Statement s) {
    s.line = static_cast<int>(t.statements.size()) + 2;
    t.statements.push_back(std::move(s));
  }

  void one() {
    Statement s;
    const bool have_handles = !t.names.handles.empty();
    switch (*rc::gen::inRange(0, have_handles ? 13 : 4)) {
    case 0:
    case 1:
      s.op = Op::BackingOpen;
      s.backing = fresh(t.names.backings, "B");
      s.backing_file = *rc::gen::inRange(0, kBackingFiles);
      break;
    case 2:
      s.op = Op::BackingClose;
      if (t.names.backings.empty()) {
        s.literal_id = static_cast<std::uint32_t>(*rc::gen::inRange(0, 4));
      } else {
        s.backing = pick(t.names.backings);
      }
      break;
    case 3:
    case 4:
    case 5:
      s.op = Op::Open;
      s.handle = fresh(t.names.handles, "H");
      s.file = *rc::gen::inRange(0, kFiles);
      s.access = *rc::gen::element(AccessMode::ReadOnly, AccessMode::ReadWrite);
      s.reply = reply();
      break;
    case 6:
      s.op = *rc::gen::element(Op::Read, Op::Write);
      s.handle = pick(t.names.handles);
      break;
    case 7:
    case 8:
      s.op = Op::Close;
      s.handle = pick(t.names.handles);
      break;
    case 9:
      s.op = Op::Mmap;
      s.mapping = fresh(t.names.mappings, "M");
      s.handle = pick(t.names.handles);
      s.shared = *rc::gen::arbitrary<bool>();
      break;
    case 10:
      if (t.names.mappings.empty())
        return;
      s.op = Op::Munmap;
      s.mapping = pick(t.names.mappings);
      break;
    case 11:
      s.op = Op::WriteBegin;
      s.write = fresh(t.names.writes, "W");
      s.handle = pick(t.names.handles);
      break;
    case 12:
      if (t.names.writes.empty())
        return;
      s.op = Op::Await;
      s.await_kind = NameKind::Write;
      s.await_slot = pick(t.names.writes);
      break;
    }
    add(s);
  }
};

Trace generate() {
  Builder b;
  b.t.path = "generated.trace";
  b.t.profile = *rc::gen::element(model::KernelProfile::V15, model::KernelProfile::V6_9,
                                  model::KernelProfile::V6_18);
  b.t.profile_given = true;
  for (int i = 0; i < kFiles; ++i) {
    b.t.names.mount_files.push_back(std::string(1, static_cast<char>('a' + i)));
    b.t.names.mount_file_created.push_back(false);
  }
  for (int i = 0; i < kBackingFiles; ++i)
    b.t.names.backing_files.push_back(std::string(1, static_cast<char>('x' + i)) + ".dat");
  Statement init;
  init.op = Op::Init;
  init.init.passthrough = *rc::gen::inRange(0, 6) != 0;
  init.init.max_stack_depth = *rc::gen::inRange(0, 3);
  init.init.direct_io_allow_mmap = *rc::gen::arbitrary<bool>();
  b.add(init);
  const int n = *rc::gen::inRange(1, 40);
  for (int i = 0; i < n; ++i)
    b.one();
  if (*rc::gen::inRange(0, 4) == 0) {
    Statement s;
    s.op = *rc::gen::element(Op::Abort, Op::Umount, Op::DevClose);
    s.detach = true;
    b.add(s);
  }
  return b.t;
}

// A write_end or await of a write that never reached the server is the only invalid step a
// generated trace can hold; everything else must replay cleanly.
bool acceptable(const ReplayFailure &f) {
  return f.kind == ReplayFailure::Kind::Invalid;
}

RC_GTEST_PROP(Property, RandomTracesKeepEveryInvariantAndDrain, ()) {
  const Trace t = generate();
  SimExecutor ex;
  const ReplayResult r = replay(t, ex, t.profile);
  for (const ReplayFailure &f : r.failures) {
    if (acceptable(f))
      continue;
    RC_FAIL(std::string(failure_kind_name(f.kind)) + " at line " + std::to_string(f.line) + ": " +
            f.statement + ": " + f.message + "\n" + print_trace(t));
  }
}

RC_GTEST_PROP(Property, GeneratedTracesRoundTripThroughText, ()) {
  const Trace t = generate();
  const std::string text = print_trace(t);
  ParseResult p = parse_trace(text, "generated.trace");
  if (auto *e = std::get_if<ParseError>(&p))
    RC_FAIL(e->str() + "\n" + text);
  RC_ASSERT(print_trace(std::get<Trace>(p)) == text);
}

RC_GTEST_PROP(Property, ReplayIsDeterministic, ()) {
  const Trace t = generate();
  SimExecutor a, b;
  RC_ASSERT(replay(t, a, t.profile).transcript == replay(t, b, t.profile).transcript);
}

} // namespace
