#include "fuzz/parse_replay.h"

#include "sim/teach/explain.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"

#include <algorithm>
#include <fmt/format.h>

namespace fpsim::sim {

namespace {

// Annotation rewrites a statement line as its statement, padding to column 44, "=> OUTCOME" and
// the comment: it adds at most this much to a line.
constexpr std::size_t kAnnotationGrowth = 128;

// The lines the CLI prints for a failure (tools/fpsim/main.cpp print_failure), so that their
// formatting runs on every input too.
std::size_t failure_text_bytes(const ReplayResult &r) {
  std::size_t bytes = 0;
  for (const ReplayFailure &f : r.failures)
    bytes += fmt::format("{}:{}: {}: {}: expected {}, got {} ({})", r.path, f.line, f.statement,
                         failure_kind_name(f.kind), f.expected, f.actual, f.message)
                 .size();
  return bytes;
}

bool same_statements(const Trace &a, const Trace &b) {
  if (a.statements.size() != b.statements.size())
    return false;
  for (std::size_t i = 0; i < a.statements.size(); ++i)
    if (a.statements[i].op != b.statements[i].op || a.statements[i].line != b.statements[i].line)
      return false;
  return true;
}

} // namespace

ParseReplayOutcome parse_and_replay(std::string_view bytes, const std::string &path) {
  ParseReplayOutcome out;
  ParseResult parsed = parse_trace(bytes, path);
  if (const auto *e = std::get_if<ParseError>(&parsed)) {
    out.parse_error = e->str();
    return out;
  }
  const Trace &t = std::get<Trace>(parsed);
  out.parsed = true;

  SimExecutor ex;
  const ReplayResult r = replay(t, ex, t.profile);
  out.passed = r.passed();
  out.steps = r.steps;
  out.failures = r.failures.size();
  out.report_bytes = failure_text_bytes(r);

  const std::string annotated = annotate(t, r);
  std::size_t longest = 0;
  for (const std::string &line : t.source_lines)
    longest = std::max(longest, line.size());
  if (longest + kAnnotationGrowth <= kMaxLineBytes) {
    const ParseResult again = parse_trace(annotated, path);
    const auto *t2 = std::get_if<Trace>(&again);
    out.annotation_reparses = t2 && same_statements(t, *t2);
  }

  if (t.statements.size() <= kFuzzExplainMaxStatements) {
    const Explanation e = explain_trace(t, t.profile);
    out.explained = true;
    out.explain_agrees = e.passed() == r.passed() && e.failures.size() == r.failures.size();
  }
  return out;
}

} // namespace fpsim::sim
