#include "sim/replay.h"

#include "sim/printer.h"

#include <algorithm>
#include <cerrno>
#include <fmt/format.h>
#include <map>
#include <set>

namespace fpsim::sim {

std::string_view failure_kind_name(ReplayFailure::Kind k) {
  switch (k) {
  case ReplayFailure::Kind::Mismatch:
    return "mismatch";
  case ReplayFailure::Kind::Invalid:
    return "invalid";
  case ReplayFailure::Kind::CheckFailed:
    return "check";
  case ReplayFailure::Kind::Violation:
    return "violation";
  case ReplayFailure::Kind::Leak:
    return "leak";
  }
  return "?";
}

namespace {

// What replay knows from outcomes alone, so that teardown works the same on every executor.
struct Live {
  bool init = false;
  bool mounted = false;
  bool dev_open = true;
  std::set<int> handles;  // open fds
  std::set<int> mappings; // mapped
  std::set<int> writes;   // held by the server
  std::set<std::int32_t> ids;
  std::set<std::pair<NameKind, int>> blocked;
  std::map<std::pair<NameKind, int>, Op> blocked_op;
};

class Replayer {
public:
  Replayer(const Trace &t, Executor &ex, KernelProfile p, Transcript transcript)
      : t_(t), ex_(ex), keep_transcript_(transcript == Transcript::Keep) {
    r_.path = t.path;
    r_.profile = p;
    b_.backing_ids.assign(t.names.backings.size(), std::nullopt);
  }

  ReplayResult run() {
    ex_.begin(t_, r_.profile);
    r_.outcomes.assign(t_.statements.size(), std::nullopt);
    for (std::size_t i = 0; i < t_.statements.size(); ++i) {
      const Statement &s = t_.statements[i];
      if (s.op == Op::Check) {
        run_check(s);
        continue;
      }
      r_.outcomes[i] = execute(s, false);
    }
    teardown();
    for (const Violation &v : ex_.drain())
      fail(ReplayFailure::Kind::Leak, nullptr, "", "", fmt::format("[{}] {}", v.rule, v.message));
    ex_.end();
    return std::move(r_);
  }

private:
  void fail(ReplayFailure::Kind k, const Statement *s, std::string expected, std::string actual,
            std::string message) {
    ReplayFailure f;
    f.kind = k;
    f.line = s ? s->line : 0;
    f.statement = s ? format_statement(*s, t_.names) : "(end of trace)";
    f.expected = std::move(expected);
    f.actual = std::move(actual);
    f.message = std::move(message);
    if (keep_transcript_)
      r_.transcript += fmt::format("  ! {} {}\n", failure_kind_name(k), f.message);
    r_.failures.push_back(std::move(f));
  }

  void run_check(const Statement &s) {
    r_.checks++;
    const CheckResult c = ex_.check(s, b_);
    switch (c.kind) {
    case CheckResult::Kind::Pass:
      if (keep_transcript_)
        r_.transcript += fmt::format("{}: {} -> pass\n", s.line, format_statement(s, t_.names));
      return;
    case CheckResult::Kind::NotObservable:
      r_.checks_not_observable++;
      return;
    case CheckResult::Kind::Fail:
      fail(ReplayFailure::Kind::CheckFailed, &s, "", "", c.message);
      return;
    }
  }

  Outcome execute(const Statement &s, bool teardown) {
    r_.steps++;
    Outcome o = ex_.step(s, b_);
    if (keep_transcript_)
      r_.transcript += fmt::format("{}: {} -> {}\n", teardown ? 0 : s.line,
                                   format_statement(s, t_.names), format_outcome_detailed(o));
    if (o.kind == Outcome::Kind::Invalid)
      fail(ReplayFailure::Kind::Invalid, &s, s.expect ? format_outcome(*s.expect) : "",
           format_outcome_detailed(o), o.message);
    else if (s.expect && !s.expect->matches(o))
      fail(ReplayFailure::Kind::Mismatch, &s, format_outcome(*s.expect), format_outcome_detailed(o),
           "");
    for (const Violation &v : ex_.after_step()) {
      // A broken state persists; report each distinct violation once per trace.
      const std::string key = v.rule + v.message;
      if (seen_.insert(key).second)
        fail(ReplayFailure::Kind::Violation, &s, "", "", fmt::format("[{}] {}", v.rule, v.message));
    }
    track(s, o);
    return o;
  }

