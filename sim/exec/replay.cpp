#include "sim/exec/replay.h"

#include "base/assert.h"
#include "sim/exec/live.h"
#include "sim/trace/printer.h"

#include <fmt/format.h>
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
  FPSIM_UNREACHABLE("a failure kind outside the enum");
}

std::string format_failure(const ReplayFailure &f, const std::string &path) {
  const std::string where = f.line ? fmt::format("{}:{}", path, f.line) : path;
  if (f.kind == ReplayFailure::Kind::Mismatch)
    return fmt::format("  {}: {}: expected {}, got {}{}\n", where, f.statement,
                       f.expected.empty() ? "success" : f.expected, f.actual,
                       f.message.empty() ? "" : " (" + f.message + ")");
  return fmt::format("  {}: {}: {}: {}\n", where, f.statement, failure_kind_name(f.kind),
                     f.message);
}

namespace {

class Replayer {
public:
  Replayer(const Trace &t, Executor &ex, KernelProfile p, Transcript transcript)
      : t_(t), ex_(ex), keep_transcript_(transcript == Transcript::Keep), live_(t.names) {
    r_.path = t.path;
    r_.profile = p;
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
    teardown(live_, TeardownRun{[this](const Statement &s) { return execute(s, true); },
                                [this](const Statement &s, const Outcome &o) {
                                  fail(ReplayFailure::Kind::Mismatch, &s, "",
                                       format_outcome_detailed(o), "teardown step did not succeed");
                                }});
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
    const CheckResult c = ex_.check(s, live_.bindings());
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

  Outcome execute(const Statement &s, bool in_teardown) {
    r_.steps++;
    Outcome o = ex_.step(s, live_.bindings());
    if (keep_transcript_)
      r_.transcript += fmt::format("{}: {} -> {}\n", in_teardown ? 0 : s.line,
                                   format_statement(s, t_.names), format_outcome_detailed(o));
    if (o.kind == Outcome::Kind::Invalid)
      fail(ReplayFailure::Kind::Invalid, &s, s.expect ? format_outcome(*s.expect) : "",
           format_outcome_detailed(o), o.message);
    else if (s.expect && !same_outcome(*s.expect, o))
      fail(ReplayFailure::Kind::Mismatch, &s, format_outcome(*s.expect), format_outcome_detailed(o),
           "");
    for (const Violation &v : ex_.after_step()) {
      // A broken state persists; report each distinct violation once per trace.
      const std::string key = v.rule + v.message;
      if (seen_.insert(key).second)
        fail(ReplayFailure::Kind::Violation, &s, "", "", fmt::format("[{}] {}", v.rule, v.message));
    }
    live_.track(s, o);
    return o;
  }

  const Trace &t_;
  Executor &ex_;
  bool keep_transcript_;
  ReplayResult r_;
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
