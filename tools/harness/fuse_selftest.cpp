// fuse-selftest: proves on the running kernel that the harness can drive FUSE passthrough for real.
// Everything runs in a forked child inside a private mount namespace; the parent then checks that no
// mount leaked into the host namespace. Prints one PASS/FAIL line per check; exits 1 on any failure,
// 77 (the automake "skipped" code) when the machine cannot run it.

#include "fuse_proto.h"
#include "fuse_server.h"
#include "namespace.h"
#include "tools/exit_codes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using fpsim::harness::FuseServer;
using fpsim::harness::IsolatedDirs;
using fpsim::harness::ServerParts;
using fpsim::policy::OpenKind;
using fpsim::policy::reply_open;
using fpsim::harness::PendingCall;
using fpsim::harness::SysResult;
using fpsim::harness::sys_result;
namespace proto = fpsim::harness::proto;
namespace fopen = fpsim::harness::proto::fopen;

// Generous for a syscall that should return at once; a FUSE call blocked on the server never will.
constexpr auto kCallDeadline = 2000ms;
// How long a write that ought to be blocked is given before it counts as "in flight".
constexpr auto kBlockedProbe = 300ms;

struct Io {
  SysResult res;
  std::string data;
};

class SelfTest {
public:
  explicit SelfTest(const IsolatedDirs &dirs) : dirs_(dirs) {}
  ~SelfTest() { shutdown(); }
  SelfTest(const SelfTest &) = delete;
  SelfTest &operator=(const SelfTest &) = delete;

  int run();

private:
  void check(const char *id, bool ok, const std::string &detail) {
    std::printf("%s %s %s\n", ok ? "PASS" : "FAIL", id, detail.c_str());
    std::fflush(stdout);
    if (!ok)
      ++failures_;
  }

  // Runs a blocking call with the standard deadline. A call that misses it is kept (so the shutdown
  // can abort the connection and collect it) and reported as nullopt.
  template <class T, class F>
  std::optional<T> timed(F fn) {
    PendingCall<T> call = PendingCall<T>::start(std::move(fn));
    std::optional<T> result = call.wait_for(kCallDeadline);
    if (!result)
      stuck_.push_back(std::make_shared<PendingCall<T>>(std::move(call)));
    return result;
  }

  std::optional<SysResult> open_in_mount(const std::string &name, int flags) {
    std::string path = dirs_.mnt + "/" + name;
    return timed<SysResult>([path, flags] { return sys_result(::open(path.c_str(), flags | O_CLOEXEC)); });
  }

  std::optional<Io> pread_fd(int fd, std::size_t size, off_t offset) {
    return timed<Io>([fd, size, offset] {
      std::string buf(size, '\0');
      ssize_t n = ::pread(fd, buf.data(), size, offset);
      Io io{sys_result(n), {}};
      if (n > 0)
        io.data = buf.substr(0, static_cast<std::size_t>(n));
      return io;
    });
  }

  int track(int fd) {
    if (fd >= 0)
      fds_.push_back(fd);
    return fd;
  }
  // The fd an open returned (tracked), or -1.
  int track(const std::optional<SysResult> &opened) {
    return track(opened && opened->ok() ? static_cast<int>(opened->ret) : -1);
  }
  // Returns close(2)'s errno (0 on success); the fd is gone either way.
  int close_fd(int &fd) {
    if (fd < 0)
      return 0;
    std::erase(fds_, fd);
    int e = ::close(fd) == 0 ? 0 : errno;
    fd = -1;
    return e;
  }

  bool make_backing_file(const std::string &name, const std::string &content, int &fd);
  int start(int bk_a);
  int check_opens(int bk_a, int bk_b, int &pa);
  void check_backing_and_writes();
  void check_abort_and_teardown(int pa);
  void shutdown();

  const IsolatedDirs &dirs_;
  std::shared_ptr<fpsim::policy::ScriptedPolicy> script_ = std::make_shared<fpsim::policy::ScriptedPolicy>();
  std::unique_ptr<FuseServer> server_;
  int failures_ = 0;
  std::vector<int> fds_;
  // Type-erased holders of calls that missed their deadline.
  std::vector<std::shared_ptr<void>> stuck_;
};

std::string describe(const std::optional<SysResult> &r) {
  if (!r)
    return "timed out (blocked)";
  if (r->ok())
    return "ok (" + std::to_string(r->ret) + ")";
  return std::string("errno ") + std::strerror(r->err);
}

std::string describe_id(int rc) { return rc >= 0 ? "id " + std::to_string(rc) : std::strerror(-rc); }

std::string describe_rc(int rc) { return rc == 0 ? "ok" : std::strerror(-rc); }

