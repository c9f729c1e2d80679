// Every input in tests/search/fuzz_regressions/ (what the libFuzzer target found, and the edge cases it
// was seeded with) goes through the fuzzer's own function, sim::parse_and_replay, and must return
// with the fuzzer's properties intact. The input limits of sim/trace/parser.h and sim/trace/trace_files.h:
// at each limit a trace parses, one past it gives that limit's own error, and a trace at the
// limits replays in bounded time and memory.
#include "sim/teach/explain.h"
#include "fuzz/parse_replay.h"
#include "sim/trace/parser.h"
#include "sim/exec/sim_executor.h"
#include "sim/trace/trace_files.h"
#include "tests/traces.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <variant>
#include <vector>

namespace {

using namespace fpsim::sim;
namespace fs = std::filesystem;
using fpsim::test::contains;

const fs::path kDir = fs::path(FPSIM_SOURCE_DIR) / "tests" / "search" / "fuzz_regressions";

std::string read_file(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What the fuzzer asserts besides "returns": see fuzz/parse_replay_fuzzer.cpp.
void expect_fuzzer_properties(const ParseReplayOutcome &o) {
  EXPECT_TRUE(o.annotation_reparses) << "the --annotate rewrite does not parse back";
  EXPECT_TRUE(o.explain_agrees) << "explain and replay disagree";
}

ParseReplayOutcome run_file(const std::string &name) {
  return parse_and_replay(read_file(kDir / name), name);
}

TEST(FuzzRegression, EveryInputReturnsNormally) {
  std::vector<fs::path> files;
  for (const auto &e : fs::directory_iterator(kDir))
    if (e.is_regular_file())
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 10u) << "inputs missing from " << kDir;
  for (const fs::path &f : files) {
    SCOPED_TRACE(f.string());
    const std::string bytes = read_file(f);
    const ParseReplayOutcome o = parse_and_replay(bytes, f.filename().string());
    expect_fuzzer_properties(o);
    EXPECT_EQ(o.parsed, o.parse_error.empty()) << o.parse_error;
  }
}

TEST(FuzzRegression, EdgeCasesBehaveAsDocumented) {
  ParseReplayOutcome o = run_file("empty.trace");
  EXPECT_FALSE(o.parsed);
  EXPECT_TRUE(contains(o.parse_error, "empty.trace:1:1: empty trace"));

  o = run_file("header-only.trace");
  EXPECT_TRUE(o.parsed) << o.parse_error;
  EXPECT_TRUE(o.passed);

  o = run_file("crlf.trace");
  EXPECT_TRUE(o.parsed) << o.parse_error;
  EXPECT_TRUE(o.passed);
  EXPECT_TRUE(o.explained);

  o = run_file("huge-name.trace");
  EXPECT_FALSE(o.parsed);
  EXPECT_TRUE(contains(o.parse_error, ":3:6: invalid handle 'Hxxx"));
  EXPECT_TRUE(contains(o.parse_error, "4001 bytes long, names are at most 64 bytes"));
  EXPECT_LT(o.parse_error.size(), 300u) << "a long name is cut in the message";

  o = run_file("line-over-limit.trace");
  EXPECT_FALSE(o.parsed);
  EXPECT_TRUE(
      contains(o.parse_error, ":3:4097: line is 5002 bytes long: at most 4096 bytes per line"));

  o = run_file("line-at-limit-comment.trace");
  EXPECT_TRUE(o.parsed) << o.parse_error;
  EXPECT_TRUE(o.passed);
}

// ---- limits --------------------------------------------------------------------------------

const std::string kInit = "fpsim-trace 1\ninit passthrough max_stack_depth=1\n";

using fpsim::test::expect_error;
using fpsim::test::TempDir;

Trace expect_parses(const std::string &text) { return fpsim::test::parse_ok(text, "limit.trace"); }

TEST(Limits, LineLength) {
  const std::string at = "# " + std::string(kMaxLineBytes - 2, 'c');
  expect_parses(kInit + at + "\n");
  // The '\r' of a CRLF line end is not content.
  expect_parses(kInit + at + "\r\n");
  expect_error(kInit + at + "c\n", 3, 4097, "line is 4097 bytes long: at most 4096 bytes per line");
}

TEST(Limits, NameLength) {
  const std::string at = "H" + std::string(kMaxNameBytes - 1, 'x');
  expect_parses(kInit + "open " + at + " a reply=cached\n");
  expect_error(kInit + "open " + at + "x a reply=cached\n", 3, 6,
               "65 bytes long, names are at most 64 bytes");
  expect_error(kInit + "open H1 " + std::string(100, 'f') + " reply=cached\n", 3, 9,
               "invalid file name 'ffff");
}

TEST(Limits, StatementsPerTrace) {
  std::string text = "fpsim-trace 1\n";
  for (std::size_t i = 0; i < kMaxStatements; ++i)
    text += "check conn connected=1\n";
  const Trace t = expect_parses(text);
  EXPECT_EQ(t.statements.size(), kMaxStatements);
  expect_error(text + "check conn connected=1\n", static_cast<int>(kMaxStatements) + 2, 1,
               "more than 1000000 statements: a trace has at most 1000000 statements");
}

TEST(Limits, LinesPerTrace) {
  std::string text = "fpsim-trace 1\n" + std::string(kMaxLines - 1, '\n');
  expect_parses(text);
  expect_error(text + "\n# one more\n", static_cast<int>(kMaxLines) + 1, 1,
               "more than 1048576 lines");
}

TEST(Limits, NamesPerKind) {
  struct Kind {
    const char *noun; // the limit the declaration after the last one hits
    const char *prefix;
    std::string (*decl)(std::size_t i);
  };
  // Mappings and writes need a handle. Every backing_open declares a backing name, so distinct
  // backing files reach the backing names' limit at the same statement.
  const Kind kinds[] = {
      {"handle", "",
       [](std::size_t i) { return "opendir H" + std::to_string(i) + " reply=cached\n"; }},
      {"backing name", "",
       [](std::size_t i) { return "backing_open B" + std::to_string(i) + " a.dat\n"; }},
      {"mapping", "open H a rdwr reply=direct_io\n",
       [](std::size_t i) { return "mmap M" + std::to_string(i) + " H shared\n"; }},
      {"write", "open H a rdwr reply=direct_io\n",
       [](std::size_t i) { return "write_begin W" + std::to_string(i) + " H\n"; }},
      {"mount file name", "",
       [](std::size_t i) { return "check inode f" + std::to_string(i) + " ctr=0\n"; }},
      {"backing name", "",
       [](std::size_t i) { return "backing_open B" + std::to_string(i) + " f" +
                                  std::to_string(i) + "\n"; }},
  };
  for (const Kind &k : kinds) {
    SCOPED_TRACE(k.noun);
    std::string text = kInit + k.prefix;
    for (std::size_t i = 0; i < kMaxNamesPerKind; ++i)
      text += k.decl(i);
    // The parser stops at the first error: one at the declaration past the limit means every
    // declaration before it parsed.
    const int line = static_cast<int>(kMaxNamesPerKind) + 3 + (*k.prefix ? 1 : 0);
    ParseResult r = parse_trace(text + k.decl(kMaxNamesPerKind), "limit.trace");
    auto *e = std::get_if<ParseError>(&r);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->line, line) << e->str();
    EXPECT_NE(e->message.find(std::string("too many ") + k.noun +
                              "s: a trace names at most " + std::to_string(kMaxNamesPerKind)),
              std::string::npos)
        << e->str();
  }
}