  // Follows the outcome so teardown knows what is still open, mapped, held or registered.
  void track(const Statement &s, const Outcome &o) {
    const bool ok = o.kind != Outcome::Kind::Errno && o.kind != Outcome::Kind::Invalid &&
                    o.kind != Outcome::Kind::Blocks;
    if (o.kind == Outcome::Kind::Blocks && s.op != Op::Await) {
      const auto key = s.op == Op::Mmap         ? std::pair{NameKind::Mapping, s.mapping}
                       : s.op == Op::WriteBegin ? std::pair{NameKind::Write, s.write}
                                                : std::pair{NameKind::Handle, s.handle};
      live_.blocked.insert(key);
      live_.blocked_op[key] = s.op;
      return;
    }
    switch (s.op) {
    case Op::Init:
      live_.init = live_.mounted = true;
      break;
    case Op::BackingOpen:
      if (o.kind == Outcome::Kind::Id) {
        b_.backing_ids[static_cast<std::size_t>(s.backing)] = static_cast<std::int32_t>(o.id);
        live_.ids.insert(static_cast<std::int32_t>(o.id));
      }
      break;
    case Op::BackingClose:
      if (ok)
        live_.ids.erase(s.literal_id ? static_cast<std::int32_t>(*s.literal_id)
                                     : *b_.backing_ids[static_cast<std::size_t>(s.backing)]);
      break;
    case Op::Open:
    case Op::Create:
    case Op::Opendir:
      if (ok)
        live_.handles.insert(s.handle);
      break;
    case Op::Close:
      // The fd is gone even when FLUSH failed.
      live_.handles.erase(s.handle);
      break;
    case Op::Mmap:
      if (ok)
        live_.mappings.insert(s.mapping);
      break;
    case Op::Munmap:
      live_.mappings.erase(s.mapping);
      break;
    case Op::WriteBegin:
      if (o.kind == Outcome::Kind::Ok)
        live_.writes.insert(s.write);
      break;
    case Op::WriteEnd:
      live_.writes.erase(s.write);
      break;
    case Op::Await: {
      const std::pair key{s.await_kind, s.await_slot};
      if (o.kind == Outcome::Kind::Blocks || !live_.blocked.count(key))
        break;
      const Op op = live_.blocked_op[key];
      live_.blocked.erase(key);
      if (!ok)
        break;
      if (op == Op::Open || op == Op::Create)
        live_.handles.insert(s.await_slot);
      else if (op == Op::Mmap)
        live_.mappings.insert(s.await_slot);
      else if (op == Op::WriteBegin && o.kind == Outcome::Kind::Ok)
        live_.writes.insert(s.await_slot);
      break;
    }
    case Op::Umount:
      if (ok)
        live_.mounted = false;
      break;
    case Op::DevClose:
      if (ok)
        live_.dev_open = false;
      break;
    case Op::Read:
    case Op::Write:
    case Op::Abort:
    case Op::Check:
      break;
    }
  }

  Statement synth(Op op) const {
    Statement s;
    s.op = op;
    s.line = 0;
    return s;
  }

  void teardown_expect(const Statement &s, const Outcome &o, std::initializer_list<Outcome::Kind> ok) {
    if (std::find(ok.begin(), ok.end(), o.kind) == ok.end())
      fail(ReplayFailure::Kind::Mismatch, &s, "", format_outcome_detailed(o),
           "teardown step did not succeed");
  }

