// `fpsim explain`: the CLI around sim::explain_trace: text tables (coloured on a terminal) or
// one JSON object per trace.
#include "tools/fpsim/explain_cmd.h"

#include "base/join.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/trace/trace_files.h"
#include "tools/exit_codes.h"
#include "tools/fpsim/cli_util.h"

#include <cstdlib>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/ioctl.h>
#include <unistd.h>

namespace fpsim::tools {
namespace {

constexpr std::string_view kIndent = "     "; // under the line number
constexpr std::size_t kLabelWidth = 9;        // "rule", "why", "inodes", ...

struct Style {
  bool on = false;
  std::string wrap(std::string_view code, std::string_view text) const {
    if (!on || text.empty())
      return std::string(text);
    return fmt::format("\033[{}m{}\033[0m", code, text);
  }
  std::string bold(std::string_view s) const { return wrap("1", s); }
  std::string dim(std::string_view s) const { return wrap("2", s); }
  std::string red(std::string_view s) const { return wrap("31", s); }
  std::string green(std::string_view s) const { return wrap("32", s); }
  std::string yellow(std::string_view s) const { return wrap("33", s); }
  std::string blue(std::string_view s) const { return wrap("34", s); }
  std::string magenta(std::string_view s) const { return wrap("35", s); }
  std::string cyan(std::string_view s) const { return wrap("36", s); }
};

std::string pad(std::string_view s, std::size_t width) {
  std::string out(s);
  if (out.size() < width)
    out.append(width - out.size(), ' ');
  return out;
}

// One line of a step: the dim label in its column, then the text.
std::string labelled(const Style &st, std::string_view label, std::string_view text) {
  return fmt::format("{}{}{}\n", kIndent, st.dim(pad(label, kLabelWidth)), text);
}

// Word wrap for a terminal: continuation lines start at `indent` columns.
std::string wrap_words(const std::string &text, std::size_t indent, int width) {
  if (width <= 0 || indent + 20 >= static_cast<std::size_t>(width))
    return text;
  const std::size_t room = static_cast<std::size_t>(width) - indent;
  std::string out;
  std::size_t col = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = text.find(' ', i);
    if (j == std::string::npos)
      j = text.size();
    const std::string word = text.substr(i, j - i);
    if (col > 0 && col + 1 + word.size() > room) {
      out += "\n" + std::string(indent, ' ');
      col = 0;
    } else if (col > 0) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
    i = j + 1;
  }
  return out;
}

std::string outcome_colored(const sim::ExplainedStep &s, const Style &st) {
  if (s.check)
    return s.mismatch ? st.red(s.outcome) : st.green(s.outcome);
  switch (s.kind) {
  case sim::Outcome::Kind::Ok:
  case sim::Outcome::Kind::Id:
  case sim::Outcome::Kind::Backing:
  case sim::Outcome::Kind::Fuse:
    return st.green(s.outcome);
  case sim::Outcome::Kind::Errno:
  case sim::Outcome::Kind::Invalid:
    return st.red(s.outcome);
  case sim::Outcome::Kind::Blocks:
    return st.yellow(s.outcome);
  }
  return s.outcome;
}

std::string mode_colored(const std::string &mode, const Style &st) {
  if (mode.rfind("PT(", 0) == 0)
    return st.magenta(mode);
  if (mode.rfind("CACHED(", 0) == 0)
    return st.blue(mode);
  if (mode.rfind("DIO(", 0) == 0)
    return st.yellow(mode);
  return mode;
}

// An aligned table: the label and the dim header on the first line, rows below. colour(c, r,
// text) may colour a cell after it was padded.
template <typename Colour>
std::string table(std::string_view label, const std::vector<std::string> &header,
                  const std::vector<std::vector<std::string>> &rows, const Style &st,
                  Colour colour) {
  std::vector<std::size_t> w(header.size(), 0);
  for (std::size_t c = 0; c < header.size(); ++c) {
    w[c] = header[c].size();
    for (const auto &r : rows)
      w[c] = std::max(w[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string> &cells, bool head, std::size_t row) {
    std::string s;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const bool last = c + 1 == cells.size();
      const std::string cell = last ? cells[c] : pad(cells[c], w[c]);
      if (head) {
        s += st.dim(cell);
      } else {
        // Colour only the text, not the padding, so the width stays right.
        std::string coloured = colour(c, row, cells[c]);
        s += coloured + (last ? "" : std::string(w[c] - cells[c].size(), ' '));
      }
      if (!last)
        s += "  ";
    }
    return s;
  };
  std::string out = labelled(st, label, line(header, true, 0));
  for (std::size_t r = 0; r < rows.size(); ++r)
    out += fmt::format("{}{}{}\n", kIndent, std::string(kLabelWidth, ' '), line(rows[r], false, r));
  return out;
}

std::string conn_text(const sim::StateTables::Conn &c) {
  std::vector<std::string> v;
  if (!c.initialized)
    v.emplace_back("not initialized");
  else
    v.push_back(c.passthrough ? fmt::format("passthrough (max_stack_depth {})", c.max_stack_depth)
                              : std::string("no passthrough"));
  v.emplace_back(c.connected ? "connected" : "aborted");
  if (c.initialized)
    v.emplace_back(c.mounted ? "mounted"
                             : (c.sb_alive ? "detached (superblock alive)" : "unmounted"));
  v.emplace_back(c.dev_open ? "/dev/fuse open" : "/dev/fuse closed");
  if (c.no_open)
    v.emplace_back("no_open");
  if (c.freed)
    v.emplace_back("freed");
  return join(v);
}

std::string render_state(const sim::StateTables &s, const sim::StateTables *prev, const Style &st) {
  std::string out;
  auto plain = [](std::size_t, std::size_t, const std::string &text) { return text; };
  if (!prev || !(prev->conn == s.conn))
    out += labelled(st, "conn", conn_text(s.conn));
  if (!s.inodes.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto &i : s.inodes)
      rows.push_back(
          {i.name, std::to_string(i.ctr), i.mode, i.fb, i.cache_io_mode ? "1" : "0", i.lock});
    out += table("inodes", {"name", "ctr", "mode", "fb", "cache_io", "i_rwsem"}, rows, st,
                 [&](std::size_t c, std::size_t, const std::string &text) {
                   return c == 2 ? mode_colored(text, st) : text;
                 });
  }
  if (!s.backings.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto &b : s.backings)
      rows.push_back({b.name, std::to_string(b.id), b.freed ? "freed" : std::to_string(b.refs),
                      b.source, b.holders.empty() ? "-" : join(b.holders)});
    out += table("backing", {"name", "id", "refs", "file", "references held by"}, rows, st,
                 [&](std::size_t c, std::size_t, const std::string &text) {
                   return c == 2 && text == "freed" ? st.red(text) : text;
                 });
  }
  if (!s.files.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto &f : s.files)
      rows.push_back({f.handle, f.inode, f.dir ? "dir" : f.iomode, f.passthrough,
                      f.backing_file_pins.empty() ? "-" : join(f.backing_file_pins),
                      f.alive_by.empty() ? "-" : join(f.alive_by)});
    out += table("files", {"handle", "inode", "iomode", "pt", "backing_file pins", "kept alive by"},
                 rows, st, plain);
  }
  if (!s.ids.empty() || (prev && !prev->ids.empty())) {
    std::vector<std::string> v;
    for (const auto &i : s.ids)
      v.push_back(fmt::format("{}={}", i.id, i.backing));
    out += labelled(
        st, "ids",
        fmt::format("{} (next {})", v.empty() ? std::string("none") : join(v, " "), s.next_id));
  }
  for (std::size_t k = 0; k < s.asleep.size(); ++k)
    out += labelled(st, k ? "" : "asleep", st.yellow(s.asleep[k]));
  return out;
}

