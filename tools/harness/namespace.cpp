#include "namespace.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <vector>

namespace fpsim::harness {
namespace {

constexpr long kFusectlSuperMagic = 0x65735543; // FUSE_CTL_SUPER_MAGIC
constexpr const char *kStandardFusectlDir = "/sys/fs/fuse/connections";

// Exit codes of the child when the namespace itself cannot be set up (sysexits.h EX_OSERR), or when
// the body threw (EX_SOFTWARE), so they cannot be mistaken for a body's verdict.
constexpr int kExitSetupFailed = 71;
constexpr int kExitBodyThrew = 70;

std::string errno_text(const std::string &what, int e) { return what + ": " + std::strerror(e); }

// Appends to the run's error, "; "-separated.
void add_error(IsolatedRun &run, const std::string &e) {
  run.error += (run.error.empty() ? "" : "; ") + e;
}

// A terminal's ^C reaches the whole process group; the janitor and the guardian must outlive it.
void ignore_terminal_signals() {
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
}

// In the child: the namespace cannot be set up.
// Takes errno first: building `what` may allocate, and an allocation may change errno.
[[noreturn]] void setup_failed(const char *what, const std::string &detail = "") {
  const int e = errno;
  std::fprintf(stderr, "fpsim-harness: %s%s: %s\n", what, detail.c_str(), std::strerror(e));
  _exit(kExitSetupFailed);
}

bool is_fusectl(const std::string &dir) {
  struct statfs sfs {};
  return statfs(dir.c_str(), &sfs) == 0 && sfs.f_type == kFusectlSuperMagic;
}

// Shared (MAP_SHARED) between the parent and the child of run_isolated: the child's FuseServers put
// their connections' device numbers here, the parent reads them when the run overruns.
struct ConnectionRegistry {
  static constexpr std::size_t kCapacity = 256;
  std::atomic<std::uint64_t> devs[kCapacity]; // 0: free slot
  std::atomic<int> child_pid{0};  // for the guardian
  std::atomic<int> janitor_pid{0}; // see janitor_main; 0 once reaped
  std::atomic<int> finished{0};   // the parent cleaned up itself: the guardian has nothing to do
  // mkdtemp fills in the name before it creates the directory, so the guardian can always find
  // what a killed parent created.
  char root[32] = "/tmp/fpsim-harness.XXXXXX";
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the registry is shared across processes");

// Set in the child of run_isolated only.
ConnectionRegistry *g_registry = nullptr;

// Tells the janitor to close the child's descriptors now (it also does once it sees the child die).
constexpr int kJanitorGo = SIGUSR1;

// Set by cancel_isolated_runs (from a signal handler).
volatile sig_atomic_t g_cancel = 0;

std::vector<std::uint64_t> registered_connections(const ConnectionRegistry &registry) {
  std::vector<std::uint64_t> devs;
  for (const auto &slot : registry.devs)
    if (std::uint64_t dev = slot.load(); dev != 0)
      devs.push_back(dev);
  return devs;
}

// Aborts the given connections from a short-lived helper process that mounts fusectl on `ctl_dir` in a
// private namespace of its own: the host namespace never sees that mount, and it works whatever state
// the child is in (even half-way through exit, when its namespace is no longer reachable).
void abort_connections(const std::vector<std::uint64_t> &devs, const std::string &ctl_dir,
                       IsolatedRun &run) {
  if (devs.empty())
    return;
  // Built before fork: the helper sticks to plain syscalls.
  std::vector<std::string> paths;
  for (std::uint64_t dev : devs)
    paths.push_back(ctl_dir + "/" + std::to_string(minor(static_cast<dev_t>(dev))) + "/abort");
  pid_t pid = fork();
  if (pid < 0) {
    add_error(run, errno_text("fork (abort helper)", errno));
    return;
  }
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("none", ctl_dir.c_str(), "fusectl", 0, nullptr) != 0)
      _exit(kExitSetupFailed);
    int failed = 0;
    for (const std::string &path : paths) {
      int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      // A missing entry means the connection is already gone, which is what an abort wants anyway.
      if (fd < 0 ? errno != ENOENT : write(fd, "1", 1) != 1)
        ++failed;
      if (fd >= 0)
        close(fd);
    }
    _exit(failed == 0 ? 0 : 1);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  run.emergency_aborts += static_cast<int>(devs.size());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    add_error(run, "emergency abort through fusectl failed");
}

// Whether `pid` has finished dying: gone, or a zombie with no thread left in the kernel. A process
// serving its own mount can sit as a zombie leader whose other threads hang in FUSE requests.
bool fully_exited(pid_t pid) {
  const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  DIR *d = opendir(task_dir.c_str());
  if (d == nullptr)
    return true;
  int threads = 0;
  while (dirent *e = readdir(d))
    threads += e->d_name[0] != '.';
  closedir(d);
  if (threads > 1)
    return false;
  std::FILE *f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr)
    return true;
  char buf[512] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const char *paren = std::strrchr(buf, ')');
  return n == 0 || paren == nullptr || paren[1] == '\0' || paren[2] == 'Z' || paren[2] == 'X';
}

enum class Leader { Running, Exiting, Gone, Unknown };

// The state of `pid`'s leader: exiting once it is in do_exit (PF_EXITING) or a zombie. Plain
// syscalls only, as the janitor calls it. Gone only when /proc says so (ENOENT, or ESRCH for a
// task reaped while being read): no other failure may pass for a death.
Leader leader_state(pid_t pid) {
  constexpr unsigned long kPfExiting = 0x4; // include/linux/sched.h
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ESRCH ? Leader::Gone : Leader::Unknown;
  char buf[1024] = {};
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  const int e = errno;
  close(fd);
  if (n <= 0)
    return n < 0 && e == ESRCH ? Leader::Gone : Leader::Unknown;
  const char *paren = std::strrchr(buf, ')');
  char state = 0;
  unsigned long flags = 0;
  // After the command: state ppid pgrp session tty_nr tpgid flags.
  if (paren == nullptr || std::sscanf(paren + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
    return Leader::Unknown;
  return state == 'Z' || state == 'X' || (flags & kPfExiting) != 0 ? Leader::Exiting : Leader::Running;
}

// Whether `pid` has started to exit but not finished. The leader of a child of run_isolated exits
// only with the whole process, so what keeps it is a thread waiting in the kernel: for a FUSE
// request of its own mount, whose server thread is gone (a connection abort ends that), or for an
// inode state that only the release of one of its own files ends (the janitor ends that).
bool dying_not_exited(pid_t pid) { return !fully_exited(pid) && leader_state(pid) == Leader::Exiting; }

// The janitor shares the child's fd table (CLONE_FILES) from a process of its own, and closes every
// descriptor in it once the child's leader is exiting (or when told to). A dying child cannot always
// get there itself: a cached open(2) waits, uninterruptibly and untouched by a connection abort,
// until no passthrough file of its inode is open (fuse_file_cached_io_open), and when that file is
// in the child's own table, the table is only released after that very thread has returned. Without
// the janitor such a child stays a zombie with a thread in D state, and keeps its mount namespace,
// until the machine reboots. It sleeps in sigtimedwait, so a run pays nothing for it.
[[noreturn]] void janitor_main(pid_t child, ConnectionRegistry &registry) {
  registry.janitor_pid.store(static_cast<int>(getpid()));
  ignore_terminal_signals(); // what the janitor closes it closes for good
  sigset_t go;
  sigemptyset(&go);
  sigaddset(&go, kJanitorGo);
  const timespec slice{0, 100 * 1000 * 1000};
  for (;;) {
    const Leader leader = leader_state(child);
    if (leader == Leader::Exiting || leader == Leader::Gone || sigtimedwait(&go, nullptr, &slice) >= 0)
      break;
  }
  syscall(SYS_close_range, 0U, ~0U, 0U);
  _exit(0);
}

// The guardian outlives a harness that is killed (SIGKILL included) mid-run: when the lifeline
// pipe from the parent breaks without the parent having finished, it kills the child, aborts its
// FUSE connections until every thread of the child has left the kernel, and removes the temporary
// directories. It holds no FUSE file itself, so it can never hang on the connection.
[[noreturn]] void guardian_main(int lifeline, const ConnectionRegistry &registry) {
  ignore_terminal_signals(); // the guardian must survive ^C to clean up
  char c = 0;
  while (read(lifeline, &c, 1) < 0 && errno == EINTR) {
  }
  if (registry.finished.load())
    _exit(0);
  const std::string root(registry.root);
  if (root.find("XXXXXX") != std::string::npos)
    _exit(0); // killed before mkdtemp: nothing was created
  const pid_t child = registry.child_pid.load();
  if (child > 0)
    kill(child, SIGKILL);
  const pid_t janitor = registry.janitor_pid.load();
  if (janitor > 0)
    kill(janitor, kJanitorGo);
  IsolatedRun scratch;
  auto left = [&] {
    return (child > 0 && !fully_exited(child)) || (janitor > 0 && !fully_exited(janitor));
  };
  for (int round = 0; round < 50 && left(); ++round) {
    abort_connections(registered_connections(registry), root + "/ctl", scratch);
    usleep(200 * 1000);
  }
  for (const char *sub : {"/mnt", "/backing", "/ctl", ""})
    rmdir((root + sub).c_str());
  _exit(0);
}

// Runs in the forked child: everything here stays inside the new namespace.
[[noreturn]] void child_main(const std::function<int(const IsolatedDirs &)> &body,
                             const IsolatedDirs &dirs) {
  // If the parent dies (e.g. killed by a test runner) the child, and with it the namespace, must go too.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    setup_failed("prctl(PR_SET_PDEATHSIG)");
  if (unshare(CLONE_NEWNS) != 0)
    setup_failed("unshare(CLONE_NEWNS)");
  // Without this, mounts made below would propagate back to a shared host mount.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    setup_failed("mount(/, MS_REC|MS_PRIVATE)");
  if (mount("fpsim-backing", dirs.backing.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0)
    setup_failed("mount tmpfs on ", dirs.backing);
  // The janitor's parent is the harness (CLONE_PARENT), which reaps it. Its go signal is blocked
  // before the clone, so one sent at once is pending for it, not lost.
  sigset_t go;
  sigset_t old_mask;
  sigemptyset(&go);
  sigaddset(&go, kJanitorGo);
  sigprocmask(SIG_BLOCK, &go, &old_mask);
  const pid_t self = getpid();
  const long janitor = syscall(SYS_clone, CLONE_FILES | CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (janitor == 0)
    janitor_main(self, *g_registry);
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (janitor < 0)
    setup_failed("clone (janitor)");
  g_registry->janitor_pid.store(static_cast<int>(janitor));

  int code = kExitBodyThrew;
  try {
    code = body(dirs);
  } catch (const std::exception &e) {
    std::cerr << "fpsim-harness: isolated body threw: " << e.what() << '\n';
  } catch (...) {
    std::cerr << "fpsim-harness: isolated body threw a non-standard exception\n";
  }

  // The namespace dies with this process anyway; detaching first keeps the teardown independent of
  // how the kernel orders namespace destruction. EINVAL just means "not mounted", ENOENT that a
  // trace unmounted and the mount point went with it.
  for (const std::string *dir : {&dirs.mnt, &dirs.ctl, &dirs.backing}) {
    if (umount2(dir->c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
      std::perror(("fpsim-harness: umount2(" + *dir + ", MNT_DETACH)").c_str());
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  _exit(code);
}

// Whether the child exited within `timeout` (pidfd polls readable once it has). A cancellable wait
// gives up as soon as cancel_isolated_runs() was called; it polls in short slices so that a signal
// landing just before poll(2) is not missed. With `dying` (cancellable waits only) it also gives up,
// setting *dying, once the child was seen dying but not exited on two slices in a row (a process
// that is merely finishing its exit is gone by the second).
bool wait_exit(int pidfd, std::chrono::milliseconds timeout, bool cancellable = false, pid_t pid = 0,
               bool *dying = nullptr) {
  pollfd pfd{pidfd, POLLIN, 0};
  const auto end = std::chrono::steady_clock::now() + timeout;
  int dying_slices = 0;
  for (;;) {
    if (cancellable && g_cancel)
      return false;
    if (dying != nullptr && pid > 0) {
      dying_slices = dying_not_exited(pid) ? dying_slices + 1 : 0;
      if (dying_slices >= 2) {
        *dying = true;
        return false;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    const long slice = std::max<long>(0, cancellable ? std::min<long>(left.count(), 100) : left.count());
    int ready = poll(&pfd, 1, static_cast<int>(slice));
    if (ready > 0)
      return true;
    if (ready < 0 && errno != EINTR)
      return false;
    if (std::chrono::steady_clock::now() >= end)
      return false;
  }
}

// Waits for the child with a deadline; past it, unsticks and kills it. Fills the exit fields of `run`.
void reap_child(pid_t pid, std::chrono::milliseconds timeout, const ConnectionRegistry &registry,
                const std::string &ctl_dir, IsolatedRun &run, const std::function<void()> &on_overrun) {
  // Raw syscall: bookworm's <sys/pidfd.h> declares pidfd_open without C linkage, so C++ cannot link it.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    run.error = errno_text("pidfd_open", errno);
    kill(pid, SIGKILL);
    abort_connections(registered_connections(registry), ctl_dir, run);
  } else {
    bool dying = false;
    if (!wait_exit(pidfd, timeout, true, pid, &dying)) {
      if (on_overrun)
        on_overrun();
      run.cancelled = g_cancel != 0;
      run.dying_stuck = dying && !run.cancelled;
      run.timed_out = !run.cancelled && !run.dying_stuck;
      if (run.dying_stuck)
        run.error = "it began to exit, but a thread of it was stuck in the kernel on its own mount";
      // Stuck calls return once their connection is aborted, and the body may still wind down itself.
      // Not when cancelled: then it is killed first, or the calls the abort releases would let it
      // run on past the statement the interrupt is reported at.
      if (run.cancelled)
        kill(pid, SIGKILL);
      abort_connections(registered_connections(registry), ctl_dir, run);
      if (run.cancelled || !wait_exit(pidfd, std::chrono::milliseconds(2000))) {
        kill(pid, SIGKILL);
        // The dying child can hang on a connection registered after the first abort (see
        // register_fuse_connection); each round aborts what is registered by then.
        for (int round = 0; round < 5 && !wait_exit(pidfd, std::chrono::milliseconds(1000)); ++round)
          abort_connections(registered_connections(registry), ctl_dir, run);
      }
    }
    bool exited = wait_exit(pidfd, std::chrono::milliseconds(0));
    close(pidfd);
    if (!exited) {
      add_error(run, "child " + std::to_string(pid) + " is stuck in the kernel and did not exit");
      return;
    }
  }

  int status = 0;
  pid_t got;
  do {
    got = waitpid(pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  if (got != pid) {
    run.error = errno_text("waitpid", errno);
    return;
  }
  run.exited = true;
  if (WIFEXITED(status))
    run.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    run.signal = WTERMSIG(status);
}

// Reaps `pid`, a child of this process, if it exits within `timeout`.
bool reaped_within(pid_t pid, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const pid_t got = waitpid(pid, nullptr, WNOHANG);
    if (got == pid || (got < 0 && errno == ECHILD))
      return true;
    if (std::chrono::steady_clock::now() >= end)
      return false;
    usleep(1000);
  }
}

// Once the child is gone (or stuck for good): tells the janitor to close what is left of the fd table
// and reaps it (CLONE_PARENT made it this process's child). Closing may send FLUSHes to a server that
// died with the child, so the registered connections are aborted between waits.
void finish_janitor(ConnectionRegistry &registry, const std::string &ctl_dir, IsolatedRun &run) {
  const pid_t janitor = registry.janitor_pid.load();
  if (janitor <= 0)
    return;
  kill(janitor, kJanitorGo);
  bool reaped = reaped_within(janitor, std::chrono::milliseconds(1000));
  for (int round = 0; round < 5 && !reaped; ++round) {
    abort_connections(registered_connections(registry), ctl_dir, run);
    reaped = reaped_within(janitor, std::chrono::milliseconds(1000));
  }
  if (!reaped) {
    run.exited = false;
    add_error(run, "the janitor " + std::to_string(janitor) + " is stuck in the kernel and did not exit");
    return;
  }
  registry.janitor_pid.store(0);
}

} // namespace

void cancel_isolated_runs() noexcept { g_cancel = 1; }

bool isolated_runs_cancelled() noexcept { return g_cancel != 0; }

void register_fuse_connection(dev_t dev) {
  if (g_registry == nullptr)
    return;
  for (auto &slot : g_registry->devs) {
    std::uint64_t expected = 0;
    if (slot.compare_exchange_strong(expected, dev))
      return;
  }
  std::cerr << "fpsim-harness: connection registry full; connection " << minor(dev)
            << " cannot be aborted after a timeout\n";
}

void unregister_fuse_connection(dev_t dev) {
  if (g_registry == nullptr)
    return;
  for (auto &slot : g_registry->devs) {
    std::uint64_t expected = dev;
    if (slot.compare_exchange_strong(expected, 0))
      return;
  }
}

std::string ensure_fusectl(const std::string &fallback_dir, std::string &err) {
  if (is_fusectl(kStandardFusectlDir))
    return kStandardFusectlDir;
  if (fallback_dir.empty()) {
    err = "fusectl is not mounted on " + std::string(kStandardFusectlDir) + " and no fallback dir was given";
    return {};
  }
  if (is_fusectl(fallback_dir))
    return fallback_dir;
  if (mount("none", fallback_dir.c_str(), "fusectl", 0, nullptr) != 0) {
    err = errno_text("mount -t fusectl none " + fallback_dir, errno);
    return {};
  }
  return fallback_dir;
}

int mount_overlay(const std::string &upper, const std::string &at, std::string &err) {
  const std::string lower = upper + ".lower";
  const std::string work = upper + ".work";
  for (const std::string *dir : {&lower, &work, &at}) {
    if (mkdir(dir->c_str(), 0700) != 0) {
      const int e = errno;
      err = errno_text("mkdir " + *dir, e);
      return e;
    }
  }
  const std::string options = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
  if (mount("fpsim-overlay", at.c_str(), "overlay", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    const int e = errno;
    err = errno_text("mount -t overlay -o " + options + " " + at, e);
    return e;
  }
  return 0;
}

int abort_fuse_connection(dev_t dev, const std::string &fusectl_fallback_dir, std::string &err) {
  std::string dir = ensure_fusectl(fusectl_fallback_dir, err);
  if (dir.empty())
    return -ENOENT;
  // fusectl names each connection by the superblock's kernel dev_t; FUSE uses anonymous devices
  // (major 0), for which that number is just the minor.
  std::string path = dir + "/" + std::to_string(minor(dev)) + "/abort";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    err = errno_text("open " + path, e);
    return -e;
  }
  ssize_t n = write(fd, "1", 1);
  int e = errno;
  close(fd);
  if (n != 1) {
    err = n < 0 ? errno_text("write " + path, e) : "short write to " + path;
    return n < 0 ? -e : -EIO;
  }
  return 0;
}

IsolatedRun run_isolated(const std::function<int(const IsolatedDirs &)> &body,
                         std::chrono::milliseconds timeout, const std::function<void()> &on_overrun) {
  IsolatedRun run;
  void *shared = mmap(nullptr, sizeof(ConnectionRegistry), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    run.error = errno_text("mmap (connection registry)", errno);
    return run;
  }
  auto *registry = new (shared) ConnectionRegistry{};
  // Buffered output would otherwise be written twice, once by each process.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);

  // The guardian exists before anything is created, so a parent killed at any point after this
  // leaves nothing behind.
  int lifeline[2] = {-1, -1};
  pid_t guardian = -1;
  if (pipe2(lifeline, O_CLOEXEC) != 0) {
    run.error = errno_text("pipe2 (guardian lifeline)", errno);
  } else {
    guardian = fork();
    if (guardian == 0) {
      close(lifeline[1]);
      guardian_main(lifeline[0], *registry);
    }
    close(lifeline[0]);
    if (guardian < 0) {
      run.error = errno_text("fork (guardian)", errno);
      close(lifeline[1]);
    }
  }

  std::vector<std::string> created;
  IsolatedDirs dirs;
  // mkdtemp creates the directory 0700.
  if (guardian > 0 && mkdtemp(registry->root) == nullptr)
    run.error = errno_text(std::string("mkdtemp ") + registry->root, errno);
  else if (guardian > 0)
    created.push_back(registry->root);
  if (!created.empty()) {
    dirs.root = registry->root;
    run.root = dirs.root;
    dirs.mnt = dirs.root + "/mnt";
    dirs.backing = dirs.root + "/backing";
    dirs.ctl = dirs.root + "/ctl";
    for (const std::string *dir : {&dirs.mnt, &dirs.backing, &dirs.ctl}) {
      if (mkdir(dir->c_str(), 0700) != 0) {
        run.error = errno_text("mkdir " + *dir, errno);
        break;
      }
      created.push_back(*dir);
    }
  }
  if (created.size() == 4) {
    const pid_t pid = fork();
    if (pid < 0) {
      run.error = errno_text("fork", errno);
    } else if (pid == 0) {
      close(lifeline[1]);
      g_registry = registry;
      child_main(body, dirs);
    } else {
      registry->child_pid.store(pid);
      run.started = true;
      reap_child(pid, timeout, *registry, dirs.ctl, run, on_overrun);
      finish_janitor(*registry, dirs.ctl, run);
    }
  }

  // The child's namespace is gone once it has been reaped, so these are plain empty directories here;
  // a failing rmdir (EBUSY, ENOTEMPTY) means something leaked into the host namespace.
  run.cleaned_up = true;
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    // The mount point is gone when a trace unmounted (KernelExecutor removes it).
    if (rmdir(it->c_str()) != 0 && errno != ENOENT) {
      run.cleaned_up = false;
      add_error(run, errno_text("rmdir " + *it, errno));
    }
  }
  if (guardian > 0) {
    registry->finished.store(1);
    close(lifeline[1]);
    while (waitpid(guardian, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  registry->~ConnectionRegistry();
  munmap(shared, sizeof(ConnectionRegistry));
  return run;
}

int child_result_file() {
  char tmpl[] = "/tmp/fpsim-harness-result.XXXXXX";
  const int fd = mkostemp(tmpl, O_CLOEXEC);
  if (fd >= 0)
    unlink(tmpl);
  return fd;
}

std::string read_child_result(int fd) {
  std::string text;
  char buf[65536];
  off_t off = 0;
  for (ssize_t n; (n = ::pread(fd, buf, sizeof buf, off)) > 0; off += n)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return text;
}

bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

} // namespace fpsim::harness
