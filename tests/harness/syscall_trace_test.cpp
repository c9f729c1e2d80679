// The ptrace recorder (tools/harness/syscall_trace.h) on real programs: a shell and cat (any user),
// signals and the timeout, and libfuse's passthrough_hp serving a private mount to cat (root,
// /dev/fuse, a kernel with FUSE passthrough, and the binary built by
// tools/harness/third_party/build_passthrough_hp.sh; skipped with the reason otherwise).
#include "fuse_proto.h"
#include "syscall_trace.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace fpsim::harness::sctrace {
namespace {

namespace fs = std::filesystem;
namespace proto = fpsim::harness::proto;

struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sctrace-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

template <class T>
std::vector<const T *> payloads(const TraceResult &r, pid_t pid = 0) {
  std::vector<const T *> out;
  for (const Event &e : r.events)
    if (const T *p = std::get_if<T>(&e.payload); p != nullptr && (pid == 0 || e.pid == pid))
      out.push_back(p);
  return out;
}

std::string dump(const TraceResult &r) {
  std::ostringstream out;
  for (const Event &e : r.events)
    out << describe(e) << "\n";
  for (const std::string &w : r.warnings)
    out << "warning: " << w << "\n";
  return out.str();
}

// Not running: reaped, or a zombie that its real parent (init, once the traced shell died) reaps.
bool gone(pid_t pid) {
  std::ifstream stat(fs::path("/proc") / std::to_string(pid) / "stat");
  std::string line;
  if (!std::getline(stat, line))
    return true;
  const std::size_t paren = line.rfind(')');
  return paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z';
}

class SyscallTrace : public ::testing::TestWithParam<bool> {};

// cat of a watched file in a child process: its open, read and close, and the shell's exit code.
TEST_P(SyscallTrace, FollowsChildrenAndDecodesWatchedFiles) {
  TempDir dir;
  const fs::path file = dir.path / "data";
  std::ofstream(file) << "twelve bytes";
  TraceOptions o;
  o.argv = {"sh", "-c", "cat " + file.string() + " >/dev/null; exit 3"};
  o.seccomp = GetParam();
  o.timeout = std::chrono::seconds(20);
  const std::string prefix = dir.path.string() + "/";
  o.watch = [&](std::string_view path) { return path.starts_with(prefix); };
  const TraceResult r = trace(o);
  ASSERT_TRUE(r.started) << r.error;
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.error.empty()) << r.error;
  pid_t cat = 0;
  for (const Event &e : r.events)
    if (std::holds_alternative<ProcessStart>(e.payload))
      cat = e.pid;
  ASSERT_NE(cat, 0) << dump(r);
  EXPECT_EQ(std::get<ProcessStart>(std::find_if(r.events.begin(), r.events.end(), [](const Event &e) {
                                      return std::holds_alternative<ProcessStart>(e.payload);
                                    })->payload).parent,
            r.pid);
  const auto opens = payloads<Open>(r, cat);
  ASSERT_EQ(opens.size(), 1u) << dump(r);
  EXPECT_EQ(opens[0]->path, file.string());
  EXPECT_EQ(opens[0]->resolved, file.string());
  EXPECT_GE(opens[0]->result, 0);
  const auto reads = payloads<Io>(r, cat);
  ASSERT_GE(reads.size(), 1u) << dump(r);
  EXPECT_EQ(reads[0]->result, 12);
  const auto closes = payloads<Close>(r, cat);
  ASSERT_EQ(closes.size(), 1u) << dump(r);
  EXPECT_EQ(closes[0]->fd, opens[0]->result);
  const auto exits = payloads<ProcessExit>(r);
  ASSERT_EQ(exits.size(), 2u) << dump(r);
  for (std::size_t i = 1; i < r.events.size(); ++i)
    EXPECT_EQ(r.events[i].seq, r.events[i - 1].seq + 1);
}

