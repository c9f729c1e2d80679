#include "syscall_trace.h"

#include "base/assert.h"
#include "fuse_proto.h"
#include "subprocess.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace fpsim::harness::sctrace {

namespace {

using Clock = std::chrono::steady_clock;
namespace proto = fpsim::harness::proto;

// The syscalls the recorder decodes; with the seccomp filter, the only ones that stop a tracee.
constexpr std::array<long, 17> kTraced = {SYS_read,   SYS_readv, SYS_pread64, SYS_write,  SYS_writev, SYS_pwrite64,
                                          SYS_ioctl,  SYS_open,  SYS_openat,  SYS_close,  SYS_dup,    SYS_dup2,
                                          SYS_dup3,   SYS_mmap,  SYS_munmap,  SYS_splice, SYS_io_uring_setup};

// A classic-BPF program: x86-64 syscalls in kTraced return SECCOMP_RET_TRACE, all else is allowed
// (including other ABIs: their numbers mean other calls).
std::vector<sock_filter> seccomp_program() {
  std::vector<sock_filter> p;
  p.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  p.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  const std::size_t n = kTraced.size();
  for (std::size_t i = 0; i < n; ++i) // a match jumps over the remaining tests and the ALLOW
    p.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(kTraced[i]),
                         static_cast<std::uint8_t>(n - i), 0));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE));
  return p;
}

// What the child reports through its close-on-exec pipe when it cannot exec.
struct ChildFailure {
  int stage; // 0 chdir, 1 PTRACE_TRACEME, 2 seccomp, 3 exec
  int err;
};
constexpr const char *kStageNames[] = {"chdir", "ptrace(PTRACE_TRACEME)", "seccomp filter", "exec"};

[[noreturn]] void child_failed(int report, int stage, int err) {
  const ChildFailure f{stage, err};
  (void)!write(report, &f, sizeof f);
  _exit(127);
}

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void run_child(const char *program, char *const *argv, const char *cwd, const sock_fprog *filter,
                            int report, pid_t parent) {
  auto fail = [report](int stage, int err) { child_failed(report, stage, err); };
  // Its own process group, so that a kill at the timeout reaches what it starts, and it dies with
  // the tracer even before PTRACE_O_EXITKILL is set.
  setpgid(0, 0);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
    _exit(127);
  for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD})
    signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (cwd != nullptr && chdir(cwd) != 0)
    fail(0, errno);
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0)
    fail(1, errno);
  // The tracer sets its options while the child is stopped here: a SECCOMP_RET_TRACE filter
  // without a tracer that asked for seccomp stops would fail every traced call with ENOSYS.
  raise(SIGSTOP);
  if (filter != nullptr && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) != 0) {
    // Without CAP_SYS_ADMIN a filter needs no_new_privs; root keeps setuid helpers working.
    if (errno != EACCES || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) != 0)
      fail(2, errno);
  }
  execv(program, argv);
  child_failed(report, 3, errno);
}

// What an fd of a tracee is: read from /proc before the call uses it (after a close it is gone).
struct FdInfo {
  std::string path; // empty: no such fd
  bool fuse_dev = false;
  bool pipe = false;
};

FdInfo fd_info(pid_t tid, long fd) {
  FdInfo info;
  if (fd < 0)
    return info;
  const std::string link = fmt::format("/proc/{}/fd/{}", tid, fd);
  char buf[4096];
  const ssize_t n = readlink(link.c_str(), buf, sizeof buf);
  if (n <= 0)
    return info;
  info.path.assign(buf, static_cast<std::size_t>(n));
  info.pipe = info.path.rfind("pipe:[", 0) == 0;
  // The device by its number, not only its name (a container may name it otherwise); but stat only
  // what lies under /dev: a stat through the link of a file on a FUSE mount would wait for the
  // server, which may be a tracee stopped for this very tracer.
  struct stat st {};
  info.fuse_dev = info.path == "/dev/fuse" || (info.path.rfind("/dev/", 0) == 0 && stat(link.c_str(), &st) == 0 &&
                                               S_ISCHR(st.st_mode) && st.st_rdev == makedev(10, 229));
  return info;
}

