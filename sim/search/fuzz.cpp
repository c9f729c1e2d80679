#include "sim/search/fuzz.h"

#include "base/assert.h"
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"

#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <set>
#include <utility>
#include <variant>

namespace fpsim::sim {

std::string_view fuzz_failure_kind_name(FuzzFailure::Kind k) {
  switch (k) {
  case FuzzFailure::Kind::Violation:
    return "violation";
  case FuzzFailure::Kind::CheckFailed:
    return "check";
  case FuzzFailure::Kind::Leak:
    return "leak";
  case FuzzFailure::Kind::Divergence:
    return "divergence";
  }
  FPSIM_UNREACHABLE("a fuzz failure kind outside the enum");
}

std::string FuzzFailure::signature() const {
  std::string s(fuzz_failure_kind_name(kind));
  if (!rule.empty() && rule != s)
    s += " [" + rule + "]";
  return s;
}

std::string FuzzFailure::describe() const {
  const std::string where = line                            ? fmt::format("line {}: {}", line, statement)
                            : statement == "(end of trace)" ? statement
                                                            : "teardown: " + statement;
  if (kind == Kind::Divergence)
    return fmt::format("{} at {}: unmutated model {}, mutant {}", signature(), where, reference,
                       actual);
  return fmt::format("{} at {}: {}", signature(), where, message);
}

bool OracleResult::has(const std::string &signature) const {
  for (const FuzzFailure &f : failures)
    if (f.signature() == signature)
      return true;
  return false;
}

namespace {

// "[I6] message" -> ("I6", "message").
std::pair<std::string, std::string> split_rule(const std::string &m) {
  if (m.size() > 2 && m[0] == '[') {
    const std::size_t close = m.find(']');
    if (close != std::string::npos)
      return {m.substr(1, close - 1),
              m.substr(close + (close + 1 < m.size() && m[close + 1] == ' ' ? 2 : 1))};
  }
  return {"", m};
}

// Checks have no outcome: they agree with each other.
bool same_step(const std::optional<Outcome> &a, const std::optional<Outcome> &b) {
  return a && b ? same_outcome(*a, *b, Agreement::Exact) : a.has_value() == b.has_value();
}

std::string outcome_text(const std::optional<Outcome> &o) {
  return o ? format_outcome_detailed(*o) : std::string("(check)");
}

constexpr const auto &kProfiles = model::kBuiltinProfiles;

} // namespace

OracleResult run_oracle(const Trace &t, model::Mutant mutant,
                        const std::vector<std::optional<Outcome>> *reference) {
  OracleResult r;
  SimExecutor ex(mutant);
  const ReplayResult rep = replay(t, ex, t.profile);
  r.steps = rep.steps;
  for (const ReplayFailure &f : rep.failures) {
    FuzzFailure ff;
    switch (f.kind) {
    case ReplayFailure::Kind::Mismatch:
    case ReplayFailure::Kind::Invalid:
      continue;
    case ReplayFailure::Kind::CheckFailed:
      ff.kind = FuzzFailure::Kind::CheckFailed;
      ff.message = f.message;
      break;
    case ReplayFailure::Kind::Violation:
    case ReplayFailure::Kind::Leak: {
      ff.kind = f.kind == ReplayFailure::Kind::Leak ? FuzzFailure::Kind::Leak
                                                     : FuzzFailure::Kind::Violation;
      auto [rule, msg] = split_rule(f.message);
      ff.rule = std::move(rule);
      ff.message = std::move(msg);
      break;
    }
    }
    ff.line = f.line;
    ff.statement = f.statement;
    r.failures.push_back(std::move(ff));
  }
  if (mutant == model::Mutant::None)
    return r;
  std::vector<std::optional<Outcome>> computed;
  if (!reference) {
    SimExecutor ref;
    computed = replay(t, ref, t.profile).outcomes;
    reference = &computed;
  }
  for (std::size_t i = 0; i < t.statements.size() && i < reference->size(); ++i) {
    if (same_step((*reference)[i], rep.outcomes[i]))
      continue;
    FuzzFailure ff;
    ff.kind = FuzzFailure::Kind::Divergence;
    ff.line = t.statements[i].line;
    ff.statement = format_statement(t.statements[i], t.names);
    ff.reference = outcome_text((*reference)[i]);
    ff.actual = outcome_text(rep.outcomes[i]);
    r.failures.push_back(std::move(ff));
    break;
  }
  return r;
}

std::string fuzz_repro_command(std::uint64_t case_seed, model::KernelProfile p, int max_ops,
                               model::Mutant mutant) {
  std::string s = fmt::format("fpsim fuzz --seed {} --runs 1 --kernel {}", case_seed,
                              model::profile_name(p));
  if (max_ops != FuzzOptions{}.max_ops)
    s += fmt::format(" --max-ops {}", max_ops);
  if (mutant != model::Mutant::None)
    s += fmt::format(" --mutant {}", model::mutant_name(mutant));
  return s;
}

namespace {

class Fuzzer {
public:
  explicit Fuzzer(const FuzzOptions &o) : o_(o) {}