std::string failure_line(const sim::Explanation &e, const sim::ReplayFailure &f) {
  const std::string where = f.line ? fmt::format("{}:{}", e.path, f.line) : e.path;
  switch (f.kind) {
  case sim::ReplayFailure::Kind::Mismatch:
    return fmt::format("{}: {}: expected {}, got {}{}", where, f.statement,
                       f.expected.empty() ? "success" : f.expected, f.actual,
                       f.message.empty() ? "" : " (" + f.message + ")");
  case sim::ReplayFailure::Kind::Invalid:
  case sim::ReplayFailure::Kind::CheckFailed:
  case sim::ReplayFailure::Kind::Violation:
  case sim::ReplayFailure::Kind::Leak:
    break;
  }
  return fmt::format("{}: {}: {}: {}", where, f.statement, sim::failure_kind_name(f.kind),
                     f.message);
}

int terminal_width(std::FILE *f) {
  winsize ws{};
  if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  if (const char *c = std::getenv("COLUMNS"))
    if (int n = std::atoi(c); n > 0)
      return n;
  return 100;
}

nlohmann::json state_json(const sim::StateTables &s) {
  nlohmann::json j;
  j["conn"] = {{"initialized", s.conn.initialized},
               {"passthrough", s.conn.passthrough},
               {"max_stack_depth", s.conn.max_stack_depth},
               {"connected", s.conn.connected},
               {"mounted", s.conn.mounted},
               {"superblock", s.conn.sb_alive},
               {"dev_open", s.conn.dev_open},
               {"no_open", s.conn.no_open},
               {"freed", s.conn.freed}};
  j["inodes"] = nlohmann::json::array();
  for (const auto &i : s.inodes)
    j["inodes"].push_back({{"name", i.name},
                           {"iocachectr", i.ctr},
                           {"mode", i.mode},
                           {"fb", i.fb == "-" ? nlohmann::json(nullptr) : nlohmann::json(i.fb)},
                           {"cache_io_mode", i.cache_io_mode},
                           {"i_rwsem", i.lock}});
  j["backings"] = nlohmann::json::array();
  for (const auto &b : s.backings)
    j["backings"].push_back({{"name", b.name},
                             {"id", b.id},
                             {"refcount", b.refs},
                             {"freed", b.freed},
                             {"file", b.source},
                             {"held_by", b.holders}});
  j["files"] = nlohmann::json::array();
  for (const auto &f : s.files)
    j["files"].push_back({{"handle", f.handle},
                          {"inode", f.inode},
                          {"iomode", f.dir ? "dir" : f.iomode},
                          {"passthrough", f.passthrough == "-" ? nlohmann::json(nullptr)
                                                               : nlohmann::json(f.passthrough)},
                          {"backing_file_pinned_by", f.backing_file_pins},
                          {"kept_alive_by", f.alive_by}});
  j["ids"] = nlohmann::json::array();
  for (const auto &i : s.ids)
    j["ids"].push_back({{"id", i.id}, {"backing", i.backing}});
  j["next_id"] = s.next_id;
  j["asleep"] = s.asleep;
  return j;
}

} // namespace

