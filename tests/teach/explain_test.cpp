// fpsim explain: each statement's rule names the kernel function that decided it, the "why" says
// what the state was, the state tables name every holder, the JSON parses, and the CLI's exit
// codes are those of replay.
#include "sim/exec/replay.h"
#include "sim/exec/sim_executor.h"
#include "sim/teach/explain.h"
#include "sim/trace/parser.h"
#include "tests/traces.h"
#include "tools/fpsim/explain_cmd.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <regex>

using namespace fpsim;
using namespace fpsim::sim;

namespace {

using test::contains;
using test::load_ok;
using test::parse_ok;
using test::traces_in;

Explanation explain(const std::string &text) {
  const Trace t = parse_ok(text);
  return explain_trace(t, t.profile);
}

// The step of the trace's statement at this line (not a teardown step).
const ExplainedStep &at(const Explanation &e, int line) {
  for (const ExplainedStep &s : e.steps)
    if (!s.teardown && s.line == line)
      return s;
  ADD_FAILURE() << "no step at line " << line;
  static const ExplainedStep none;
  return none;
}

// A rule names the kernel: a fuse_* function, or one of the VFS/mm functions whose rules the
// model follows (the path walk, fd lookup, the inode lock, the page cache, umount).
bool names_kernel_function(const std::string &rule) {
  static const std::regex fuse(R"(\bfuse_[a-z_]+)");
  static const std::regex other(
      R"(\b(fdget|vfs_read|vfs_write|do_mmap|vm_munmap|vma_close|generic_read_dir|)"
      R"(generic_file_mmap|filemap_read|invalidate_inode_pages2|inode_lock|inode_lock_shared|)"
      R"(inode_unlock|do_truncate|path_openat|open_last_lookups|path_umount|)"
      R"(backing_file_open|backing_file_mmap|idr_alloc_cyclic|process_init_reply)\b)");
  return std::regex_search(rule, fuse) || std::regex_search(rule, other);
}

// Line numbers in the inline traces below: the header is two lines.
const char *kRefusals = R"(fpsim-trace 1
init passthrough max_stack_depth=1
backing_open B1 a.dat => id=1
backing_open B2 b.dat => id=2
open P1 a rdwr reply=passthrough@B1 => ok
open X1 a reply=passthrough@B2 => EIO +release
open X2 a reply=cached => EIO +release
open C1 c reply=cached => ok
open X3 c reply=passthrough@B1 => EIO +release
open X4 d reply=passthrough@id=0 => EIO +release
open X5 d reply=passthrough@id=7 => EIO +release
open X6 d reply=passthrough|keep_cache@B1 => EIO +release
open E1 d reply=error:EACCES => EACCES
read P1 => backing
read C1 => fuse
read C1 => fuse
close P1 => ok
)";

TEST(Explain, RefusedPassthroughOpenNamesUncachedIoStartAndEbusy) {
  const Explanation e = explain(kRefusals);
  ASSERT_TRUE(e.passed());
  const ExplainedStep &s = at(e, 6);
  EXPECT_EQ(s.outcome, "EIO +release (internal EBUSY)");
  EXPECT_EQ(s.rule, "fuse_inode_uncached_io_start");
  EXPECT_TRUE(contains(s.why, "inode a already holds backing object B1"));
  EXPECT_TRUE(contains(s.why, "the reply names B2"));
  EXPECT_TRUE(contains(s.why, "-> EBUSY, which open(2) reports as EIO"));
  EXPECT_TRUE(contains(s.why, "RELEASE"));
}

TEST(Explain, CachedOpenOnPassthroughInodeNamesFileIoOpenAndEinval) {
  const Explanation e = explain(kRefusals);
  const ExplainedStep &s = at(e, 7);
  EXPECT_EQ(s.rule, "fuse_file_io_open");
  EXPECT_TRUE(contains(s.why, "inode a is in passthrough mode (PT(B1,1))"));
  EXPECT_TRUE(contains(s.why, "lacks FOPEN_PASSTHROUGH"));
  EXPECT_TRUE(contains(s.why, "-> EINVAL"));
}