// Up to `len` bytes of the tracee's memory at `addr` (fewer where it is not mapped).
std::string read_memory(pid_t tid, std::uint64_t addr, std::size_t len) {
  std::string out(len, '\0');
  std::size_t got = 0;
  while (got < len) {
    iovec local{out.data() + got, len - got};
    iovec remote{reinterpret_cast<void *>(addr + got), len - got};
    const ssize_t n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
    if (n <= 0)
      break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

// A NUL-terminated string of the tracee (paths: at most PATH_MAX).
std::string read_string(pid_t tid, std::uint64_t addr) {
  std::string s = read_memory(tid, addr, 4096);
  if (const std::size_t nul = s.find('\0'); nul != std::string::npos)
    s.resize(nul);
  return s;
}

// The first `len` bytes an iovec array describes, gathered.
std::string read_iovecs(pid_t tid, std::uint64_t iov_addr, std::uint64_t count, std::size_t len) {
  const std::string raw = read_memory(tid, iov_addr, std::min<std::uint64_t>(count, 1024) * sizeof(iovec));
  std::string out;
  for (std::size_t off = 0; off + sizeof(iovec) <= raw.size() && out.size() < len; off += sizeof(iovec)) {
    iovec v{};
    std::memcpy(&v, raw.data() + off, sizeof v);
    out += read_memory(tid, reinterpret_cast<std::uint64_t>(v.iov_base), std::min(v.iov_len, len - out.size()));
  }
  return out;
}

template <class T>
bool load(const std::string &bytes, std::size_t offset, T &out) {
  if (offset + sizeof(T) > bytes.size())
    return false;
  std::memcpy(&out, bytes.data() + offset, sizeof(T));
  return true;
}

// How much of a request or reply the decoder needs: the headers, the bodies it reads and a
// CREATE's name (at most NAME_MAX + 1).
constexpr std::size_t kDecodeBytes = sizeof(proto::fuse_in_header) + sizeof(proto::fuse_create_in) + 256 +
                                     sizeof(proto::fuse_entry_out) + sizeof(proto::fuse_open_out);

// Requests whose replies never come, so the unique -> opcode map does not keep them.
bool has_reply(std::uint32_t opcode) {
  return opcode != proto::FORGET && opcode != proto::BATCH_FORGET && opcode != proto::INTERRUPT;
}

std::optional<FuseRequest> decode_request(const std::string &bytes) {
  proto::fuse_in_header h{};
  if (!load(bytes, 0, h))
    return std::nullopt;
  FuseRequest r;
  r.len = h.len;
  r.opcode = h.opcode;
  r.unique = h.unique;
  r.nodeid = h.nodeid;
  r.caller_pid = h.pid;
  constexpr std::size_t body = sizeof h;
  switch (h.opcode) {
  case proto::INIT: {
    InitIn in;
    proto::fuse_init_in raw{};
    // A kernel before 7.36 sends only the first four fields; flags2 then does not exist.
    if (load(bytes, body, raw)) {
      in.flags = raw.flags | static_cast<std::uint64_t>(raw.flags2) << 32;
    } else {
      std::memcpy(&raw, bytes.data() + body, std::min(bytes.size() - body, sizeof raw));
      in.flags = raw.flags;
    }
    in.major = raw.major;
    in.minor = raw.minor;
    r.body = in;
    break;
  }
  case proto::OPEN:
  case proto::OPENDIR:
    if (proto::fuse_open_in raw{}; load(bytes, body, raw))
      r.body = OpenIn{raw.flags, raw.open_flags};
    break;
  case proto::CREATE:
    if (proto::fuse_create_in raw{}; load(bytes, body, raw)) {
      std::string name = bytes.substr(body + sizeof raw);
      name.resize(std::min(name.find('\0'), name.size()));
      r.body = CreateIn{raw.flags, raw.mode, raw.open_flags, std::move(name)};
    }
    break;
  case proto::FLUSH:
    if (proto::fuse_flush_in raw{}; load(bytes, body, raw))
      r.body = FlushIn{raw.fh, raw.lock_owner};
    break;
  case proto::RELEASE:
  case proto::RELEASEDIR:
    if (proto::fuse_release_in raw{}; load(bytes, body, raw))
      r.body = ReleaseIn{raw.fh, raw.flags, raw.release_flags};
    break;
  default: // the opcode space is the kernel's, open-ended: only these bodies matter here
    break;
  }
  return r;
}

std::optional<FuseReply> decode_reply(const std::string &bytes, std::uint32_t opcode) {
  proto::fuse_out_header h{};
  if (!load(bytes, 0, h))
    return std::nullopt;
  FuseReply r;
  r.len = h.len;
  r.error = h.error;
  r.unique = h.unique;
  r.opcode = opcode;
  if (h.unique == 0 || h.error != 0)
    return r;
  constexpr std::size_t body = sizeof h;
  switch (opcode) {
  case proto::INIT: {
    // An old server's shorter fuse_init_out ends before flags2 and max_stack_depth: zeros.
    proto::fuse_init_out raw{};
    std::memcpy(&raw, bytes.data() + body, std::min(bytes.size() - body, sizeof raw));
    r.body = InitOut{raw.major, raw.minor, raw.flags | static_cast<std::uint64_t>(raw.flags2) << 32,
                     raw.max_stack_depth, raw.max_write};
    break;
  }
  case proto::OPEN:
  case proto::OPENDIR:
    if (proto::fuse_open_out raw{}; load(bytes, body, raw))
      r.body = OpenOut{raw.fh, raw.open_flags, raw.backing_id};
    break;
  case proto::CREATE:
    if (proto::fuse_open_out raw{}; load(bytes, body + sizeof(proto::fuse_entry_out), raw))
      r.body = OpenOut{raw.fh, raw.open_flags, raw.backing_id};
    break;
  default:
    break;
  }
  return r;
}

// Bytes that a splice from /dev/fuse put into a pipe, one entry per request, until they are read.
struct PipeMessage {
  std::size_t size = 0;
  std::size_t consumed = 0;
};

// A syscall between its entry and exit stops, with what had to be read at entry.
struct Pending {
  long nr = -1;
  Clock::time_point entered;
  std::array<std::uint64_t, 6> args{};
  FdInfo fd;             // of the call's fd argument (splice: fd_in)
  FdInfo fd_out;         // splice: fd_out
  std::string path;      // open/openat: the path argument
  std::optional<FuseReply> reply;    // a write to /dev/fuse, decoded from its buffer
  std::optional<BackingOpen> backing_open;
  std::optional<BackingClose> backing_close;
};

struct Thread {
  pid_t tgid = 0;
  bool seen_first_stop = false; // a new tracee's first stop is the SIGSTOP of its attach
  std::optional<Pending> pending;
};

class Tracer {
public:
  Tracer(const TraceOptions &options, TraceResult &result) : options_(options), result_(result) {}

  void run();

private:
  // ---- the process table, shared with the watchdog ----
  void add_process(pid_t tgid) {
    std::lock_guard lock(mutex_);
    live_processes_.insert(tgid);
  }
  void remove_process(pid_t tgid) {
    std::lock_guard lock(mutex_);
    live_processes_.erase(tgid);
  }
  // SIGKILL to every traced process and the command's group.
  void kill_all() {
    std::lock_guard lock(mutex_);
    if (pgid_ > 0)
      kill(-pgid_, SIGKILL);
    for (pid_t p : live_processes_)
      kill(p, SIGKILL);
  }
  void watchdog(Clock::time_point deadline);

  // ---- the tracer loop ----
  void handle(pid_t tid, int status);
  Thread &thread(pid_t tid);
  void resume(pid_t tid, int sig);
  void on_entry(pid_t tid, Thread &t, long nr, const std::array<std::uint64_t, 6> &args);
  void on_exit(pid_t tid, Thread &t, long rval);
  void on_read(pid_t tid, Thread &t, const Pending &p, long rval);
  // `entered`: when the call was entered (nullopt: now, for process events).
  void emit(pid_t tid, const Thread &t, Payload payload, std::optional<Clock::time_point> entered = std::nullopt);
  void warn(std::string line);
  bool watched(const std::string &path) const { return options_.watch && !path.empty() && options_.watch(path); }
  void consume_pipe(const std::string &pipe, std::size_t bytes);

  const TraceOptions &options_;
  TraceResult &result_;
  Clock::time_point start_;
  pid_t main_pid_ = 0;
  std::map<pid_t, Thread> threads_;
  std::map<std::uint64_t, std::uint32_t> inflight_; // unique -> opcode, for the reply's body
  std::map<std::string, std::deque<PipeMessage>> pipes_; // "pipe:[ino]" -> requests in it
  std::map<std::pair<pid_t, std::uint64_t>, std::uint64_t> mappings_; // watched mmaps: (tgid, addr) -> len

  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  pid_t pgid_ = 0;
  std::set<pid_t> live_processes_;
  std::atomic<bool> timed_out_{false}, cancelled_{false};
};

void Tracer::warn(std::string line) {
  constexpr std::size_t kMaxWarnings = 100;
  if (result_.warnings.size() < kMaxWarnings)
    result_.warnings.push_back(std::move(line));
  else if (result_.warnings.size() == kMaxWarnings)
    result_.warnings.push_back("more warnings left out");
}

void Tracer::emit(pid_t tid, const Thread &t, Payload payload, std::optional<Clock::time_point> entered) {
  const Clock::time_point now = Clock::now();
  Event e;
  e.seq = result_.events.size();
  e.time = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_);
  e.entered = std::chrono::duration_cast<std::chrono::nanoseconds>(entered.value_or(now) - start_);
  e.pid = t.tgid;
  e.tid = tid;
  e.payload = std::move(payload);
  if (options_.on_event)
    options_.on_event(e);
  result_.events.push_back(std::move(e));
}

void Tracer::watchdog(Clock::time_point deadline) {
  bool killing = false;
  std::unique_lock lock(mutex_);
  while (!done_) {
    done_cv_.wait_for(lock, std::chrono::milliseconds(50));
    if (done_)
      return;
    lock.unlock();
    if (!killing && Clock::now() >= deadline)
      killing = timed_out_ = true;
    else if (!killing && options_.stop && options_.stop())
      killing = cancelled_ = true;
    // Again every round: a dying tracee may still have forked, until the tracer reaped them all.
    if (killing)
      kill_all();
    lock.lock();
  }
}

Thread &Tracer::thread(pid_t tid) {
  auto it = threads_.find(tid);
  if (it != threads_.end())
    return it->second;
  // A new tracee whose first stop came before its creator's clone event: its thread group from /proc.
  Thread t;
  t.tgid = tid;
  std::ifstream status(fmt::format("/proc/{}/status", tid));
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Tgid:", 0) == 0)
      t.tgid = static_cast<pid_t>(std::stol(line.substr(5)));
  if (t.tgid == tid)
    add_process(tid);
  return threads_.emplace(tid, t).first->second;
}

void Tracer::resume(pid_t tid, int sig) {
  const Thread &t = threads_.at(tid);
  // Between a seccomp stop and the exit stop the tracee must stop at the exit; otherwise it runs
  // to the next filtered call (or, without the filter, to the next call's entry).
  const bool to_exit = !options_.seccomp || t.pending.has_value();
  if (ptrace(to_exit ? PTRACE_SYSCALL : PTRACE_CONT, tid, nullptr, reinterpret_cast<void *>(static_cast<long>(sig))) != 0 &&
      errno != ESRCH) // killed meanwhile: its exit is reported next
    warn(fmt::format("ptrace resume of {}: {}", tid, std::strerror(errno)));
}

void Tracer::run() {
  const std::optional<std::string> program = proc::find_program(options_.argv.front());
  if (!program) {
    result_.error = fmt::format("{}: command not found", options_.argv.front());
    return;
  }
  std::vector<char *> argv;
  for (const std::string &a : options_.argv)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  const std::vector<sock_filter> program_filter = seccomp_program();
  const sock_fprog fprog{static_cast<unsigned short>(program_filter.size()), const_cast<sock_filter *>(program_filter.data())};
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    result_.error = fmt::format("pipe: {}", std::strerror(errno));
    return;
  }
  start_ = Clock::now();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    result_.error = fmt::format("fork: {}", std::strerror(errno));
    close(report[0]);
    close(report[1]);
    return;
  }
  if (pid == 0)
    run_child(program->c_str(), argv.data(), options_.cwd.empty() ? nullptr : options_.cwd.c_str(),
              options_.seccomp ? &fprog : nullptr, report[1], parent);
  close(report[1]);
  main_pid_ = pid;
  result_.pid = pid;
  {
    std::lock_guard lock(mutex_);
    pgid_ = pid;
  }
  int status = 0;
  // The child's SIGSTOP after PTRACE_TRACEME; anything else means it failed before.
  while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
  }
  auto child_failure = [&]() -> std::optional<ChildFailure> {
    ChildFailure f{};
    if (read(report[0], &f, sizeof f) == static_cast<ssize_t>(sizeof f))
      return f;
    return std::nullopt;
  };
  if (!WIFSTOPPED(status)) {
    const std::optional<ChildFailure> f = child_failure();
    close(report[0]);
    result_.error = f ? fmt::format("{}: {}: {}", options_.argv.front(), kStageNames[f->stage], std::strerror(f->err))
                      : fmt::format("{}: the child ended before it could be traced", options_.argv.front());
    return;
  }
  constexpr long kOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                            PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL;
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr, reinterpret_cast<void *>(kOptions)) != 0) {
    result_.error = fmt::format("ptrace(PTRACE_SETOPTIONS): {}", std::strerror(errno));
    kill(pid, SIGKILL);
    waitpid(pid, &status, __WALL);
    close(report[0]);
    return;
  }
  Thread &main = threads_[pid];
  main.tgid = pid;
  main.seen_first_stop = true;
  add_process(pid);
  resume(pid, 0);

  std::thread dog([this] { watchdog(Clock::now() + options_.timeout); });
  while (!threads_.empty()) {
    const pid_t tid = waitpid(-1, &status, __WALL);
    if (tid < 0) {
      if (errno == EINTR)
        continue;
      // ECHILD with tracees still listed: they went away unreported (an exec's other threads).
      if (errno != ECHILD)
        result_.error = fmt::format("waitpid: {}", std::strerror(errno));
      break;
    }
    handle(tid, status);
  }
  {
    std::lock_guard lock(mutex_);
    done_ = true;
  }
  done_cv_.notify_all();
  dog.join();
  result_.timed_out = timed_out_;
  result_.cancelled = cancelled_;
  if (const std::optional<ChildFailure> f = child_failure()) {
    result_.error = fmt::format("{}: {}: {}", options_.argv.front(), kStageNames[f->stage], std::strerror(f->err));
    result_.events.clear();
  } else {
    result_.started = true;
  }
  close(report[0]);
}

