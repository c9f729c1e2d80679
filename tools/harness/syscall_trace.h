// A ptrace-based syscall recorder: runs an unmodified command (a third-party FUSE server, or a
// shell that starts one and a client) and reports, from outside it, what went over /dev/fuse: the
// requests it read, the replies it wrote, and the FUSE_DEV_IOC_BACKING_OPEN/CLOSE ioctls, decoded
// from the tracees' memory (process_vm_readv) and fd tables (/proc/TID/fd/N). Optionally the
// opens, closes, reads, writes, dups and mmaps of files whose path the caller watches (a client's
// calls on the mount).
//
// Every thread and process the command starts is followed (clone, fork, vfork, exec). With
// `seccomp` (the default) the child installs a SECCOMP_RET_TRACE filter before exec, so only the
// syscalls the recorder decodes stop the tracee; without it every syscall stops (slower, for
// kernels without seccomp). Signals reach the tracees as they would untraced.
//
// trace() forks the command and runs the tracer loop on the calling thread (ptrace requests must
// come from the thread that became the tracer). It waits for tracees with waitpid(-1, __WALL), so
// the calling process must have no other children it waits for at the same time. It returns when
// every traced process has ended: after the command and all it started exited, or after the
// timeout or `stop` killed them (SIGKILL to every traced process and the command's process group;
// PTRACE_O_EXITKILL kills them too should the tracer itself die).
//
// Limits, by design: requests carried over FUSE_OVER_IO_URING never pass through read/write
// (io_uring_setup is reported so a recording can say so); a reply spliced into /dev/fuse from a
// pipe is reported with its length only (its header went in through vmsplice, not traced); one
// FUSE connection per trace (a reply's opcode is found by its unique alone).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fpsim::harness::sctrace {

// ---- events -------------------------------------------------------------------------------------

// The bodies decoded from requests the server read.
struct InitIn {
  std::uint32_t major = 0, minor = 0;
  std::uint64_t flags = 0; // flags | flags2 << 32
};
struct OpenIn {
  std::uint32_t flags = 0, open_flags = 0;
};
struct CreateIn {
  std::uint32_t flags = 0, mode = 0, open_flags = 0;
  std::string name;
};
struct FlushIn {
  std::uint64_t fh = 0, lock_owner = 0;
};
struct ReleaseIn {
  std::uint64_t fh = 0;
  std::uint32_t flags = 0, release_flags = 0;
};
using RequestBody = std::variant<std::monostate, InitIn, OpenIn, CreateIn, FlushIn, ReleaseIn>;

// A request read from /dev/fuse: by read/readv on the device, or by read from a pipe that a
// splice from the device filled (libfuse's default).
struct FuseRequest {
  int fd = -1;       // the fd it was read from (the device, or the pipe)
  bool via_pipe = false;
  std::uint32_t len = 0;
  std::uint32_t opcode = 0;
  std::uint64_t unique = 0;
  std::uint64_t nodeid = 0;
  std::uint32_t caller_pid = 0; // fuse_in_header.pid: who made the request
  RequestBody body;             // INIT, OPEN, OPENDIR, CREATE, FLUSH, RELEASE, RELEASEDIR
};

// The bodies decoded from replies the server wrote.
struct InitOut {
  std::uint32_t major = 0, minor = 0;
  std::uint64_t flags = 0; // flags | flags2 << 32 (flags2 counts only with INIT_EXT)
  std::uint32_t max_stack_depth = 0;
  std::uint32_t max_write = 0;
};
struct OpenOut {
  std::uint64_t fh = 0;
  std::uint32_t open_flags = 0;
  std::int32_t backing_id = 0;
};
using ReplyBody = std::variant<std::monostate, InitOut, OpenOut>;

// A reply (or, unique 0, a notification) written to /dev/fuse.
struct FuseReply {
  int fd = -1;
  bool spliced = false;      // spliced in from a pipe: only `result` is known
  std::uint32_t len = 0;
  std::int32_t error = 0;    // -errno; for a notification, its code
  std::uint64_t unique = 0;
  std::uint32_t opcode = 0;  // of the request with this unique; 0 when that was not seen
  ReplyBody body;            // INIT, OPEN, OPENDIR, CREATE (its fuse_open_out)
  long result = 0;           // the write's return: bytes, or -errno (ENOENT: no such request)
};

