#include "subprocess.h"

#include "base/assert.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <thread>

namespace fpsim::harness::proc {

int memory_file(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

std::string read_from(int fd, off_t offset) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, offset);
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
    offset += n;
  }
  return out;
}

std::optional<std::string> find_program(const std::string &name) {
  if (name.find('/') != std::string::npos)
    return access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  const char *path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos)
      end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    const std::string full = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st {};
    if (stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(full.c_str(), X_OK) == 0)
      return full;
    start = end + 1;
  }
  return std::nullopt;
}

namespace {

// Runs in the forked child: only async-signal-safe calls until exec. Reports an errno through
// `report` (close-on-exec, so a successful exec closes it with nothing written).
[[noreturn]] void child_failed(int report, int err) {
  (void)!write(report, &err, sizeof err);
  _exit(127);
}

[[noreturn]] void exec_child(const Spawn &s, const char *program, char *const *argv, int report, pid_t parent) {
  auto fail = [report](int err) { child_failed(report, err); };
  // Our own process group: a terminal's SIGINT goes to the harness only, which kills us itself.
  setpgid(0, 0);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
    _exit(127);
  for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD})
    signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  const int devnull = open("/dev/null", O_RDWR);
  const int fds[3] = {s.stdin_fd, s.stdout_fd, s.stderr_fd};
  for (int i = 0; i < 3; ++i)
    if (dup2(fds[i] >= 0 ? fds[i] : devnull, i) < 0)
      fail(errno);
  for (int fd : s.inherit)
    if (fcntl(fd, F_SETFD, 0) != 0)
      fail(errno);
  if (!s.cwd.empty() && chdir(s.cwd.c_str()) != 0)
    fail(errno);
  execv(program, argv);
  child_failed(report, errno);
}

} // namespace

std::optional<pid_t> spawn(const Spawn &s, std::string *why) {
  FPSIM_ASSERT(!s.argv.empty(), "spawn needs a program");
  const std::optional<std::string> program = find_program(s.argv[0]);
  if (!program) {
    *why = fmt::format("{}: not found in PATH", s.argv[0]);
    return std::nullopt;
  }
  std::vector<char *> argv;
  for (const std::string &a : s.argv)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    *why = fmt::format("pipe: {}", std::strerror(errno));
    return std::nullopt;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    *why = fmt::format("fork: {}", std::strerror(errno));
    close(report[0]);
    close(report[1]);
    return std::nullopt;
  }
  if (pid == 0)
    exec_child(s, program->c_str(), argv.data(), report[1], parent);
  close(report[1]);
  setpgid(pid, pid); // also here, so that a kill right after spawn already reaches the group
  int err = 0;
  const ssize_t n = read(report[0], &err, sizeof err);
  close(report[0]);
  if (n == static_cast<ssize_t>(sizeof err)) {
    waitpid(pid, nullptr, 0);
    *why = fmt::format("{}: {}", *program, std::strerror(err));
    return std::nullopt;
  }
  return pid;
}

std::string Exit::describe() const {
  if (cancelled)
    return "interrupted";
  if (timed_out)
    return "timed out";
  if (killed_by_tick)
    return "stopped";
  if (exited)
    return fmt::format("exit {}", code);
  return fmt::format("signal {}", signal);
}

namespace {

Exit decode(int status) {
  Exit e;
  if (WIFEXITED(status)) {
    e.exited = true;
    e.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  }
  return e;
}

// The child is not reaped yet, so -pid is still its group.
Exit kill_and_reap(pid_t pid) {
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return decode(status);
}

} // namespace

Exit wait(pid_t pid, std::chrono::steady_clock::time_point deadline, const std::function<bool()> &stop,
          const std::function<bool()> &tick) {
  for (;;) {
    // WNOWAIT: the ended child stays a zombie, so its pid (= its group's id) cannot be reused
    // while we kill what it left in its group (e.g. apt's helpers).
    siginfo_t info{};
    const int r = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    FPSIM_ASSERT(r == 0 || errno == EINTR, "waitid on our own child");
    if (r == 0 && info.si_pid == pid) {
      kill(-pid, SIGKILL);
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return decode(status);
    }
    Exit e;
    if (stop && stop())
      e.cancelled = true;
    else if (std::chrono::steady_clock::now() >= deadline)
      e.timed_out = true;
    else if (tick && tick())
      e.killed_by_tick = true;
    if (e.cancelled || e.timed_out || e.killed_by_tick) {
      const Exit k = kill_and_reap(pid);
      e.signal = k.signal;
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Exit run(const std::vector<std::string> &argv, std::string *output, std::chrono::seconds timeout,
         const std::function<bool()> &stop, const std::string &cwd) {
  const int out = memory_file("fpsim-vm-output");
  Exit e;
  if (out < 0) {
    *output = fmt::format("memfd_create: {}", std::strerror(errno));
    return e;
  }
  Spawn s;
  s.argv = argv;
  s.cwd = cwd;
  s.stdout_fd = out;
  s.stderr_fd = out;
  std::string why;
  const std::optional<pid_t> pid = spawn(s, &why);
  if (!pid) {
    *output = why;
    close(out);
    return e;
  }
  e = wait(*pid, std::chrono::steady_clock::now() + timeout, stop);
  *output = read_from(out);
  close(out);
  return e;
}

std::string last_line(const std::string &text) {
  std::size_t end = text.size();
  while (end > 0) {
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' '))
      --end;
    const std::size_t start = text.rfind('\n', end == 0 ? 0 : end - 1);
    const std::size_t from = start == std::string::npos ? 0 : start + 1;
    if (end > from)
      return text.substr(from, end - from);
    end = from;
  }
  return "";
}

} // namespace fpsim::harness::proc