void Tracer::handle(pid_t tid, int status) {
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    const auto it = threads_.find(tid);
    if (it == threads_.end())
      return; // not a tracee: a child of the caller's own
    const Thread t = it->second;
    threads_.erase(it);
    if (tid != t.tgid)
      return;
    remove_process(tid);
    ProcessExit e;
    if (WIFEXITED(status))
      e.code = WEXITSTATUS(status);
    else
      e.signal = WTERMSIG(status);
    if (tid == main_pid_) {
      result_.exit_code = e.code;
      result_.signal = e.signal;
    }
    emit(tid, t, e);
    return;
  }
  if (!WIFSTOPPED(status))
    return;
  Thread &t = thread(tid);
  const int sig = WSTOPSIG(status);
  const int event = status >> 16;
  if (!t.seen_first_stop) {
    t.seen_first_stop = true;
    if (sig == SIGSTOP && event == 0) {
      resume(tid, 0);
      return;
    }
  }
  if (event == PTRACE_EVENT_SECCOMP || sig == (SIGTRAP | 0x80)) {
    __ptrace_syscall_info info{};
    if (ptrace(PTRACE_GET_SYSCALL_INFO, tid, reinterpret_cast<void *>(sizeof info), &info) <= 0) {
      warn(fmt::format("PTRACE_GET_SYSCALL_INFO of {}: {}", tid, std::strerror(errno)));
    } else if (info.op == PTRACE_SYSCALL_INFO_SECCOMP) {
      on_entry(tid, t, static_cast<long>(info.seccomp.nr), std::to_array(info.seccomp.args));
    } else if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
      on_entry(tid, t, static_cast<long>(info.entry.nr), std::to_array(info.entry.args));
    } else if (info.op == PTRACE_SYSCALL_INFO_EXIT && t.pending) {
      on_exit(tid, t, static_cast<long>(info.exit.rval));
    }
    resume(tid, 0);
    return;
  }
  if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) {
    unsigned long child = 0;
    ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child);
    const pid_t c = static_cast<pid_t>(child);
    if (c > 0) {
      const Thread &n = thread(c); // a clone without CLONE_THREAD is a process too: /proc says which
      if (n.tgid == c)
        emit(c, n, ProcessStart{t.tgid});
    }
    resume(tid, 0);
    return;
  }
  if (event == PTRACE_EVENT_EXEC) {
    // A thread other than the leader exec'd: it now has the leader's tid, its own is gone.
    unsigned long former = 0;
    ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &former);
    if (static_cast<pid_t>(former) != tid)
      threads_.erase(static_cast<pid_t>(former));
    Thread &leader = thread(tid);
    leader.pending.reset();
    leader.seen_first_stop = true;
    resume(tid, 0);
    return;
  }
  if (event != 0) { // another ptrace event: none is asked for
    resume(tid, 0);
    return;
  }
  // A signal for the tracee: delivered as it would be untraced. A group-stop (no siginfo) ends at once:
  // a tracer that kept it stopped would need to stand in for the shell's job control.
  siginfo_t si{};
  if (ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si) != 0 && errno == EINVAL)
    resume(tid, 0);
  else
    resume(tid, sig);
}