struct BackingOpen {
  int dev_fd = -1;
  int backing_fd = -1;           // fuse_backing_map.fd, in the caller's fd table
  std::string backing_path;      // what that fd is (/proc/TID/fd/N), read before the call
  std::uint32_t flags = 0;
  long result = 0;               // the backing id, or -errno
};

struct BackingClose {
  int dev_fd = -1;
  std::uint32_t id = 0;
  long result = 0; // 0 or -errno
};

// The calls below are reported for /dev/fuse and for paths the caller watches.
struct Open {
  std::string path;      // as passed
  std::string resolved;  // of the new fd; empty on failure
  int flags = 0;
  long result = 0;       // the fd, or -errno
};
struct Close {
  int fd = -1;
  std::string path;
  long result = 0;
};
struct Dup {
  int old_fd = -1;
  std::string path;
  long result = 0; // the new fd, or -errno
};
struct Io {
  enum class Kind { Read, Write };
  Kind kind = Kind::Read;
  int fd = -1;
  std::string path;
  long result = 0; // bytes, or -errno
};
struct Mmap {
  std::uint64_t addr = 0, length = 0;
  int prot = 0, flags = 0, fd = -1;
  std::string path;
  long result = 0; // the address, or -errno
};
struct Munmap {
  std::uint64_t addr = 0, length = 0;
  long result = 0;
};
// io_uring_setup, by anyone: FUSE requests on a ring are invisible to this recorder.
struct IoUringSetup {
  long result = 0;
};

// A traced process (not thread) began: forked or vforked by `parent`.
struct ProcessStart {
  pid_t parent = 0;
};
// A traced process ended (its last thread).
struct ProcessExit {
  int code = -1;  // when it exited
  int signal = 0; // the signal that killed it, else 0
};

using Payload = std::variant<FuseRequest, FuseReply, BackingOpen, BackingClose, Open, Close, Dup, Io, Mmap,
                             Munmap, IoUringSetup, ProcessStart, ProcessExit>;

// Events are in the order the tracer saw the calls return (`seq`), which is not always the order
// their effects took: a reply's write wakes the client inside the call, so the client's open(2)
// may be seen returning before the server's write does. `entered` bounds that: the reply took
// effect between its `entered` and its `time`.
struct Event {
  std::uint64_t seq = 0;               // 0, 1, 2, ...
  std::chrono::nanoseconds time{0};    // the call returned (the process started or ended), since
                                       // the command started (steady clock)
  std::chrono::nanoseconds entered{0}; // the call was entered; `time` for process events
  pid_t pid = 0; // the process (thread group)
  pid_t tid = 0; // the thread
  Payload payload;
};

// One line, e.g. "pid 12/13 FUSE reply unique=4 OPEN error=0 open_flags=0xc0 backing_id=1".
std::string describe(const Event &event);

// ---- running a command under the tracer ---------------------------------------------------------

struct TraceOptions {
  std::vector<std::string> argv;     // argv[0] is looked up in PATH
  std::string cwd;                   // empty: the caller's
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  bool seccomp = true;               // stop only at the decoded syscalls (see above)
  // Opens, closes, reads, writes, dups and mmaps of fds whose path this accepts are reported too.
  std::function<bool(std::string_view path)> watch;
  // Checked about every 50 ms on a watchdog thread: true kills the tracees, as at the timeout.
  std::function<bool()> stop;
  // Each event as it is seen, on the tracer's thread, while the tracee waits: keep it short.
  std::function<void(const Event &)> on_event;
};

struct TraceResult {
  bool started = false;     // false: the command could not be run (`error` says why); no events
  bool timed_out = false;   // killed at the timeout
  bool cancelled = false;   // killed because `stop` said so
  pid_t pid = 0;            // the command's own process
  int exit_code = -1;       // the command's own process: when it exited
  int signal = 0;           // the signal that ended it, else 0
  std::vector<Event> events;
  std::vector<std::string> warnings; // what could not be decoded (one line each)
  std::string error;                 // one line, when the tracer itself failed
};

TraceResult trace(const TraceOptions &options);

} // namespace fpsim::harness::sctrace