std::string printable(const std::string &s) {
  std::string out;
  for (char c : s)
    out += (c == '\n') ? std::string("\\n") : std::string(1, c);
  return '"' + out + '"';
}

bool starts_with(const std::optional<Io> &io, const std::string &prefix) {
  return io && io->res.ok() && io->data.rfind(prefix, 0) == 0;
}

std::string describe(const std::optional<Io> &io) {
  if (!io)
    return "timed out (blocked)";
  if (!io->res.ok())
    return std::string("errno ") + std::strerror(io->res.err);
  return printable(io->data);
}

bool SelfTest::make_backing_file(const std::string &name, const std::string &content, int &fd) {
  std::string path = dirs_.backing + "/" + name;
  fd = track(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd < 0) {
    std::printf("FAIL setup create %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  if (::pwrite(fd, content.data(), content.size(), 0) != static_cast<ssize_t>(content.size())) {
    std::printf("FAIL setup write %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

// Opens and mounts the server: -1 to go on, else the exit code.
int SelfTest::start(int bk_a) {
  std::string err;
  server_ = FuseServer::open(
      ServerParts{fpsim::harness::memory_files({{"a", "FUSE:a\n"}, {"b", "FUSE:b\n"}, {"c", "FUSE:c\n"}}), script_},
      dirs_.ctl, err);
  if (!server_) {
    std::printf("FAIL setup %s\n", err.c_str());
    return fpsim::kExitFailed;
  }

  // Before INIT the device is not installed: the trace layer relies on this EPERM.
  int early = server_->backing_open(bk_a);
  check("(a0)", early == -EPERM, "BACKING_OPEN before mount: " + describe_id(early) + " (want EPERM)");

  fpsim::model::InitReply init;
  init.passthrough = true;
  init.max_stack_depth = 1;
  int rc = server_->mount(dirs_.mnt, init, err);
  if (rc == -ENOTTY) {
    std::printf("SKIP kernel has no FUSE_DEV_IOC_SYNC_INIT (needs Linux 6.18+): %s\n", err.c_str());
    return fpsim::kExitSkip;
  }
  if (rc != 0) {
    std::printf("FAIL setup %s\n", err.c_str());
    return fpsim::kExitFailed;
  }
  return -1;
}

// (a) to (d): -1 to go on, else the exit code; `pa` is a's passthrough fd, for (g).
int SelfTest::check_opens(int bk_a, int bk_b, int &pa) {
  // (a) ids are allocated cyclically from 1.
  const int id1 = server_->backing_open(bk_a);
  if (id1 == -EPERM) {
    std::printf("SKIP passthrough not negotiated: BACKING_OPEN gives EPERM (CONFIG_FUSE_PASSTHROUGH off?)\n");
    return fpsim::kExitSkip;
  }
  int id2 = server_->backing_open(bk_b);
  std::optional<fpsim::harness::KernelInit> offer = server_->kernel_init();
  check("(a)", id1 == 1 && id2 == 2,
        "INIT passthrough depth 1 (kernel offered 7." + std::to_string(offer ? offer->minor : 0) +
            "); BACKING_OPEN: " + describe_id(id1) + ", then " + describe_id(id2) + " (want 1, 2)");

  // (b) a passthrough open reads the backing file, and the server sees no READ.
  script_->script(OpenKind::Open, "a", reply_open(fopen::PASSTHROUGH, id1));
  std::optional<SysResult> pa_open = open_in_mount("a", O_RDONLY);
  pa = track(pa_open);
  std::uint64_t reads_before = server_->count(proto::READ);
  std::optional<Io> pa_read = pa >= 0 ? pread_fd(pa, 64, 0) : std::nullopt;
  std::uint64_t reads_after = server_->count(proto::READ);
  check("(b)", pa >= 0 && starts_with(pa_read, "BACKING:a") && reads_after == 0,
        "open(a) reply PASSTHROUGH@" + std::to_string(id1) + ": " + describe(pa_open) + "; read: " +
            describe(pa_read) + "; server READs " + std::to_string(reads_before) + " -> " +
            std::to_string(reads_after) + " (want 0)");

  // (c) a cached open of an inode in passthrough mode is refused after the fact: EIO, plus a
  // synchronous RELEASE of the handle the server just gave out.
  script_->script(OpenKind::Open, "a", reply_open(0));
  std::optional<SysResult> second = open_in_mount("a", O_RDONLY);
  // Sampled right after open(2) returned: the synchronous RELEASE is recorded before it is answered.
  const std::vector<fpsim::harness::OpenEvent> opens = server_->open_events();
  const fpsim::harness::OpenEvent *event = opens.empty() ? nullptr : &opens.back();
  bool released = event && event->fh && server_->released(*event->fh);
  track(second);
  check("(c)", second && second->err == EIO && released && event && script_->unscripted() == 0,
        "second open(a) reply cached: " + describe(second) + " (want EIO); RELEASE of fh " +
            (event && event->fh ? std::to_string(*event->fh) : std::string("?")) +
            (released ? " arrived" : " missing") + " before open returned");

  // (d) a cached open of another file is served by the server.
  script_->script(OpenKind::Open, "b", reply_open(0));
  std::optional<SysResult> b_open = open_in_mount("b", O_RDONLY);
  int pb = track(b_open);
  std::uint64_t reads_b0 = server_->count(proto::READ);
  std::optional<Io> b_read = pb >= 0 ? pread_fd(pb, 64, 0) : std::nullopt;
  std::uint64_t reads_b1 = server_->count(proto::READ);
  check("(d)", starts_with(b_read, "FUSE:b") && reads_b1 > reads_b0,
        "open(b) reply cached: " + describe(b_open) + "; read: " + describe(b_read) + "; server READs " +
            std::to_string(reads_b0) + " -> " + std::to_string(reads_b1));
  close_fd(pb);
  return -1;
}

void SelfTest::check_backing_and_writes() {
  // (e) 6.18 accepts only regular files as backing files.
  int dirfd = track(::open(dirs_.backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int pipefd[2] = {-1, -1};
  if (pipe2(pipefd, O_CLOEXEC) == 0) {
    track(pipefd[0]);
    track(pipefd[1]);
  }
  int e_dir = dirfd >= 0 ? server_->backing_open(dirfd) : -EBADFD;
  int e_pipe = pipefd[0] >= 0 ? server_->backing_open(pipefd[0]) : -EBADFD;
  int e_bad = server_->backing_open(-1);
  check("(e)", e_dir == -EISDIR && e_pipe == -EINVAL && e_bad == -EBADF,
        "BACKING_OPEN dir: " + describe_id(e_dir) + ", pipe: " + describe_id(e_pipe) +
            ", fd -1: " + describe_id(e_bad) + " (want EISDIR, EINVAL, EBADF)");
  // (f) a WRITE the server holds keeps write(2) in flight until the server answers.
  script_->script(OpenKind::Open, "c", reply_open(fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES));
  std::optional<SysResult> c_open = open_in_mount("c", O_WRONLY);
  int pc = track(c_open);
  if (pc >= 0) {
    // In place (inside EOF), so the kernel takes the shared inode lock of a parallel direct write.
    FuseServer *server = server_.get();
    auto write_call = std::make_shared<PendingCall<SysResult>>(PendingCall<SysResult>::start([pc, server] {
      server->hold_next_write_of_this_thread(1);
      return sys_result(::pwrite(pc, "HELD", 4, 0));
    }));
    std::optional<SysResult> early_result = write_call->wait_for(kBlockedProbe);
    std::optional<fpsim::harness::HeldWrite> held = server_->wait_held_write(1, kCallDeadline);
    int finish = held ? server_->finish_held_write(held->unique) : -ENOENT;
    std::optional<SysResult> late_result =
        early_result ? early_result : write_call->wait_for(kCallDeadline);
    if (!late_result)
      stuck_.push_back(write_call);
    std::optional<std::string> content = server_->file_content("c");
    check("(f)",
          !early_result && held && finish == 0 && late_result && late_result->ret == 4 &&
              content == "HELD:c\n",
          "open(c) reply DIRECT_IO|PARALLEL_DIRECT_WRITES ok; held write after " +
              std::to_string(kBlockedProbe.count()) + " ms: " + describe(early_result) +
              "; server parked it: " + (held ? "yes" : "no") + "; after release: " +
              describe(late_result) + "; server content " + printable(content.value_or("?")));
  } else {
    check("(f)", false, "open(c) reply DIRECT_IO|PARALLEL_DIRECT_WRITES: " + describe(c_open));
  }
  close_fd(pc);
}

void SelfTest::check_abort_and_teardown(int pa) {
  std::string err;
  // (g) after an abort only metadata is dead: the passthrough fd still reaches the backing file.
  int abort_rc = server_->abort(err);
  script_->script(OpenKind::Open, "b", reply_open(0));
  std::optional<SysResult> after_abort = open_in_mount("b", O_RDONLY);
  track(after_abort);
  std::optional<Io> pa_reread = pa >= 0 ? pread_fd(pa, 64, 0) : std::nullopt;
  bool stopped = server_->wait_stopped(kCallDeadline);
  // Not asserted, reported: close(2) of the PT fd carries the failed FLUSH's errno after an abort.
  int close_err = close_fd(pa);
  check("(g)",
        abort_rc == 0 && after_abort && after_abort->err == ENOTCONN && starts_with(pa_reread, "BACKING:a") &&
            stopped,
        "abort via fusectl: " + (abort_rc == 0 ? std::string("ok") : err) + "; open(b): " +
            describe(after_abort) + " (want ENOTCONN); PT fd read: " + describe(pa_reread) +
            "; server thread ended: " + (stopped ? "yes" : "no") + "; close(PT fd): " +
            (close_err == 0 ? std::string("ok") : std::strerror(close_err)));
  // Teardown recipe: all fds closed, plain umount works even on the aborted connection, then the device.
  for (int fd : std::vector<int>(fds_))
    close_fd(fd);
  int umount_rc = server_->umount(false);
  int close_rc = server_->dev_close();
  std::vector<std::string> problems = server_->problems();
  std::string problem_text = problems.empty() ? "none" : problems.front();
  check("(teardown)", umount_rc == 0 && close_rc == 0 && problems.empty() && stuck_.empty(),
        "umount: " + describe_rc(umount_rc) + ", dev_close: " + describe_rc(close_rc) +
            ", calls still blocked: " +
            std::to_string(stuck_.size()) + ", server anomalies: " + problem_text);
}

int SelfTest::run() {
  int bk_a = -1;
  int bk_b = -1;
  if (!make_backing_file("bk_a", "BACKING:a\n", bk_a) || !make_backing_file("bk_b", "BACKING:b\n", bk_b))
    return fpsim::kExitFailed;

  if (const int rc = start(bk_a); rc >= 0)
    return rc;
  int pa = -1;
  if (const int rc = check_opens(bk_a, bk_b, pa); rc >= 0)
    return rc;
  check_backing_and_writes();
  check_abort_and_teardown(pa);
  return failures_ == 0 ? fpsim::kExitOk : fpsim::kExitFailed;
}

// Runs whatever the checks left behind: stuck calls get the emergency abort, then fds and the server go.
void SelfTest::shutdown() {
  if (!stuck_.empty() && server_) {
    std::string err;
    if (server_->abort(err) != 0)
      std::printf("note: emergency abort failed: %s\n", err.c_str());
  }
  for (int fd : std::vector<int>(fds_))
    close_fd(fd);
  server_.reset();
}

int body(const IsolatedDirs &dirs) {
  SelfTest test(dirs);
  return test.run();
}

// (h): nothing of the run may be visible in the host namespace once the child is gone.
bool host_mounts_clean(const std::string &root, std::string &detail) {
  std::ifstream mounts("/proc/mounts");
  if (!mounts) {
    detail = "cannot read /proc/mounts";
    return false;
  }
  std::string line;
  int fuse_lines = 0;
  while (std::getline(mounts, line)) {
    if (line.find(root) != std::string::npos) {
      detail = "leaked mount: " + line;
      return false;
    }
    if (line.find("fuse") != std::string::npos)
      ++fuse_lines;
  }
  detail = "no mount under " + root + " (" + std::to_string(fuse_lines) +
           " unrelated fuse lines in /proc/mounts)";
  return true;
}

} // namespace

int main() {
  if (geteuid() != 0) {
    std::printf("SKIP fuse-selftest needs root (mounting, BACKING_OPEN needs CAP_SYS_ADMIN)\n");
    return fpsim::kExitSkip;
  }
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    std::printf("SKIP /dev/fuse: %s\n", std::strerror(errno));
    return fpsim::kExitSkip;
  }

  fpsim::harness::IsolatedRun run = fpsim::harness::run_isolated(body, std::chrono::seconds(60));
  if (!run.started) {
    std::printf("FAIL setup %s\n", run.error.c_str());
    return fpsim::kExitFailed;
  }
  if (run.exit_code == fpsim::kExitSkip)
    return fpsim::kExitSkip;

  std::string detail;
  bool clean = host_mounts_clean(run.root, detail) && run.cleaned_up;
  if (!run.cleaned_up)
    detail += "; " + run.error;
  std::printf("%s (h) host namespace after the run: %s\n", clean ? "PASS" : "FAIL", detail.c_str());

  bool child_ok = run.exit_code == fpsim::kExitOk && !run.timed_out && run.signal == 0;
  if (!child_ok) {
    std::printf("FAIL isolated run: exit %d%s%s\n", run.exit_code, run.timed_out ? ", timed out" : "",
                run.signal ? (", signal " + std::to_string(run.signal)).c_str() : "");
  }
  return child_ok && clean ? fpsim::kExitOk : fpsim::kExitFailed;
}