void Tracer::on_entry(pid_t tid, Thread &t, long nr, const std::array<std::uint64_t, 6> &args) {
  Pending p;
  p.nr = nr;
  p.entered = Clock::now();
  p.args = args;
  const long fd_arg = static_cast<long>(static_cast<int>(args[0]));
  switch (nr) {
  case SYS_read:
  case SYS_readv:
  case SYS_pread64:
  case SYS_close:
  case SYS_dup:
  case SYS_dup2:
  case SYS_dup3:
    p.fd = fd_info(tid, fd_arg);
    break;
  case SYS_write:
  case SYS_writev:
  case SYS_pwrite64:
    p.fd = fd_info(tid, fd_arg);
    if (p.fd.fuse_dev) {
      const std::string bytes = nr == SYS_writev ? read_iovecs(tid, args[1], args[2], kDecodeBytes)
                                                 : read_memory(tid, args[1], std::min<std::uint64_t>(args[2], kDecodeBytes));
      std::uint32_t opcode = 0;
      if (proto::fuse_out_header h{}; load(bytes, 0, h) && h.unique != 0) {
        if (const auto it = inflight_.find(h.unique); it != inflight_.end()) {
          opcode = it->second;
          inflight_.erase(it);
        }
      }
      p.reply = decode_reply(bytes, opcode);
      if (!p.reply)
        warn(fmt::format("pid {}: a write of {} bytes to /dev/fuse has no fuse_out_header", tid, args[2]));
      else
        p.reply->fd = static_cast<int>(fd_arg);
    }
    break;
  case SYS_ioctl:
    p.fd = fd_info(tid, fd_arg);
    if (p.fd.fuse_dev && args[1] == proto::kDevIocBackingOpen) {
      BackingOpen b;
      b.dev_fd = static_cast<int>(fd_arg);
      if (proto::fuse_backing_map map{}; load(read_memory(tid, args[2], sizeof map), 0, map)) {
        b.backing_fd = map.fd;
        b.flags = map.flags;
        b.backing_path = fd_info(tid, map.fd).path;
      }
      p.backing_open = b;
    } else if (p.fd.fuse_dev && args[1] == proto::kDevIocBackingClose) {
      BackingClose b;
      b.dev_fd = static_cast<int>(fd_arg);
      load(read_memory(tid, args[2], sizeof b.id), 0, b.id);
      p.backing_close = b;
    }
    break;
  case SYS_open:
    p.path = read_string(tid, args[0]);
    break;
  case SYS_openat:
    p.path = read_string(tid, args[1]);
    break;
  case SYS_mmap:
    p.fd = fd_info(tid, static_cast<int>(args[4]));
    break;
  case SYS_splice:
    p.fd = fd_info(tid, fd_arg);
    p.fd_out = fd_info(tid, static_cast<int>(args[2]));
    break;
  default: // munmap, io_uring_setup, and (without the filter) every other call: nothing to read first
    break;
  }
  t.pending = std::move(p);
}