TEST(Explain, EveryOtherRefusalNamesItsRule) {
  const Explanation e = explain(kRefusals);
  // A passthrough open of a cached inode.
  EXPECT_EQ(at(e, 9).rule, "fuse_inode_uncached_io_start");
  EXPECT_TRUE(contains(at(e, 9).why, "CACHED(1)"));
  EXPECT_TRUE(contains(at(e, 9).why, "-> ETXTBSY"));
  // Bad ids.
  EXPECT_EQ(at(e, 10).rule, "fuse_passthrough_open");
  EXPECT_TRUE(contains(at(e, 10).why, "-> EINVAL"));
  EXPECT_EQ(at(e, 11).rule, "fuse_passthrough_open");
  EXPECT_TRUE(contains(at(e, 11).why, "fuse_backing_lookup finds no backing object under id 7"));
  EXPECT_TRUE(contains(at(e, 11).why, "-> ENOENT"));
  // A flag outside FOPEN_PASSTHROUGH_MASK.
  EXPECT_EQ(at(e, 12).rule, "fuse_file_passthrough_open");
  EXPECT_TRUE(contains(at(e, 12).why, "keep_cache"));
  // The server's own error: no RELEASE.
  EXPECT_EQ(at(e, 13).rule, "fuse_file_open");
  EXPECT_TRUE(contains(at(e, 13).why, "EACCES"));
  EXPECT_TRUE(contains(at(e, 13).why, "no RELEASE"));
}

TEST(Explain, SuccessfulStepsNameTheirTransition) {
  const Explanation e = explain(kRefusals);
  EXPECT_EQ(at(e, 2).rule, "process_init_reply");
  EXPECT_EQ(at(e, 3).rule, "fuse_backing_open");
  EXPECT_TRUE(contains(at(e, 3).why, "registered it as id 1"));
  const ExplainedStep &pt = at(e, 5);
  EXPECT_EQ(pt.rule, "fuse_passthrough_open + fuse_inode_uncached_io_start");
  EXPECT_TRUE(contains(pt.why, "inode a attaches B1"));
  EXPECT_TRUE(contains(pt.why, "iocachectr 0 -> -1"));
  EXPECT_TRUE(contains(pt.why, "B1 refcount 1 -> 2"));
  const ExplainedStep &cached = at(e, 8);
  EXPECT_EQ(cached.rule, "fuse_file_cached_io_open");
  EXPECT_TRUE(contains(cached.why, "first cached open, inode c enters cached io mode"));
  EXPECT_TRUE(contains(cached.why, "iocachectr 0 -> 1"));
  EXPECT_EQ(at(e, 14).rule, "fuse_passthrough_read_iter");
  EXPECT_TRUE(contains(at(e, 14).why, "served by the backing file a.dat"));
  EXPECT_EQ(at(e, 15).rule, "fuse_cache_read_iter");
  EXPECT_TRUE(contains(at(e, 15).why, "a READ goes to the server"));
  // The page is now uptodate: the second read is served from the page cache alone.
  EXPECT_TRUE(contains(at(e, 16).why, "without a request to the server"));
  // The last close detaches the fb and puts the inode's reference.
  const ExplainedStep &close = at(e, 17);
  EXPECT_EQ(close.rule, "fuse_release -> fuse_inode_uncached_io_end");
  bool detached = false;
  for (const auto &x : close.effects)
    detached = detached || (contains(x, "detaches B1") && contains(x, "iocachectr -1 -> 0"));
  EXPECT_TRUE(detached);
}

TEST(Explain, StateTablesNameEveryHolder) {
  const Explanation e = explain(kRefusals);
  const StateTables &s = at(e, 5).state;
  ASSERT_EQ(s.inodes.size(), 1u);
  EXPECT_EQ(s.inodes[0].name, "a");
  EXPECT_EQ(s.inodes[0].ctr, -1);
  EXPECT_EQ(s.inodes[0].mode, "PT(B1,1)");
  EXPECT_EQ(s.inodes[0].fb, "B1");
  ASSERT_EQ(s.backings.size(), 2u);
  EXPECT_EQ(s.backings[0].name, "B1");
  EXPECT_EQ(s.backings[0].refs, 2);
  EXPECT_EQ(s.backings[0].holders, (std::vector<std::string>{"id map (id 1)", "inode a"}));
  EXPECT_EQ(s.backings[1].holders, (std::vector<std::string>{"id map (id 2)"}));
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_EQ(s.files[0].handle, "P1");
  EXPECT_EQ(s.files[0].iomode, "uncached");
  EXPECT_EQ(s.files[0].passthrough, "B1");
  EXPECT_EQ(s.files[0].alive_by, (std::vector<std::string>{"fd"}));
  ASSERT_EQ(s.ids.size(), 2u);
  EXPECT_EQ(s.ids[0].backing, "B1");
  EXPECT_EQ(s.next_id, 3);
  // A refused open leaves the state as it was.
  EXPECT_EQ(at(e, 6).state, s);
}