std::string render_explanation_text(const sim::Explanation &e, bool color, int width) {
  const Style st{color};
  std::string out =
      fmt::format("{} {} [{}]{}\n", st.bold("=="), st.bold(e.path), model::profile_name(e.profile),
                  e.title.empty() ? "" : ": " + e.title);
  const sim::StateTables *prev = nullptr;
  bool omitted_said = false;
  bool teardown_header = false;
  const std::size_t why_indent = kIndent.size() + kLabelWidth;
  for (const sim::ExplainedStep &s : e.steps) {
    if (s.teardown && !teardown_header) {
      out += fmt::format("\n{}\n",
                         st.bold("-- teardown: replay ends what the trace left open, in kernel "
                                 "order"));
      teardown_header = true;
    }
    const std::string line = s.teardown ? "  -" : fmt::format("{:>3}", s.line);
    out += fmt::format("\n{}  {}  {} {}", st.dim(line), st.bold(s.statement), st.dim("=>"),
                       outcome_colored(s, st));
    if (s.mismatch && !s.expected.empty())
      out += "  " + st.red(fmt::format("!! expected {}", s.expected));
    else if (s.mismatch && !s.check)
      out += "  " + st.red("!! could not run");
    out += "\n";
    out += labelled(st, "rule", st.cyan(s.rule));
    out += labelled(st, "why", wrap_words(s.why, why_indent, width));
    for (const auto &x : s.effects)
      out += fmt::format("{}{}{}\n", kIndent, std::string(kLabelWidth, ' '),
                         wrap_words("then: " + x, why_indent, width));
    for (const auto &v : s.violations)
      out += fmt::format("{}{}{}\n", kIndent, st.red(pad("VIOLATION", kLabelWidth)),
                         st.red(wrap_words(v, why_indent, width)));
    if (s.check)
      continue;
    if (s.state_omitted) {
      if (!omitted_said)
        out += labelled(st, "state",
                        st.dim(fmt::format("omitted from here on: this trace's tables reached {} "
                                           "rows",
                                           sim::kExplainMaxStateRows)));
      omitted_said = true;
      prev = nullptr;
      continue;
    }
    if (prev && *prev == s.state)
      out += labelled(st, "state", st.dim("unchanged"));
    else
      out += render_state(s.state, prev, st);
    prev = &s.state;
  }
  out += "\n";
  if (e.passed()) {
    out += fmt::format("{} {} [{}]: every statement explained, every expectation met\n",
                       st.green("PASS"), e.path, model::profile_name(e.profile));
  } else {
    out += fmt::format("{} {} [{}]: the trace failed its expectations (explained above)\n",
                       st.red("FAIL"), e.path, model::profile_name(e.profile));
    for (const auto &f : e.failures)
      out += "  " + st.red(failure_line(e, f)) + "\n";
  }
  return out;
}

nlohmann::json failures_json(const std::vector<sim::ReplayFailure> &failures) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto &f : failures)
    j.push_back({{"kind", std::string(sim::failure_kind_name(f.kind))},
                 {"line", f.line},
                 {"statement", f.statement},
                 {"expected", f.expected},
                 {"actual", f.actual},
                 {"message", f.message}});
  return j;
}