void Tracer::consume_pipe(const std::string &pipe, std::size_t bytes) {
  const auto it = pipes_.find(pipe);
  if (it == pipes_.end())
    return;
  std::deque<PipeMessage> &q = it->second;
  while (bytes > 0 && !q.empty()) {
    const std::size_t take = std::min(bytes, q.front().size - q.front().consumed);
    q.front().consumed += take;
    bytes -= take;
    if (q.front().consumed == q.front().size)
      q.pop_front();
  }
  if (q.empty())
    pipes_.erase(it);
}

void Tracer::on_read(pid_t tid, Thread &t, const Pending &p, long rval) {
  const auto pipe = p.fd.pipe ? pipes_.find(p.fd.path) : pipes_.end();
  const bool request_start = p.fd.fuse_dev || (pipe != pipes_.end() && pipe->second.front().consumed == 0);
  if (request_start && rval > 0) {
    const std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(rval), kDecodeBytes);
    const std::string bytes = p.nr == SYS_readv ? read_iovecs(tid, p.args[1], p.args[2], want)
                                                : read_memory(tid, p.args[1], want);
    std::optional<FuseRequest> r = decode_request(bytes);
    const std::size_t expected = pipe != pipes_.end() ? pipe->second.front().size : static_cast<std::size_t>(rval);
    if (!r) {
      warn(fmt::format("pid {}: a read of {} bytes from {} has no fuse_in_header", tid, rval, p.fd.path));
    } else {
      if (r->len != expected)
        warn(fmt::format("pid {}: request unique {} says len {}, {} bytes came from /dev/fuse", tid, r->unique, r->len,
                         expected));
      r->fd = static_cast<int>(p.args[0]);
      r->via_pipe = pipe != pipes_.end();
      if (has_reply(r->opcode))
        inflight_[r->unique] = r->opcode;
      emit(tid, t, std::move(*r), p.entered);
    }
  }
  if (pipe != pipes_.end() && rval > 0)
    consume_pipe(p.fd.path, static_cast<std::size_t>(rval));
  if (!p.fd.fuse_dev && !p.fd.pipe && watched(p.fd.path))
    emit(tid, t, Io{Io::Kind::Read, static_cast<int>(p.args[0]), p.fd.path, rval}, p.entered);
}