TEST(Explain, MappingKeepsFileAliveAndBlockedCallsSayWhatWakesThem) {
  const Explanation e = explain(R"(fpsim-trace 1
init passthrough max_stack_depth=1 direct_io_allow_mmap
open C1 a reply=cached => ok
mmap M1 C1 private => ok
close C1 => ok
open D1 b rdwr reply=direct_io|parallel_direct_writes => ok
write_begin W1 D1 => ok
open C2 b reply=cached => blocks
write_end W1 => fuse
await C2 => ok
munmap M1 => ok
)");
  ASSERT_TRUE(e.passed());
  const ExplainedStep &close = at(e, 5);
  EXPECT_TRUE(contains(close.why, "not released yet"));
  EXPECT_TRUE(contains(close.why, "mapping M1"));
  ASSERT_EQ(close.state.files.size(), 1u);
  EXPECT_EQ(close.state.files[0].alive_by, (std::vector<std::string>{"mapping M1"}));

  const ExplainedStep &write = at(e, 7);
  EXPECT_EQ(write.rule, "fuse_dio_lock + fuse_inode_uncached_io_start");
  EXPECT_TRUE(contains(write.why, "iocachectr 0 -> -1"));

  const ExplainedStep &blocked = at(e, 8);
  EXPECT_EQ(blocked.outcome, "blocks");
  EXPECT_EQ(blocked.rule, "fuse_file_cached_io_open");
  EXPECT_TRUE(contains(blocked.why, "direct_io_waitq"));
  EXPECT_TRUE(contains(blocked.why, "write_end W1"));
  ASSERT_EQ(blocked.state.asleep.size(), 1u);
  EXPECT_TRUE(contains(blocked.state.asleep[0], "C2"));

  const ExplainedStep &end = at(e, 9);
  EXPECT_EQ(end.rule, "fuse_dio_unlock + fuse_inode_uncached_io_end");
  bool woke = false;
  for (const auto &x : end.effects)
    woke = woke || (contains(x, "woke the open C2") && contains(x, "await C2 returns ok"));
  EXPECT_TRUE(woke);

  const ExplainedStep &await = at(e, 10);
  EXPECT_EQ(await.rule, "fuse_file_cached_io_open");
  EXPECT_TRUE(contains(await.why, "blocked at line 8 and was woken at line 9"));

  const ExplainedStep &munmap = at(e, 11);
  EXPECT_EQ(munmap.rule, "vma_close -> fuse_release -> fuse_file_cached_io_release");
  EXPECT_TRUE(contains(munmap.why, "last reference"));
}

TEST(Explain, IoctlErrorsNameTheirCheck) {
  const Explanation e = explain(R"(fpsim-trace 1
backing_open B0 a.dat => EPERM
init passthrough max_stack_depth=1
backing_open B1 a.dat flags=1 => EINVAL
backing_open B2 dir => EISDIR
backing_open B3 a.dat unprivileged => EPERM
backing_close id=0 => EINVAL
backing_close id=5 => ENOENT
)");
  ASSERT_TRUE(e.passed());
  EXPECT_TRUE(contains(at(e, 2).rule, "fuse_get_dev"));
  EXPECT_EQ(at(e, 4).rule, "fuse_backing_open");
  EXPECT_TRUE(contains(at(e, 4).why, "flags=1"));
  EXPECT_TRUE(contains(at(e, 5).why, "regular files"));
  EXPECT_TRUE(contains(at(e, 6).why, "CAP_SYS_ADMIN"));
  EXPECT_EQ(at(e, 7).rule, "fuse_backing_close");
  EXPECT_TRUE(contains(at(e, 8).why, "not in the id map"));
}