  FuzzResult run() {
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&start] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const std::uint64_t n = o_.shard_count ? o_.shard_count : 1;
    for (std::uint64_t k = o_.shard_index;; k += n) {
      if (o_.runs && k >= *o_.runs)
        break;
      if (!o_.runs && o_.seconds && elapsed() >= *o_.seconds)
        break;
      if (!o_.runs && !o_.seconds)
        break;
      const bool failed = run_case(k);
      if (o_.progress)
        o_.progress(FuzzProgress{r_.cases, r_.failed, r_.statements, elapsed()});
      if (failed && !o_.keep_going)
        break;
    }
    r_.elapsed = elapsed();
    return std::move(r_);
  }

private:
  bool run_case(std::uint64_t k) {
    const std::uint64_t seed = fuzz_case_seed(o_.seed, k);
    GenOptions g;
    g.profile = o_.profile.value_or(kProfiles[k % std::size(kProfiles)]);
    g.max_ops = o_.max_ops;
    std::vector<std::optional<Outcome>> reference;
    const Trace t = generate_trace(seed, g, &reference);
    const OracleResult res = run_oracle(t, o_.mutant, &reference);
    r_.cases++;
    r_.statements += t.statements.size();
    r_.steps += res.steps;
    if (o_.record_cases)
      r_.case_indices.push_back(k);
    if (!res.failed()) {
      r_.passed++;
      return false;
    }
    r_.failed++;
    const FuzzFailure &first = res.failures.front();
    if (seen_.insert(first.signature()).second)
      r_.counterexamples.push_back(counterexample(k, seed, t, first));
    return true;
  }

  FuzzCounterexample counterexample(std::uint64_t k, std::uint64_t seed, const Trace &t,
                                    const FuzzFailure &f) {
    FuzzCounterexample c;
    c.case_index = k;
    c.case_seed = seed;
    c.profile = t.profile;
    c.failure = f;
    c.original_statements = t.statements.size();
    c.repro = fuzz_repro_command(seed, t.profile, o_.max_ops, o_.mutant);
    const std::string sig = f.signature();
    const model::Mutant mutant = o_.mutant;
    Trace small = t;
    if (o_.shrink) {
      const ShrinkResult s = shrink_trace(
          t, [&](const Trace &cand) { return run_oracle(cand, mutant).has(sig); },
          o_.shrink_options);
      small = s.trace;
      c.shrink_attempts = s.attempts;
    }
    // The unmutated model's outcomes become the expectations: replayed by `fpsim replay`, the
    // file shows what the kernel does; under the mutant, where it differs.
    {
      SimExecutor ref;
      const ReplayResult rr = replay(small, ref, small.profile);
      for (std::size_t i = 0; i < small.statements.size(); ++i) {
        const auto &o = rr.outcomes[i];
        if (o && o->kind != Outcome::Kind::Invalid)
          small.statements[i].expect = *o;
      }
    }
    small.title = fmt::format("fpsim fuzz case seed {}", seed);
    const std::string body = print_trace(small);
    // The failure as the file shows it: find it again on the trace as printed, then shift its
    // line past the comment block at the top.
    FuzzFailure sf = f;
    const ParseResult parsed_body = parse_trace(body, "body");
    if (const auto *b = std::get_if<Trace>(&parsed_body)) {
      for (const FuzzFailure &x : run_oracle(*b, mutant).failures)
        if (x.signature() == sig) {
          sf = x;
          break;
        }
    }
    c.shrunk_statements = small.statements.size();
    std::vector<std::string> comments = {
        "# fpsim fuzz counterexample",
        fmt::format("# failure: {}", sf.signature()),
        "",
        fmt::format("# case {} of seed {}: case seed {}, profile {}, mutant {}", k, o_.seed, seed,
                    model::profile_name(t.profile), model::mutant_name(mutant)),
        fmt::format("# shrunk from {} to {} statements ({} attempts); expectations are the "
                    "unmutated model's outcomes",
                    c.original_statements, c.shrunk_statements, c.shrink_attempts),
        fmt::format("# repro: {}", c.repro),
    };
    if (sf.line)
      sf.line += static_cast<int>(comments.size());
    comments[2] = fmt::format("#   {}", sf.describe());
    std::string text;
    for (const std::string &l : comments)
      text += l + "\n";
    text += body;
    c.shrunk_failure = sf;
    // The file must be a valid trace that still fails the same way.
    const std::string name =
        mutant == model::Mutant::None
            ? fmt::format("{}-{}.trace", model::profile_name(t.profile), seed)
            : fmt::format("{}-{}-{}.trace", model::profile_name(t.profile), seed,
                          model::mutant_name(mutant));
    ParseResult back = parse_trace(text, name);
    if (auto *e = std::get_if<ParseError>(&back)) {
      c.write_error = "internal: the counterexample does not parse: " + e->str();
    } else if (!run_oracle(std::get<Trace>(back), mutant).has(sig)) {
      c.write_error = "internal: the counterexample as written no longer fails the same way";
    }
    c.trace = std::move(small);
    c.text = text;
    if (!o_.out_dir.empty() && c.write_error.empty())
      write(c, name);
    return c;
  }

  void write(FuzzCounterexample &c, const std::string &name) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(o_.out_dir, ec);
    if (ec) {
      c.write_error = fmt::format("{}: cannot create directory: {}", o_.out_dir, ec.message());
      return;
    }
    const std::string path = (fs::path(o_.out_dir) / name).string();
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << c.text;
      out.close();
      if (!out) {
        std::remove(tmp.c_str());
        c.write_error = fmt::format("{}: cannot write", path);
        return;
      }
    }
    fs::rename(tmp, path, ec);
    if (ec) {
      std::remove(tmp.c_str());
      c.write_error = fmt::format("{}: cannot write: {}", path, ec.message());
      return;
    }
    c.path = path;
  }

  const FuzzOptions &o_;
  FuzzResult r_;
  std::set<std::string> seen_;
};

} // namespace

FuzzResult fuzz(const FuzzOptions &opts) { return Fuzzer(opts).run(); }

} // namespace fpsim::sim