void Tracer::on_exit(pid_t tid, Thread &t, long rval) {
  const Pending p = std::move(*t.pending);
  t.pending.reset();
  // -ERESTARTSYS and kin: interrupted by a signal and restarted; the restarted call stops again.
  if (rval <= -512 && rval >= -516)
    return;
  switch (p.nr) {
  case SYS_read:
  case SYS_readv:
  case SYS_pread64:
    on_read(tid, t, p, rval);
    break;
  case SYS_write:
  case SYS_writev:
  case SYS_pwrite64:
    if (p.reply) {
      FuseReply r = *p.reply;
      r.result = rval;
      emit(tid, t, std::move(r), p.entered);
    } else if (!p.fd.fuse_dev && watched(p.fd.path)) {
      emit(tid, t, Io{Io::Kind::Write, static_cast<int>(p.args[0]), p.fd.path, rval}, p.entered);
    }
    break;
  case SYS_ioctl:
    if (p.backing_open) {
      BackingOpen b = *p.backing_open;
      b.result = rval;
      emit(tid, t, std::move(b), p.entered);
    } else if (p.backing_close) {
      BackingClose b = *p.backing_close;
      b.result = rval;
      emit(tid, t, std::move(b), p.entered);
    }
    break;
  case SYS_open:
  case SYS_openat: {
    const FdInfo made = fd_info(tid, rval);
    if (made.fuse_dev || watched(made.path) || (rval < 0 && watched(p.path)))
      emit(tid, t, Open{p.path, made.path, static_cast<int>(p.args[p.nr == SYS_open ? 1 : 2]), rval}, p.entered);
    break;
  }
  case SYS_close:
    if (p.fd.fuse_dev || watched(p.fd.path))
      emit(tid, t, Close{static_cast<int>(p.args[0]), p.fd.path, rval}, p.entered);
    break;
  case SYS_dup:
  case SYS_dup2:
  case SYS_dup3:
    if (p.fd.fuse_dev || watched(p.fd.path))
      emit(tid, t, Dup{static_cast<int>(p.args[0]), p.fd.path, rval}, p.entered);
    break;
  case SYS_mmap:
    if (watched(p.fd.path)) {
      if (rval >= 0) // user addresses are below 2^47: positive
        mappings_[{t.tgid, static_cast<std::uint64_t>(rval)}] = p.args[1];
      emit(tid, t,
           Mmap{p.args[0], p.args[1], static_cast<int>(p.args[2]), static_cast<int>(p.args[3]),
                static_cast<int>(p.args[4]), p.fd.path, rval}, p.entered);
    }
    break;
  case SYS_munmap:
    if (mappings_.erase({t.tgid, p.args[0]}) > 0)
      emit(tid, t, Munmap{p.args[0], p.args[1], rval}, p.entered);
    break;
  case SYS_splice:
    if (p.fd.fuse_dev && p.fd_out.pipe && rval > 0) {
      pipes_[p.fd_out.path].push_back(PipeMessage{static_cast<std::size_t>(rval), 0});
    } else if (p.fd_out.fuse_dev) {
      FuseReply r;
      r.fd = static_cast<int>(p.args[2]);
      r.spliced = true;
      r.result = rval;
      emit(tid, t, std::move(r), p.entered);
    }
    if (p.fd.pipe && rval > 0)
      consume_pipe(p.fd.path, static_cast<std::size_t>(rval));
    break;
  case SYS_io_uring_setup:
    emit(tid, t, IoUringSetup{rval}, p.entered);
    break;
  default: // without the filter: every other call, of no interest
    break;
  }
}