// The corpus: every statement gets a rule; every refusal and every sleep names a kernel
// function; the verdict is replay's.
// must_pass: the corpus must replay clean (traces/spec); elsewhere the verdict must only be
// replay's own (a regression trace may wait for a model fix).
void check_corpus(const std::string &dir, std::size_t at_least, bool must_pass) {
  const std::vector<std::string> paths = traces_in(dir);
  EXPECT_GE(paths.size(), at_least) << dir;
  for (const std::string &path : paths) {
    const Trace t = load_ok(path);
    const Explanation e = explain_trace(t, t.profile);
    SimExecutor plain;
    const ReplayResult r = replay(t, plain, t.profile);
    EXPECT_EQ(e.passed(), r.passed()) << path;
    EXPECT_EQ(e.failures.size(), r.failures.size()) << path;
    if (must_pass) {
      EXPECT_TRUE(e.passed()) << path;
    }
    std::size_t statements = 0;
    std::size_t steps = 0;
    for (const ExplainedStep &s : e.steps) {
      statements += !s.teardown;
      steps += !s.check;
      const std::string where = path + ":" + std::to_string(s.line) + ": " + s.statement;
      EXPECT_FALSE(s.rule.empty()) << where;
      EXPECT_FALSE(s.why.empty()) << where;
      if (s.kind == Outcome::Kind::Errno || s.kind == Outcome::Kind::Blocks) {
        EXPECT_TRUE(names_kernel_function(s.rule)) << where << ": rule '" << s.rule << "'";
      }
      if (must_pass) {
        EXPECT_TRUE(s.violations.empty()) << where;
      }
    }
    EXPECT_EQ(statements, t.statements.size()) << path;
    EXPECT_EQ(steps, r.steps) << path;
  }
}

TEST(Explain, SpecCorpusEveryStatementHasAKernelRule) {
  check_corpus(FPSIM_SOURCE_DIR "/traces/spec", 45, true);
}

TEST(Explain, TutorialCorpusEveryStatementHasAKernelRule) {
  if (!std::filesystem::is_directory(FPSIM_SOURCE_DIR "/traces/tutorial"))
    GTEST_SKIP() << "no traces/tutorial";
  check_corpus(FPSIM_SOURCE_DIR "/traces/tutorial", 1, true);
}

TEST(Explain, OtherCorporaEveryStatementHasAKernelRule) {
  check_corpus(FPSIM_SOURCE_DIR "/traces/regressions", 1, false);
  check_corpus(FPSIM_SOURCE_DIR "/traces/recorded", 1, false);
}

TEST(Explain, JsonParsesForEveryTrace) {
  for (const std::string &path : traces_in(FPSIM_SOURCE_DIR "/traces")) {
    const Trace t = load_ok(path);
    const Explanation e = explain_trace(t, t.profile);
    const std::string text = tools::render_explanation_json(e);
    EXPECT_EQ(text.find('\n'), std::string::npos) << path << ": one object per line";
    const nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_EQ(j.at("path"), path);
    SimExecutor plain;
    EXPECT_EQ(j.at("passed"), replay(t, plain, t.profile).passed()) << path;
    ASSERT_EQ(j.at("steps").size(), e.steps.size()) << path;
    for (const auto &s : j.at("steps")) {
      EXPECT_TRUE(s.at("line").is_number());
      EXPECT_TRUE(s.at("statement").is_string());
      EXPECT_TRUE(s.at("outcome").is_string());
      EXPECT_FALSE(s.at("rule").get<std::string>().empty()) << path;
      EXPECT_FALSE(s.at("why").get<std::string>().empty()) << path;
      const auto &st = s.at("state");
      for (const char *k : {"inodes", "backings", "files", "ids", "asleep"})
        EXPECT_TRUE(st.at(k).is_array()) << k;
      EXPECT_TRUE(st.at("conn").is_object());
    }
  }
}

TEST(Explain, TextIsPlainUnlessColoured) {
  const Explanation e = explain(kRefusals);
  const std::string plain = tools::render_explanation_text(e, false, 0);
  const std::string coloured = tools::render_explanation_text(e, true, 80);
  EXPECT_EQ(plain.find('\033'), std::string::npos);
  EXPECT_NE(coloured.find("\033["), std::string::npos);
  EXPECT_TRUE(contains(plain, "rule     fuse_inode_uncached_io_start"));
  // Aligned: the header and the row of the backing table start their columns together.
  EXPECT_TRUE(contains(plain, "backing  name  id  refs  file   references held by\n"
                              "              B1    1   2     a.dat  id map (id 1), inode a\n"));
  EXPECT_TRUE(contains(plain, "PASS inline.trace [6.18]"));
}

// ---- the CLI ----

struct Captured {
  int rc = 0;
  std::string out;
  std::string err;
};

std::string slurp(std::FILE *f) {
  std::string s;
  std::rewind(f);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    s.append(buf, n);
  std::fclose(f);
  return s;
}

Captured run(std::vector<std::string> paths, bool json = false, std::string kernel = "") {
  tools::ExplainArgs a;
  a.paths = std::move(paths);
  a.json = json;
  a.kernel = std::move(kernel);
  a.out = std::tmpfile();
  a.err = std::tmpfile();
  Captured c;
  c.rc = tools::run_explain(a);
  c.out = slurp(a.out);
  c.err = slurp(a.err);
  return c;
}