// A signal the tracee sends itself reaches it: handled (the trap), or fatal.
TEST_P(SyscallTrace, PassesSignalsThrough) {
  TraceOptions o;
  o.seccomp = GetParam();
  o.timeout = std::chrono::seconds(20);
  o.argv = {"sh", "-c", "trap 'exit 7' USR1; kill -USR1 $$; sleep 5"};
  TraceResult r = trace(o);
  ASSERT_TRUE(r.started) << r.error;
  EXPECT_EQ(r.exit_code, 7);
  o.argv = {"sh", "-c", "kill -TERM $$"};
  r = trace(o);
  ASSERT_TRUE(r.started) << r.error;
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_EQ(r.exit_code, -1);
}

// Past the timeout every traced process is killed, including a background child.
TEST_P(SyscallTrace, TimeoutKillsTheTree) {
  TraceOptions o;
  o.seccomp = GetParam();
  o.timeout = std::chrono::milliseconds(300);
  o.argv = {"sh", "-c", "sleep 100 & sleep 100; wait"};
  const auto t0 = std::chrono::steady_clock::now();
  const TraceResult r = trace(o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_TRUE(r.started) << r.error;
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  std::set<pid_t> pids;
  for (const Event &e : r.events)
    pids.insert(e.pid);
  EXPECT_GE(pids.size(), 3u) << dump(r); // the shell and both sleeps
  for (pid_t p : pids)
    EXPECT_TRUE(gone(p)) << p;
}

TEST_P(SyscallTrace, CommandNotFound) {
  TraceOptions o;
  o.seccomp = GetParam();
  o.argv = {"/nonexistent/fpsim-no-such-command"};
  const TraceResult r = trace(o);
  EXPECT_FALSE(r.started);
  EXPECT_EQ(r.error, "/nonexistent/fpsim-no-such-command: command not found");
  EXPECT_TRUE(r.events.empty());
}

INSTANTIATE_TEST_SUITE_P(Filter, SyscallTrace, ::testing::Values(true, false),
                         [](const auto &param_info) { return param_info.param ? "seccomp" : "every_syscall"; });

// build_passthrough_hp.sh's binaries: "stock" or "per-open-id".
fs::path passthrough_hp(const std::string &variant) {
  const char *xdg = std::getenv("XDG_CACHE_HOME");
  const char *home = std::getenv("HOME");
  const fs::path cache = xdg != nullptr && *xdg != '\0' ? fs::path(xdg) : fs::path(home != nullptr ? home : "/") / ".cache";
  return cache / "fpsim/libfuse" / ("build-" + variant) / "example/passthrough_hp";
}

// passthrough_hp serving src/ (one file, a) on mnt/ in this test process's own mount namespace
// (ctest runs each test in its own process), with a client shell snippet run once it is mounted.
class PassthroughHp : public ::testing::Test {
protected:
  void SetUp() override {
    if (geteuid() != 0)
      GTEST_SKIP() << "needs root (mounts FUSE in a private mount namespace)";
    if (access("/dev/fuse", R_OK | W_OK) != 0)
      GTEST_SKIP() << "no /dev/fuse";
    for (const char *variant : {"stock", "per-open-id"})
      if (access(passthrough_hp(variant).c_str(), X_OK) != 0)
        GTEST_SKIP() << passthrough_hp(variant).string() << " not built: run tools/harness/third_party/build_passthrough_hp.sh";
    ASSERT_EQ(unshare(CLONE_NEWNS), 0) << std::strerror(errno);
    ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << std::strerror(errno);
    fs::create_directories(src);
    fs::create_directories(mnt);
    std::ofstream(src / "a") << "hello\n";
  }

  // $M is the mount in `client`; the result is the client's exit status.
  TraceResult run(const std::string &variant, const std::string &client) {
    const std::string script = "\"$0\" --foreground \"$1\" \"$2\" & M=$2; "
                               "for i in $(seq 200); do grep -q \" $M fuse\" /proc/self/mounts && break; sleep 0.05; done; " +
                               client + "; s=$?; umount \"$M\"; wait; exit $s";
    TraceOptions o;
    o.argv = {"sh", "-c", script, passthrough_hp(variant).string(), src.string(), mnt.string()};
    o.timeout = std::chrono::seconds(60);
    const std::string client_prefix = mnt.string() + "/";
    o.watch = [client_prefix](std::string_view path) { return path.starts_with(client_prefix); };
    return trace(o);
  }

  static bool kernel_offers_passthrough(const TraceResult &r) {
    for (const FuseRequest *q : payloads<FuseRequest>(r))
      if (q->opcode == proto::INIT)
        return (std::get<InitIn>(q->body).flags & proto::init_flag::PASSTHROUGH) != 0;
    return false;
  }

  TempDir dir;
  const fs::path src = dir.path / "src", mnt = dir.path / "mnt";
};

constexpr const char *kNoPassthrough = "the kernel does not offer FUSE_PASSTHROUGH (CONFIG_FUSE_PASSTHROUGH, Linux 6.9+)";

// libfuse's passthrough_hp, unmodified; cat reads a file through it twice. The recorder must see
// INIT negotiate passthrough, the BACKING_OPEN of the source file with the id the OPEN reply then
// names with FOPEN_PASSTHROUGH, and the BACKING_CLOSE at the release.
TEST_F(PassthroughHp, ServesCat) {
  const TraceResult r = run("stock", "cat \"$M/a\" && cat \"$M/a\"");
  ASSERT_TRUE(r.started) << r.error;
  ASSERT_FALSE(r.timed_out) << dump(r);
  ASSERT_EQ(r.exit_code, 0) << dump(r);
  if (!kernel_offers_passthrough(r))
    GTEST_SKIP() << kNoPassthrough;

  // In event order: every OPEN reply names FOPEN_PASSTHROUGH and an id that a BACKING_OPEN of the
  // source file returned before it; every BACKING_CLOSE closes such an id. passthrough_hp keeps one
  // id per inode while it is open, so the two cats, one after the other, get two ids.
  const InitOut *init_out = nullptr;
  std::set<long> ids;
  int open_replies = 0, backing_closes = 0;
  for (const Event &e : r.events) {
    if (const auto *reply = std::get_if<FuseReply>(&e.payload)) {
      if (reply->opcode == proto::INIT)
        init_out = &std::get<InitOut>(reply->body);
      if (reply->opcode != proto::OPEN)
        continue;
      ++open_replies;
      EXPECT_EQ(reply->error, 0) << describe(e);
      const OpenOut &out = std::get<OpenOut>(reply->body);
      EXPECT_NE(out.open_flags & proto::fopen::PASSTHROUGH, 0u) << describe(e);
      EXPECT_TRUE(ids.contains(out.backing_id)) << describe(e) << "\n" << dump(r);
      EXPECT_EQ(reply->result, static_cast<long>(reply->len)) << describe(e);
    } else if (const auto *b = std::get_if<BackingOpen>(&e.payload)) {
      EXPECT_GT(b->result, 0) << describe(e);
      EXPECT_EQ(b->backing_path, (src / "a").string()) << describe(e);
      ids.insert(b->result);
    } else if (const auto *c = std::get_if<BackingClose>(&e.payload)) {
      ++backing_closes;
      EXPECT_TRUE(ids.contains(c->id)) << describe(e);
      EXPECT_EQ(c->result, 0) << describe(e);
    }
  }
  ASSERT_NE(init_out, nullptr) << dump(r);
  EXPECT_NE(init_out->flags & proto::init_flag::PASSTHROUGH, 0u) << dump(r);
  EXPECT_GE(init_out->max_stack_depth, 1u);
  EXPECT_EQ(open_replies, 2) << dump(r);
  EXPECT_EQ(ids.size(), 2u) << dump(r);
  EXPECT_EQ(backing_closes, 2) << dump(r);

  // Both cats opened the file in the mount, each open returning after its OPEN reply was entered
  // (the two may be seen in either order); passthrough_hp read /dev/fuse from its worker threads.
  std::vector<std::chrono::nanoseconds> replies_entered, opens_returned;
  for (const Event &e : r.events) {
    EXPECT_LE(e.entered, e.time) << describe(e);
    if (const auto *reply = std::get_if<FuseReply>(&e.payload); reply != nullptr && reply->opcode == proto::OPEN)
      replies_entered.push_back(e.entered);
    if (const auto *open = std::get_if<Open>(&e.payload); open != nullptr && open->resolved == (mnt / "a").string())
      opens_returned.push_back(e.time);
  }
  ASSERT_EQ(opens_returned.size(), 2u) << dump(r);
  ASSERT_EQ(replies_entered.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_LT(replies_entered[i], opens_returned[i]) << dump(r);
  std::set<pid_t> readers;
  for (const Event &e : r.events)
    if (std::holds_alternative<FuseRequest>(e.payload))
      readers.insert(e.tid);
  EXPECT_GE(readers.size(), 1u);
  std::cout << "passthrough_hp: " << r.events.size() << " events, " << readers.size() << " threads read /dev/fuse, "
            << r.warnings.size() << " warnings\n";
  for (const std::string &w : r.warnings)
    std::cout << "  warning: " << w << "\n";
}


// With the per-open-id patch (libfuse issue #1125's policy), a second open while the first is held
// names a second backing object: the kernel refuses it (EBUSY inside, EIO to open(2)) and sends
// RELEASE. The recorder sees both ids, both OPEN replies, the client's EIO and the RELEASE.
TEST_F(PassthroughHp, PerOpenIdSecondOpenFails) {
  const TraceResult r = run("per-open-id", "exec 3<\"$M/a\"; cat \"$M/a\"; s=$?; exec 3<&-; test $s -ne 0");
  ASSERT_TRUE(r.started) << r.error;
  ASSERT_FALSE(r.timed_out) << dump(r);
  if (!kernel_offers_passthrough(r))
    GTEST_SKIP() << kNoPassthrough;
  ASSERT_EQ(r.exit_code, 0) << "cat did not fail\n" << dump(r);
  std::vector<long> ids;
  for (const BackingOpen *b : payloads<BackingOpen>(r))
    ids.push_back(b->result);
  EXPECT_EQ(ids, (std::vector<long>{1, 2})) << dump(r);
  std::vector<std::int32_t> replied;
  std::vector<std::uint64_t> handles;
  for (const FuseReply *reply : payloads<FuseReply>(r))
    if (reply->opcode == proto::OPEN) {
      replied.push_back(std::get<OpenOut>(reply->body).backing_id);
      handles.push_back(std::get<OpenOut>(reply->body).fh);
    }
  EXPECT_EQ(replied, (std::vector<std::int32_t>{1, 2})) << dump(r);
  std::vector<long> client_opens;
  for (const Open *open : payloads<Open>(r))
    if (open->path == (mnt / "a").string())
      client_opens.push_back(open->result);
  ASSERT_EQ(client_opens.size(), 2u) << dump(r);
  EXPECT_GE(client_opens[0], 0);
  EXPECT_EQ(client_opens[1], -EIO) << dump(r);
  // The refused handle is released (and its id closed by the patched server).
  ASSERT_EQ(handles.size(), 2u);
  bool released = false;
  for (const FuseRequest *q : payloads<FuseRequest>(r))
    released |= q->opcode == proto::RELEASE && std::get<ReleaseIn>(q->body).fh == handles[1];
  EXPECT_TRUE(released) << dump(r);
}

} // namespace
} // namespace fpsim::harness::sctrace