TEST(Limits, TraceBytes) {
  // parse_trace refuses the text by its size before looking at it.
  expect_error(std::string(kMaxTraceBytes + 1, '\n'), 1, 1,
               "trace is 67108865 bytes: at most 67108864 bytes (64 MiB) per trace file");
  // load_trace refuses a file by its size: a sparse 8 GiB file is not read.
  char tmpl[] = "/tmp/fpsim-limit-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, off_t{8} << 30), 0);
  close(fd);
  const auto start = std::chrono::steady_clock::now();
  ParseResult r = load_trace(tmpl);
  const auto took = std::chrono::steady_clock::now() - start;
  std::remove(tmpl);
  auto *e = std::get_if<ParseError>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->str(), std::string(tmpl) + ":1:1: trace is 8589934592 bytes: at most 67108864 "
                                          "bytes (64 MiB) per trace file");
  EXPECT_LT(took, std::chrono::seconds(1));
}

// A trace at the limits, with the most live objects it can make: every name of every kind used,
// every handle open on few inodes, mappings, held and blocked writes; then reads and writes up to
// the statement limit. It must replay (checker after every step, teardown) in bounded time.
TEST(Limits, TraceAtTheLimitsReplaysInBoundedTime) {
  std::string text = kInit;
  std::size_t statements = 1;
  auto add = [&](const std::string &s) {
    text += s;
    text += '\n';
    ++statements;
  };
  for (std::size_t i = 0; i < 64; ++i)
    add("backing_open B" + std::to_string(i) + " b" + std::to_string(i) + ".dat");
  const std::size_t files = 256;
  for (std::size_t i = 0; i + 64 < kMaxNamesPerKind; ++i) {
    const std::size_t f = i % files;
    // Even files in passthrough mode on their own fb, odd files cached or direct_io.
    if (f % 2 == 0)
      add("open H" + std::to_string(i) + " f" + std::to_string(f) + " rdwr reply=passthrough@B" +
          std::to_string(f / 2 % 64));
    else
      add("open H" + std::to_string(i) + " f" + std::to_string(f) + " rdwr reply=" +
          (i % 3 ? "cached" : "direct_io|parallel_direct_writes"));
  }
  for (std::size_t i = 0; i < 1024; ++i)
    add("mmap M" + std::to_string(i) + " H" + std::to_string(i) + (i % 2 ? " shared" : " private"));
  for (std::size_t i = 0; i < 1024; ++i)
    add("write_begin W" + std::to_string(i) + " H" + std::to_string(i * 3 % 4000));
  const std::size_t handles = kMaxNamesPerKind - 64;
  for (std::size_t i = 0; statements < kMaxStatements; ++i)
    add((i % 2 ? "read H" : "write H") + std::to_string(i * 7 % handles));
  ASSERT_EQ(expect_parses(text).statements.size(), kMaxStatements);
  const auto start = std::chrono::steady_clock::now();
  const ParseReplayOutcome o = parse_and_replay(text, "limits.trace");
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(o.parsed) << o.parse_error;
  EXPECT_GE(o.steps, kMaxStatements);
  expect_fuzzer_properties(o);
  // About 2 s in a release build here, and generous for a sanitizer build on a slow machine;
  // before the checker and the model looked only at calls in progress, this took minutes.
  EXPECT_LT(took, std::chrono::seconds(180));
}