  // What replay holds goes in kernel order: held writes return, mappings go, fds close.
  void release_live() {
    for (int w : std::set<int>(live_.writes)) {
      Statement s = synth(Op::WriteEnd);
      s.write = w;
      execute(s, true);
    }
    for (int mp : std::set<int>(live_.mappings)) {
      Statement s = synth(Op::Munmap);
      s.mapping = mp;
      teardown_expect(s, execute(s, true), {Outcome::Kind::Ok});
    }
    for (int h : std::set<int>(live_.handles)) {
      Statement s = synth(Op::Close);
      s.handle = h;
      const Outcome o = execute(s, true);
      if (!(o.kind == Outcome::Kind::Errno && o.err == ENOTCONN))
        teardown_expect(s, o, {Outcome::Kind::Ok});
    }
  }

  // Kernel order: writes return, mappings go, fds close, ids close, umount, the device closes.
  void teardown() {
    // Passes over the blocked calls until one wakes none. A call that returns may hand back an
    // fd, a mapping or a held write, released before the next call is awaited: a queue of
    // held writes on one inode lock then drains in one pass instead of one pass per write,
    // which awaited every write still queued each time (quadratic steps, and a transcript line
    // each, in the length of the queue).
    for (;;) {
      release_live();
      if (live_.blocked.empty())
        break;
      bool returned = false;
      for (const auto &key : std::set(live_.blocked)) {
        Statement s = synth(Op::Await);
        s.await_kind = key.first;
        s.await_slot = key.second;
        execute(s, true);
        if (!live_.blocked.count(key)) {
          returned = true;
          release_live();
        }
      }
      if (!returned)
        break;
    }
    // Ids die with the connection once the device is closed.
    if (!live_.dev_open)
      live_.ids.clear();
    for (std::int32_t id : std::set<std::int32_t>(live_.ids)) {
      Statement s = synth(Op::BackingClose);
      s.literal_id = static_cast<std::uint32_t>(id);
      teardown_expect(s, execute(s, true), {Outcome::Kind::Ok});
    }
    if (live_.init && live_.mounted) {
      Statement s = synth(Op::Umount);
      const Outcome o = execute(s, true);
      if (o.kind == Outcome::Kind::Errno && o.err == EBUSY) {
        s.detach = true;
        teardown_expect(s, execute(s, true), {Outcome::Kind::Ok});
      }
    }
    if (live_.dev_open) {
      Statement s = synth(Op::DevClose);
      teardown_expect(s, execute(s, true), {Outcome::Kind::Ok});
    }
  }

  const Trace &t_;
  Executor &ex_;
  bool keep_transcript_;
  ReplayResult r_;
  Bindings b_;
  Live live_;
  std::set<std::string> seen_;
};

} // namespace

ReplayResult replay(const Trace &t, Executor &ex, KernelProfile profile, Transcript transcript) {
  return Replayer(t, ex, profile, transcript).run();
}

std::string annotate(const Trace &t, const ReplayResult &r) {
  std::vector<std::string> lines = t.source_lines;
  for (std::size_t i = 0; i < t.statements.size(); ++i) {
    const Statement &s = t.statements[i];
    const auto &o = r.outcomes[i];
    if (!o || o->kind == Outcome::Kind::Invalid)
      continue;
    std::string &line = lines.at(static_cast<std::size_t>(s.line - 1));
    // A CRLF file stays CRLF: the positions below all lie before the '\r'.
    const bool crlf = !line.empty() && line.back() == '\r';
    if (crlf)
      line.pop_back();
    std::string out = line.substr(0, s.text_end);
    out += std::string(out.size() < 43 ? 43 - out.size() : 1, ' ');
    out += "=> " + format_outcome(*o);
    if (s.comment_pos)
      out += "  " + line.substr(*s.comment_pos);
    if (crlf)
      out += '\r';
    line = out;
  }
  std::string text;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    text += lines[i];
    if (i + 1 < lines.size())
      text += '\n';
  }
  return text;
}

} // namespace fpsim::sim