std::string flags_hex(std::uint64_t f) { return fmt::format("{:#x}", f); }

std::string opcode_text(std::uint32_t op) {
  const char *name = proto::opcode_name(op);
  return name != nullptr ? name : fmt::format("opcode{}", op);
}

std::string result_text(long r) {
  if (r >= 0)
    return std::to_string(r);
  const char *name = strerrorname_np(static_cast<int>(-r));
  return name != nullptr ? fmt::format("-{}", name) : std::to_string(r);
}

} // namespace

std::string describe(const Event &event) {
  const std::string who = fmt::format("#{} pid {}/{}", event.seq, event.pid, event.tid);
  struct Visitor {
    std::string operator()(const FuseRequest &r) const {
      std::string s = fmt::format("FUSE request {} unique={} nodeid={} len={}{}", opcode_text(r.opcode), r.unique,
                                  r.nodeid, r.len, r.via_pipe ? " (spliced)" : "");
      struct Body {
        std::string operator()(std::monostate) const { return ""; }
        std::string operator()(const InitIn &b) const {
          return fmt::format(" {}.{} flags={}", b.major, b.minor, flags_hex(b.flags));
        }
        std::string operator()(const OpenIn &b) const {
          return fmt::format(" flags={} open_flags={}", flags_hex(b.flags), flags_hex(b.open_flags));
        }
        std::string operator()(const CreateIn &b) const {
          return fmt::format(" name={} flags={} mode={:o}", b.name, flags_hex(b.flags), b.mode);
        }
        std::string operator()(const FlushIn &b) const { return fmt::format(" fh={}", b.fh); }
        std::string operator()(const ReleaseIn &b) const {
          return fmt::format(" fh={} flags={} release_flags={}", b.fh, flags_hex(b.flags), flags_hex(b.release_flags));
        }
      };
      return s + std::visit(Body{}, r.body);
    }
    std::string operator()(const FuseReply &r) const {
      if (r.spliced)
        return fmt::format("FUSE reply (spliced) result={}", result_text(r.result));
      std::string s = fmt::format("FUSE {} unique={} {} error={} len={} result={}", r.unique == 0 ? "notify" : "reply",
                                  r.unique, opcode_text(r.opcode), r.error, r.len, result_text(r.result));
      struct Body {
        std::string operator()(std::monostate) const { return ""; }
        std::string operator()(const InitOut &b) const {
          return fmt::format(" {}.{} flags={} max_stack_depth={} max_write={}", b.major, b.minor, flags_hex(b.flags),
                             b.max_stack_depth, b.max_write);
        }
        std::string operator()(const OpenOut &b) const {
          return fmt::format(" fh={} open_flags={} backing_id={}", b.fh, flags_hex(b.open_flags), b.backing_id);
        }
      };
      return s + std::visit(Body{}, r.body);
    }
    std::string operator()(const BackingOpen &b) const {
      return fmt::format("BACKING_OPEN fd={} ({}) flags={} => {}", b.backing_fd, b.backing_path, b.flags,
                         result_text(b.result));
    }
    std::string operator()(const BackingClose &b) const {
      return fmt::format("BACKING_CLOSE id={} => {}", b.id, result_text(b.result));
    }
    std::string operator()(const Open &o) const {
      return fmt::format("open {} flags={} => {} {}", o.path, flags_hex(static_cast<unsigned>(o.flags)),
                         result_text(o.result), o.resolved);
    }
    std::string operator()(const Close &c) const {
      return fmt::format("close {} ({}) => {}", c.fd, c.path, result_text(c.result));
    }
    std::string operator()(const Dup &d) const {
      return fmt::format("dup {} ({}) => {}", d.old_fd, d.path, result_text(d.result));
    }
    std::string operator()(const Io &io) const {
      return fmt::format("{} {} ({}) => {}", io.kind == Io::Kind::Read ? "read" : "write", io.fd, io.path,
                         result_text(io.result));
    }
    std::string operator()(const Mmap &m) const {
      return fmt::format("mmap fd={} ({}) len={} prot={} flags={} => {}", m.fd, m.path, m.length, m.prot,
                         flags_hex(static_cast<unsigned>(m.flags)),
                         m.result < 0 ? result_text(m.result) : flags_hex(static_cast<std::uint64_t>(m.result)));
    }
    std::string operator()(const Munmap &m) const {
      return fmt::format("munmap {} len={} => {}", flags_hex(m.addr), m.length, result_text(m.result));
    }
    std::string operator()(const IoUringSetup &u) const { return fmt::format("io_uring_setup => {}", result_text(u.result)); }
    std::string operator()(const ProcessStart &s) const { return fmt::format("started by {}", s.parent); }
    std::string operator()(const ProcessExit &e) const {
      return e.signal != 0 ? fmt::format("killed by signal {}", e.signal) : fmt::format("exited {}", e.code);
    }
  };
  return who + " " + std::visit(Visitor{}, event.payload);
}

TraceResult trace(const TraceOptions &options) {
  FPSIM_ASSERT(!options.argv.empty(), "trace() needs a command");
  TraceResult result;
  Tracer(options, result).run();
  return result;
}

} // namespace fpsim::harness::sctrace