// Shapes that were quadratic or worse before the checker, the model and replay's teardown
// looked only at live objects and calls in progress (each took from 30 s to minutes here).
TEST(Limits, AdversarialShapesReplayInBoundedTime) {
  struct Shape {
    const char *name;
    std::string body;
    bool passes;
  };
  auto repeat = [](std::size_t n, auto line) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i)
      s += line(i) + "\n";
    return s;
  };
  const Shape shapes[] = {
      {"every backing name registered",
       repeat(kMaxNamesPerKind,
              [](std::size_t i) { return "backing_open B" + std::to_string(i) + " a.dat"; }),
       true},
      {"every handle open on its own file",
       repeat(kMaxNamesPerKind,
              [](std::size_t i) {
                return "open H" + std::to_string(i) + " f" + std::to_string(i) + " rdwr reply=cached";
              }),
       true},
      {"a queue of held writes on one inode lock, as long as the sleeping-call limit allows, "
       "drained by teardown",
       "open D1 c rdwr reply=cached\n" +
           repeat(kMaxCallsAsleep + 1,
                  [](std::size_t i) { return "write_begin W" + std::to_string(i) + " D1"; }),
       true},
      {"a write per statement",
       "open H a rdwr reply=direct_io\n" +
           repeat(kMaxStatements - 2, [](std::size_t) { return std::string("write H"); }),
       true},
      {"more reads asleep on one handle than the sleeping-call limit",
       "open H1 a rdwr reply=cached\nopen H2 a reply=cached\nwrite_begin W1 H1\n" +
           repeat(kMaxCallsAsleep + 100, [](std::size_t) { return std::string("read H2"); }),
       false},
  };
  for (const Shape &sh : shapes) {
    SCOPED_TRACE(sh.name);
    const std::string text = kInit + sh.body;
    const auto start = std::chrono::steady_clock::now();
    const ParseReplayOutcome o = parse_and_replay(text, "shape.trace");
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(o.parsed) << o.parse_error;
    EXPECT_EQ(o.passed, sh.passes);
    if (!sh.passes) {
      EXPECT_EQ(o.failures, 100u) << "one invalid read per read past the limit";
    }
    expect_fuzzer_properties(o);
    EXPECT_LT(took, std::chrono::seconds(60));
  }
}