std::string render_explanation_json(const sim::Explanation &e) {
  nlohmann::json j;
  j["path"] = e.path;
  j["kernel"] = std::string(model::profile_name(e.profile));
  j["title"] = e.title;
  j["passed"] = e.passed();
  j["failures"] = failures_json(e.failures);
  j["steps"] = nlohmann::json::array();
  for (const sim::ExplainedStep &s : e.steps) {
    nlohmann::json step;
    step["line"] = s.line;
    step["teardown"] = s.teardown;
    step["check"] = s.check;
    step["statement"] = s.statement;
    step["outcome"] = s.outcome;
    step["expected"] = s.expected.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.expected);
    step["matched"] = !s.mismatch;
    step["rule"] = s.rule;
    step["why"] = s.why;
    step["effects"] = s.effects;
    step["violations"] = s.violations;
    step["decisions"] = nlohmann::json::array();
    for (const sim::ExplainedDecision &d : s.decisions) {
      nlohmann::json objects = nlohmann::json::object();
      for (const auto &[kind, name] : d.objects)
        objects[kind] = name;
      step["decisions"].push_back(
          {{"rule", d.rule},
           {"function", d.function},
           {"errno", d.err ? nlohmann::json(sim::errno_name(d.err)) : nlohmann::json(nullptr)},
           {"objects", std::move(objects)},
           {"why", d.why}});
    }
    step["state"] = s.state_omitted ? nlohmann::json(nullptr) : state_json(s.state);
    step["state_omitted"] = s.state_omitted;
    j["steps"].push_back(std::move(step));
  }
  return j.dump();
}

CLI::App *add_explain_command(CLI::App &app, ExplainArgs &a) {
  CLI::App *cmd = app.add_subcommand(
      "explain", "replay traces and explain every statement: the kernel rule that decided its "
                 "outcome, why, and the state after it");
  cmd->add_option("TRACE", a.paths, "trace files or directories (recursively *.trace)")->required();
  cmd->add_option("--kernel", a.kernel,
                  "explain every trace under this profile (v15, 6.9, 6.18), overriding its "
                  "kernel header");
  cmd->add_flag("--json", a.json, "one JSON object per trace, one per line");
  cmd->add_option("--color", a.color, "auto (default: on a terminal), always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  return cmd;
}

int run_explain(const ExplainArgs &a) {
  std::optional<model::KernelProfile> forced;
  if (!a.kernel.empty()) {
    forced = profile_arg("fpsim explain", a.kernel, a.err);
    if (!forced)
      return kExitUsage;
  }
  auto loaded = sim::load_traces(a.paths);
  if (auto *f = std::get_if<sim::LoadFailure>(&loaded)) {
    if (f->no_traces)
      fmt::print(a.err, "fpsim explain: {}\n", f->message);
    else
      fmt::print(a.err, "{}\n", f->message);
    return kExitUsage;
  }
  const std::vector<sim::Trace> traces = std::get<std::vector<sim::Trace>>(std::move(loaded));
  for (const sim::Trace &t : traces)
    if (t.statements.size() > sim::kExplainMaxStatements) {
      const sim::Statement &s = t.statements[sim::kExplainMaxStatements];
      fmt::print(a.err,
                 "{}:{}:{}: more than {} statements: fpsim explain explains at most {} "
                 "statements per trace (fpsim replay replays up to {})\n",
                 t.path, s.line, s.col, sim::kExplainMaxStatements, sim::kExplainMaxStatements,
                 sim::kMaxStatements);
      return kExitUsage;
    }
  const bool tty = isatty(fileno(a.out)) != 0;
  const bool color =
      a.color == "always" || (a.color == "auto" && tty && std::getenv("NO_COLOR") == nullptr);
  const int width = tty ? terminal_width(a.out) : 0;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < traces.size(); ++i) {
    const sim::Trace &t = traces[i];
    const sim::Explanation e = sim::explain_trace(t, forced.value_or(t.profile));
    failed += !e.passed();
    if (a.json) {
      fmt::print(a.out, "{}\n", render_explanation_json(e));
    } else {
      fmt::print(a.out, "{}{}", i ? "\n" : "", render_explanation_text(e, color, width));
    }
    std::fflush(a.out);
  }
  if (!a.json)
    fmt::print(a.out, "\nfpsim explain: {} trace{} explained, {} passed, {} failed\n",
               traces.size(), traces.size() == 1 ? "" : "s", traces.size() - failed, failed);
  return failed ? kExitFailed : kExitOk;
}

} // namespace fpsim::tools