// A file in dir (a fresh mkdtemp directory, removed when the test ends).
std::string write_temp(const test::TempDir &dir, const std::string &name,
                       const std::string &text) {
  const auto path = (dir.path() / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  return path;
}

TEST(ExplainCli, SpecCorpusExitsZero) {
  const Captured c = run({FPSIM_SOURCE_DIR "/traces/spec"});
  EXPECT_EQ(c.rc, 0) << c.err;
  EXPECT_TRUE(c.err.empty()) << c.err;
  EXPECT_EQ(c.out.find('\033'), std::string::npos) << "no colour when not a terminal";
  EXPECT_TRUE(contains(c.out, " passed, 0 failed\n")) << c.out.substr(c.out.size() - 200);
}

TEST(ExplainCli, JsonIsOneObjectPerTrace) {
  const Captured c = run({FPSIM_SOURCE_DIR "/traces/tutorial"}, true);
  EXPECT_EQ(c.rc, 0) << c.err;
  std::size_t lines = 0;
  std::size_t start = 0;
  while (start < c.out.size()) {
    const std::size_t nl = c.out.find('\n', start);
    const nlohmann::json j = nlohmann::json::parse(c.out.substr(start, nl - start));
    EXPECT_TRUE(j.at("steps").is_array());
    ++lines;
    start = nl + 1;
  }
  EXPECT_EQ(lines, traces_in(FPSIM_SOURCE_DIR "/traces/tutorial").size());
}

TEST(ExplainCli, FailedExpectationIsExplainedAndExitsOne) {
  const test::TempDir dir;
  const std::string path = write_temp(dir, "wrong.trace", R"(fpsim-trace 1
init passthrough max_stack_depth=1
backing_open B1 a.dat => id=1
open C1 a reply=cached => ok
open P1 a reply=passthrough@B1 => ok
)");
  const Captured c = run({path});
  EXPECT_EQ(c.rc, 1);
  EXPECT_TRUE(contains(c.out, "EIO +release (internal ETXTBSY)  !! expected ok"));
  EXPECT_TRUE(contains(c.out, "rule     fuse_inode_uncached_io_start"));
  EXPECT_TRUE(contains(c.out, "FAIL " + path));
  EXPECT_TRUE(contains(c.out, path + ":5: open P1 a rdonly reply=passthrough@B1: expected ok, got "
                                     "EIO +release (internal ETXTBSY)"));
  const Captured j = run({path}, true);
  EXPECT_EQ(j.rc, 1);
  const nlohmann::json doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc.at("passed"), false);
  EXPECT_EQ(doc.at("steps").at(3).at("matched"), false);
  EXPECT_EQ(doc.at("steps").at(3).at("rule"), "fuse_inode_uncached_io_start");
}

TEST(ExplainCli, KernelOverrideExplainsAnotherProfile) {
  const test::TempDir dir;
  const std::string path = write_temp(dir, "pt-read.trace", R"(fpsim-trace 1
init passthrough max_stack_depth=1
backing_open B1 a.dat
open P1 a reply=passthrough@B1
read P1
)");
  const Captured c618 = run({path});
  EXPECT_EQ(c618.rc, 0);
  EXPECT_TRUE(contains(c618.out, "fuse_passthrough_read_iter"));
  const Captured v15 = run({path}, false, "v15");
  EXPECT_EQ(v15.rc, 0);
  EXPECT_TRUE(contains(v15.out, "[v15]"));
  EXPECT_TRUE(contains(v15.out, "still reads them through FUSE"));
}

TEST(ExplainCli, ParseAndUsageErrorsExitTwo) {
  const test::TempDir dir;
  const std::string bad =
      write_temp(dir, "bad.trace", "fpsim-trace 1\ninit passthrough\nfrobnicate x\n");
  const Captured c = run({bad});
  EXPECT_EQ(c.rc, 2);
  EXPECT_TRUE(c.out.empty()) << c.out;
  EXPECT_TRUE(std::regex_search(c.err, std::regex("^" + bad + R"(:3:[0-9]+: .+\n$)"))) << c.err;
  const Captured k = run({FPSIM_SOURCE_DIR "/traces/spec"}, false, "5.10");
  EXPECT_EQ(k.rc, 2);
  EXPECT_TRUE(contains(k.err, "unknown kernel profile '5.10'"));
  const Captured missing = run({"/nonexistent/x.trace"});
  EXPECT_EQ(missing.rc, 2);
  EXPECT_FALSE(missing.err.empty());
}

} // namespace