// explain's tables grow with steps x objects: past its row budget the steps are still explained,
// without their tables.
TEST(Limits, ExplainKeepsAtMostItsTableRows) {
  std::string text = kInit;
  for (int i = 0; i < 1500; ++i)
    text += "open H" + std::to_string(i) + " f" + std::to_string(i) + " rdwr reply=cached\n";
  const Trace t = expect_parses(text);
  const Explanation e = explain_trace(t, t.profile);
  EXPECT_TRUE(e.passed());
  std::size_t rows = 0, omitted = 0;
  for (const ExplainedStep &s : e.steps) {
    rows += s.state.inodes.size() + s.state.backings.size() + s.state.files.size() +
            s.state.ids.size() + s.state.asleep.size();
    omitted += s.state_omitted;
    EXPECT_FALSE(s.rule.empty()) << s.statement;
  }
  EXPECT_LE(rows, kExplainMaxStateRows);
  EXPECT_GT(omitted, 0u);
  EXPECT_TRUE(e.steps.back().state_omitted);
  EXPECT_FALSE(e.steps.front().state_omitted);
}

// ---- per-run limits ------------------------------------------------------------------------

std::string load_error(const std::vector<std::string> &paths) {
  auto r = load_traces(paths);
  if (auto *f = std::get_if<LoadFailure>(&r))
    return f->message;
  return "";
}

TEST(Limits, TracesPerRun) {
  TempDir d;
  for (std::size_t i = 0; i <= kMaxTracesPerRun; ++i)
    std::ofstream(d.path() / ("t" + std::to_string(i) + ".trace")) << "fpsim-trace 1\n";
  const std::string e = load_error({d.path().string()});
  EXPECT_EQ(e.rfind(d.path().string() + "/t", 0), 0u) << e;
  EXPECT_TRUE(contains(e, ".trace:1:1: more than 10000 traces in one run"));
  fs::remove(d.path() / "t0.trace");
  EXPECT_EQ(load_error({d.path().string()}), "");
}

TEST(Limits, BytesPerRun) {
  TempDir d;
  // Sparse files: each at the per-file limit, together over the run's.
  const std::size_t n = kMaxBytesPerRun / kMaxTraceBytes + 1;
  for (std::size_t i = 0; i < n; ++i) {
    const fs::path p = d.path() / ("t" + std::to_string(100 + i) + ".trace");
    std::ofstream(p) << "fpsim-trace 1\n";
    fs::resize_file(p, kMaxTraceBytes);
  }
  const std::string e = load_error({d.path().string()});
  EXPECT_EQ(e, (d.path() / ("t" + std::to_string(100 + n - 1) + ".trace")).string() +
                   ":1:1: the traces of this run add up to more than 268435456 bytes: at most "
                   "256 MiB of traces per run");
}

TEST(Limits, LinesPerRun) {
  TempDir d;
  // Files that count half the run's lines each (each within the per-trace limit; the run
  // counts the empty text after a file's last line end as a line): the third one's first line
  // is one too many.
  static_assert(kMaxLinesPerRun / 2 <= kMaxLines);
  const std::string big = "fpsim-trace 1\n" + std::string(kMaxLinesPerRun / 2 - 2, '\n');
  const std::size_t n = 3;
  for (std::size_t i = 0; i < n; ++i)
    std::ofstream(d.path() / ("t" + std::to_string(i) + ".trace")) << big;
  const std::string e = load_error({d.path().string()});
  EXPECT_TRUE(contains(e, ":1:1: the traces of this run have more than 2000000 lines"));
}

} // namespace
