#include "recorder.h"

#include "base/assert.h"
#include "file_store.h"
#include "fuse_proto.h"
#include "fuse_server.h"
#include "namespace.h"
#include "wire.h"

#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "sim/exec/replay.h"
#include "tools/exit_codes.h"
#include "sim/exec/sim_executor.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

extern char **environ;

namespace fpsim::harness {
namespace {

namespace p = proto;
using namespace std::chrono_literals;

// The isolated child's verdicts (it prints the one-line reason itself).
constexpr int kBodyOk = 0;
constexpr int kBodySetupFailed = 10;
constexpr int kBodyTimedOut = 11;
constexpr int kBodyExecFailed = 12;
constexpr int kBodyInexpressible = 13;
constexpr int kBodyWriteFailed = 14;
constexpr int kBodyDisagrees = 15; // the trace was made, and the simulator disagrees with it

// How long the files of a finished command are given to be released (RELEASE is asynchronous).
constexpr auto kReleaseGrace = 5s;

// __FMODE_EXEC in fuse_open_in.flags: the kernel's open of an executable for execve(2).
constexpr std::uint32_t kFmodeExec = 0x20;

// The profile the recordings are written for: the harness runs on 6.18 only.
constexpr model::KernelProfile kRecordProfile = model::KernelProfile::V6_18;

// How long the kernel may keep a looked-up name: a second, as the recordings of traces/recorded/
// were made with (their request counts depend on it).
constexpr std::uint64_t kEntryTimeout = 1;

// ---- small helpers ------------------------------------------------------------------------------

using wire::errno_text;


using sim::valid_name;

// A backing file that `backing_open B FILE` can name: not one of the special sources.
bool valid_backing_file(const std::string &name) {
  static const std::set<std::string> special = {"dir", "pipe", "socket", "devnull", "badfd"};
  return valid_name(name) && special.count(name) == 0;
}

std::string opcode_text(std::uint32_t op) {
  const char *name = p::opcode_name(op);
  return name ? std::string(name) : fmt::format("opcode{}", op);
}

// The length of the strict UTF-8 sequence (no overlong forms, no surrogates, nothing above
// U+10FFFF) of more than one byte at s[i], or 0.
std::size_t utf8_sequence(const std::string &s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size())
    return 0;
  std::uint32_t cp = len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
  for (std::size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (cc & 0x3Fu);
  }
  const std::uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  return cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) ? len : 0;
}

// Text for a comment or the title: valid UTF-8 is kept, control characters and invalid bytes are
// escaped, so the line stays one line of valid UTF-8 whatever the command's arguments hold.
std::string printable(const std::string &s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = c < 0x80 ? 1 : utf8_sequence(s, i);
    if (c == '\n' || c == '\t')
      out += c == '\n' ? "\\n" : "\\t";
    else if (c < 0x20 || c == 0x7f || len == 0)
      out += fmt::format("\\x{:02x}", c);
    else
      out.append(s, i, len), i += len - 1;
  }
  return out;
}

// The command as a shell would need it typed.
std::string shell_quote(const std::vector<std::string> &argv) {
  std::string out;
  for (const std::string &arg : argv) {
    if (!out.empty())
      out += ' ';
    const bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_./=:,+@%^-", c) != nullptr;
    });
    if (plain) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'')
        out += "'\\''";
      else
        out += c;
    }
    out += '\'';
  }
  return out;
}

sim::AccessMode access_of(std::uint32_t flags) {
  switch (flags & O_ACCMODE) {
  case O_WRONLY:
    return sim::AccessMode::WriteOnly;
  case O_RDWR:
    return sim::AccessMode::ReadWrite;
  default: // O_RDONLY, or the access mode 3 that open(2) lets through
    return sim::AccessMode::ReadOnly;
  }
}

std::string open_flags_text(std::uint32_t flags) {
  std::string out = (flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
                    : (flags & O_ACCMODE) == O_RDWR ? "O_RDWR"
                                                    : "O_RDONLY";
  const std::pair<std::uint32_t, const char *> known[] = {
      {O_CREAT, "O_CREAT"}, {O_EXCL, "O_EXCL"},     {O_TRUNC, "O_TRUNC"},     {O_APPEND, "O_APPEND"},
      {O_DIRECT, "O_DIRECT"}, {O_NONBLOCK, "O_NONBLOCK"}, {O_SYNC, "O_SYNC"}, {O_NOATIME, "O_NOATIME"}};
  for (const auto &[bit, name] : known)
    if ((flags & bit) == bit)
      out += fmt::format("|{}", name);
  return out;
}

// 'a', 'b', 'c'
std::string quoted_list(const std::vector<std::string> &names) {
  std::string list;
  for (const std::string &name : names)
    list += (list.empty() ? "'" : ", '") + printable(name) + "'";
  return list;
}

// "# HEAD a, b, c" wrapped at about 100 columns.
std::string comment_list(const std::string &head, const std::vector<std::string> &items) {
  std::string out;
  std::string line = "# " + head;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string item = items[i] + (i + 1 < items.size() ? "," : "");
    if (line.size() + 1 + item.size() > 100 && line != "# " + head) {
      out += line + "\n";
      line = "#  ";
    }
    line += " " + item;
  }
  return out + line + "\n";
}

using wire::read_struct;

// ---- the trace as statements ------------------------------------------------------------------------

// A trace being made: statements, built as sim::Statements and printed by the printer, with the
// comment lines that go before each (the printer has no comments).
struct TraceText {
  sim::Trace trace;
  std::vector<std::string> comments{std::string()}; // [i] before statement i, back() after the last

  void comment(const std::string &lines) { comments.back() += lines; }
  void add(sim::Statement s, sim::Outcome expect) {
    s.expect = std::move(expect);
    trace.statements.push_back(std::move(s));
    comments.emplace_back();
  }
  int mount_file(const std::string &name, bool created) {
    const int slot = intern(trace.names.mount_files, name);
    trace.names.mount_file_created.resize(trace.names.mount_files.size(), false);
    if (created)
      trace.names.mount_file_created[static_cast<std::size_t>(slot)] = true;
    return slot;
  }
  int backing_file(const std::string &name) { return intern(trace.names.backing_files, name); }
  static int intern(std::vector<std::string> &names, const std::string &name) {
    auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end())
      it = names.insert(it, name);
    return static_cast<int>(it - names.begin());
  }
  // The file's text, and each statement's line in it (for the simulator's reports).
  std::string render() {
    std::vector<std::string> lines;
    std::istringstream printed(sim::print_trace(trace));
    for (std::string line; std::getline(printed, line);)
      lines.push_back(line + "\n");
    FPSIM_ASSERT(lines.size() >= trace.statements.size(), "print_trace writes a line per statement after its header");
    const std::size_t header = lines.size() - trace.statements.size();
    std::string out;
    int line_no = 0;
    for (std::size_t i = 0; i < lines.size(); ++i, ++line_no) {
      if (i >= header) {
        const std::string &before = comments[i - header];
        out += before;
        line_no += static_cast<int>(std::count(before.begin(), before.end(), '\n'));
        trace.statements[i - header].line = line_no + 1;
      }
      out += lines[i];
    }
    return out + comments.back();
  }
};

// 0 or -errno, as an ioctl returned it.
sim::Outcome result_outcome(int rc) { return rc == 0 ? sim::Outcome::ok() : sim::Outcome::errno_(-rc); }

// ---- what the server saw ----------------------------------------------------------------------------

// The session's observer: writes the trace as the server sees it. What follows an open can change
// its statement (a refused open, an O_TRUNC), so each handle remembers its statement. The session
// calls it with its lock held; the recorder reads it only after the session has shut down.
class Recording final : public SessionObserver {
public:
  Recording(bool verbose, const sim::InitSpec &init) : verbose_(verbose) {
    sim::Statement mount;
    mount.op = sim::Op::Init;
    mount.init = init;
    text_.add(std::move(mount), sim::Outcome::ok());
  }

  void request(const p::fuse_in_header &hdr, const char *in, std::size_t insize) override {
    if (verbose_)
      fmt::print(stderr, "[record] pid {} {} nodeid {}\n", hdr.pid, opcode_text(hdr.opcode), hdr.nodeid);
    ++counts_[hdr.opcode];
    observe_follow_up(hdr, in, insize);
  }
  void backing_opened(const std::string &file, int result) override {
    sim::Statement s;
    s.op = sim::Op::BackingOpen;
    s.backing = add_name(text_.trace.names.backings, "B");
    s.backing_file = text_.backing_file(file);
    sim::Outcome id;
    id.kind = sim::Outcome::Kind::Id;
    id.id = result;
    if (result > 0)
      live_[result] = s.backing;
    text_.add(std::move(s), result > 0 ? id : sim::Outcome::errno_(-result));
    if (verbose_)
      fmt::print(stderr, "[record] BACKING_OPEN {} => {}\n", file,
                 result > 0 ? fmt::format("id={}", result) : sim::errno_name(-result));
  }
  void backing_closed(const std::string &file, std::int32_t id, int result) override {
    sim::Statement s;
    s.op = sim::Op::BackingClose;
    s.backing = live_.at(id);
    live_.erase(id);
    text_.add(std::move(s), result_outcome(result));
    if (verbose_)
      fmt::print(stderr, "[record] BACKING_CLOSE {} (id {}) => {}\n", file, id,
                 result == 0 ? std::string("ok") : sim::errno_name(-result));
  }
  void opened(const OpenEvent &event) override;
  void released(const OpenEvent &event) override {
    const int index = by_fh_.at(*event.fh);
    by_fh_.erase(*event.fh);
    const bool refused = handles_.at(static_cast<std::size_t>(index)).refused;
    // A refused open's synchronous RELEASE is its "+release", not a close(2).
    if (!refused) {
      sim::Statement s;
      s.op = sim::Op::Close;
      s.handle = index;
      text_.add(std::move(s), sim::Outcome::ok());
    }
    if (verbose_)
      fmt::print(stderr, "[record]   => release H{}{}\n", index + 1, refused ? " (refused open)" : "");
  }

  const std::map<std::uint32_t, std::uint64_t> &counts() const { return counts_; }
  // Names the command used that the trace grammar cannot hold.
  std::vector<std::string> inexpressible_names() const;
  // The trace so far, with the handles not released before the unmount noted at its end.
  TraceText finish() const;
  const std::vector<std::string> &warnings() const { return warnings_; }

private:
  struct Handle {
    OpenEvent open;
    std::size_t statement = 0;    // its open, create or opendir
    bool refused = false;         // a synchronous RELEASE followed: open(2) failed with EIO
    bool opener_moved_on = false; // the opening thread sent another request since
    bool flushed = false;         // a FLUSH of its fh arrived (a close(2))
  };

  static int add_name(std::vector<std::string> &names, const char *prefix) {
    names.push_back(prefix + std::to_string(names.size() + 1));
    return static_cast<int>(names.size() - 1);
  }
  sim::Statement &statement_of(const Handle &h) { return text_.trace.statements.at(h.statement); }
  void refused(Handle &h) {
    h.refused = !h.opener_moved_on && !h.flushed && blocked_in_open(h);
    if (!h.refused)
      return;
    sim::Outcome eio = sim::Outcome::errno_(EIO);
    eio.release = true;
    statement_of(h).expect = eio;
  }
  void observe_follow_up(const p::fuse_in_header &hdr, const char *in, std::size_t insize);
  static bool blocked_in_open(const Handle &h);
  sim::ReplySpec reply_of(const model::OpenReply &r) const;

  const bool verbose_;
  TraceText text_;
  std::vector<std::string> warnings_;
  std::map<std::int32_t, int> live_; // backing id -> its backing slot, while registered
  std::vector<Handle> handles_;
  std::map<std::uint64_t, int> by_fh_;       // fh -> handle, until released
  std::map<std::uint32_t, int> just_opened_; // thread -> the handle its last request opened
  std::map<std::uint32_t, std::uint64_t> counts_; // requests received, by opcode
};

std::vector<std::string> Recording::inexpressible_names() const {
  std::vector<std::string> bad;
  for (const std::string &name : text_.trace.names.mount_files)
    if (!valid_name(name))
      bad.push_back(name);
  for (const std::string &name : text_.trace.names.backing_files)
    if (!valid_backing_file(name))
      bad.push_back(name);
  std::sort(bad.begin(), bad.end());
  bad.erase(std::unique(bad.begin(), bad.end()), bad.end()); // a name can be both
  return bad;
}

TraceText Recording::finish() const {
  TraceText t = text_;
  for (const auto &[fh, index] : by_fh_) // fh order is the order the handles were given out
    t.comment(fmt::format("# {} was not released before the unmount (the replay's teardown closes it)\n",
                          t.trace.names.handles.at(static_cast<std::size_t>(index))));
  return t;
}

// Whether the thread that opened `h` is blocked in the syscall that opened it (see below).
bool Recording::blocked_in_open(const Handle &h) {
  if (h.open.pid == 0)
    return false;
  std::FILE *f = std::fopen(fmt::format("/proc/{}/syscall", h.open.pid).c_str(), "r");
  if (f == nullptr)
    return false; // gone: it is not waiting for anything
  long nr = -1;
  const int got = std::fscanf(f, "%ld", &nr); // "running" or a negative number do not count
  std::fclose(f);
  if (got != 1 || nr < 0)
    return false;
  if (h.open.request.flags & kFmodeExec)
    return nr == SYS_execve || nr == SYS_execveat;
  const long opens[] = {
#ifdef SYS_open
      SYS_open,
#endif
#ifdef SYS_creat
      SYS_creat,
#endif
      SYS_openat,
#ifdef SYS_openat2
      SYS_openat2,
#endif
  };
  return std::find(std::begin(opens), std::end(opens), nr) != std::end(opens);
}

// What follows an open tells two things the OPEN itself does not.
// - A refused open: the kernel rejects the reply after the OPEN (all open-mode errors are EIO at
//   open(2)) and puts the file at once with a synchronous RELEASE of its fh, sent by the opening
//   thread from inside open(2). That RELEASE carries pid 0 (release requests go out without
//   credentials), so it is recognised by three things together: no FLUSH of the fh came first (no
//   close(2) happened), the opening thread has sent no other request since its OPEN, and that thread
//   is, right now, blocked in an open(2)-family syscall (execve(2) for an exec open) according to
//   /proc/<tid>/syscall: it is waiting for the answer to this very RELEASE. The last check keeps
//   apart the files that are released without a close(2) of their own: the executable of an exec
//   (put when the process exits, or at once for a script), a file put by the kernel.
// - O_TRUNC: without FUSE_ATOMIC_O_TRUNC the kernel drops O_TRUNC from OPEN and truncates right
//   after the open instead: a SETATTR of size 0 without FATTR_FH on the inode from the opening
//   thread, after at most GETATTR/GETXATTR (security.capability) of its own. ftruncate(2) would
//   carry FATTR_FH.
void Recording::observe_follow_up(const p::fuse_in_header &hdr, const char *in, std::size_t insize) {
  if (hdr.opcode == p::FLUSH) {
    p::fuse_flush_in flush{};
    if (read_struct(in, insize, flush))
      if (auto it = by_fh_.find(flush.fh); it != by_fh_.end())
        handles_.at(static_cast<std::size_t>(it->second)).flushed = true;
  }
  if (hdr.opcode == p::RELEASE) {
    p::fuse_release_in rel{};
    if (read_struct(in, insize, rel))
      if (auto it = by_fh_.find(rel.fh); it != by_fh_.end())
        refused(handles_.at(static_cast<std::size_t>(it->second)));
  }
  if (hdr.pid == 0)
    return;
  auto it = just_opened_.find(hdr.pid);
  if (it == just_opened_.end())
    return;
  Handle &h = handles_.at(static_cast<std::size_t>(it->second));
  h.opener_moved_on = true;
  if ((hdr.opcode == p::GETATTR || hdr.opcode == p::GETXATTR) && hdr.nodeid == h.open.request.inode)
    return; // still inside open(2): the truncation may follow
  just_opened_.erase(it);
  if (hdr.opcode == p::SETATTR && h.open.request.kind == policy::OpenKind::Open &&
      hdr.nodeid == h.open.request.inode) {
    p::fuse_setattr_in set{};
    if (read_struct(in, insize, set) && (set.valid & p::fattr::SIZE) && set.size == 0 &&
        !(set.valid & p::fattr::FH))
      statement_of(h).o_trunc = true;
  }
}

sim::ReplySpec Recording::reply_of(const model::OpenReply &r) const {
  FPSIM_ASSERT(r.kind != model::OpenReply::Kind::Enosys,
               "the stock policies never answer ENOSYS: what open(2) then returned is not recorded");
  sim::ReplySpec spec;
  if (r.kind == model::OpenReply::Kind::Error) {
    spec.kind = sim::ReplySpec::Kind::Error;
    spec.error = r.error;
    return spec;
  }
  spec = sim::reply_spec_of_wire(r.open_flags, kRecordProfile);
  if (r.backing_id == 0)
    return spec;
  auto slot = live_.find(r.backing_id);
  spec.id_kind = slot != live_.end() ? sim::ReplySpec::IdKind::Name : sim::ReplySpec::IdKind::Literal;
  spec.backing = slot != live_.end() ? slot->second : -1;
  spec.literal_id = slot != live_.end() ? 0 : r.backing_id;
  return spec;
}

// "# H2: ..." lines on what the statement leaves out of the open the server saw.
std::string open_note(const std::string &handle, const policy::OpenRequest &r, std::vector<std::string> &warnings) {
  const std::uint32_t flags = r.flags;
  switch (r.kind) {
  case policy::OpenKind::Opendir:
    return "";
  case policy::OpenKind::Create:
    if ((flags & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL)) {
      warnings.push_back(fmt::format("{} (CREATE of {}) had no O_EXCL ({}); written as create", handle, r.name,
                                     open_flags_text(flags)));
      return fmt::format("# {}: CREATE of {} without O_EXCL ({}); written as create\n"
                         "# (O_CREAT|O_EXCL|O_RDWR): the server saw CREATE, so the file did not exist, and the\n"
                         "# open transitions are the same\n",
                         handle, r.name, open_flags_text(flags));
    }
    if ((flags & (O_ACCMODE | O_CREAT | O_EXCL | O_DIRECT)) != (O_CREAT | O_EXCL | O_RDWR))
      return fmt::format("# {}: CREATE of {} with {}; a trace's create is O_CREAT|O_EXCL|O_RDWR\n"
                         "# (the access mode changes no open or close transition)\n",
                         handle, r.name, open_flags_text(flags));
    return "";
  case policy::OpenKind::Open:
    if (flags & kFmodeExec)
      return fmt::format("# {}: the kernel's open of {} as an executable (execve); no close(2) of its own "
                         "releases it\n", handle, r.name);
    return "";
  }
  FPSIM_UNREACHABLE("an OpenKind outside the enum");
}

void Recording::opened(const OpenEvent &e) {
  const policy::OpenRequest &r = e.request;
  const int index = add_name(text_.trace.names.handles, "H");
  text_.comment(open_note(text_.trace.names.handles.back(), r, warnings_));
  sim::Statement s;
  switch (r.kind) {
  case policy::OpenKind::Opendir:
    s.op = sim::Op::Opendir;
    break;
  case policy::OpenKind::Create:
    s.op = sim::Op::Create;
    s.file = text_.mount_file(r.name, true);
    break;
  case policy::OpenKind::Open:
    s.op = sim::Op::Open;
    s.file = text_.mount_file(r.name, false);
    s.access = access_of(r.flags);
    s.o_direct = (r.flags & O_DIRECT) != 0;
    s.o_trunc = (r.flags & O_TRUNC) != 0;
    break;
  }
  s.handle = index;
  s.reply = reply_of(e.reply);
  handles_.push_back(Handle{e, text_.trace.statements.size()});
  const bool failed = e.reply.kind == model::OpenReply::Kind::Error;
  text_.add(std::move(s), failed ? sim::Outcome::errno_(e.reply.error) : sim::Outcome::ok());
  if (e.fh) {
    by_fh_[*e.fh] = index;
    just_opened_[e.pid] = index;
  }
  if (verbose_)
    fmt::print(stderr, "[record]   => H{} {} flags {} ({:#x})\n", index + 1, r.name, open_flags_text(r.flags),
               r.flags);
}

// ---- running the command ----------------------------------------------------------------------------

struct CommandResult {
  bool started = false;
  int start_errno = 0;  // clone failed
  int exec_errno = 0;   // chdir or execve failed in the command's process
  bool timed_out = false;
  int exit_code = -1;   // the command's exit code, 128+N when killed by signal N
};

// The command's process: only raw syscalls and async-signal-safe calls (it is a copy of one thread of
// a process whose other threads may hold locks).
// Drops root for the command (uid < 0: keeps the caller's user). Raw syscalls: this runs after
// clone in a copy of a multi-threaded process.
int drop_privileges(long uid, long gid) {
  if (uid < 0)
    return 0;
  if (syscall(SYS_setgroups, 0L, nullptr) != 0 || syscall(SYS_setgid, gid) != 0 ||
      syscall(SYS_setuid, uid) != 0)
    return -1;
  return 0;
}

[[noreturn]] void exec_command(const char *path, char *const *argv, char *const *envp, const char *cwd,
                               int err_fd, long uid, long gid) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE, SIGCHLD})
    sigaction(sig, &dfl, nullptr);
  // chdir first, as root: the mount point's parents are 0700 root directories, but the command
  // reaches the mount through its working directory.
  if (chdir(cwd) == 0 && drop_privileges(uid, gid) == 0)
    execve(path, argv, envp);
  const int e = errno;
  (void)!::write(err_fd, &e, sizeof e);
  syscall(SYS_exit_group, 127);
  __builtin_unreachable();
}

// PID 1 of the command's PID namespace: starts the command, reaps whatever gets reparented to it, and
// exits with the command's status as soon as the command ends, which kills everything the command
// left running in the namespace.
[[noreturn]] void init_main(const char *path, char *const *argv, char *const *envp, const char *cwd,
                            int err_fd, long uid, long gid) {
  syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  const long cmd = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (cmd == 0)
    exec_command(path, argv, envp, cwd, err_fd, uid, gid);
  if (cmd < 0) {
    const int e = errno;
    (void)!::write(err_fd, &e, sizeof e);
    syscall(SYS_exit_group, 127);
  }
  for (;;) {
    int status = 0;
    const long r = syscall(SYS_wait4, -1L, &status, 0, nullptr);
    if (r == cmd) {
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      syscall(SYS_exit_group, code);
    }
    if (r < 0 && errno != EINTR)
      syscall(SYS_exit_group, 125);
  }
}

CommandResult run_command(const std::string &path, const std::vector<std::string> &args, const std::string &cwd,
                          std::chrono::seconds timeout, const std::optional<RecordOptions::RunAs> &run_as) {
  const long uid = run_as ? static_cast<long>(run_as->uid) : -1;
  const long gid = run_as ? static_cast<long>(run_as->gid) : -1;
  CommandResult res;
  // Everything the new processes need is built here: after clone they make no allocation.
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char **e = environ; e && *e; ++e)
    if (std::strncmp(*e, "PWD=", 4) != 0)
      env_strings.emplace_back(*e);
  env_strings.push_back("PWD=" + cwd);
  std::vector<char *> envp;
  for (const std::string &e : env_strings)
    envp.push_back(const_cast<char *>(e.c_str()));
  envp.push_back(nullptr);
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    res.start_errno = errno;
    return res;
  }
  std::fflush(nullptr);
  const long pid = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0)
    init_main(path.c_str(), argv.data(), envp.data(), cwd.c_str(), err_pipe[1], uid, gid);
  ::close(err_pipe[1]);
  if (pid < 0) {
    res.start_errno = errno;
    ::close(err_pipe[0]);
    return res;
  }
  res.started = true;
  // Polled rather than waited for: the deadline has to hold whatever the command does.
  const auto end = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t got = waitpid(static_cast<pid_t>(pid), &status, WNOHANG);
    if (got == static_cast<pid_t>(pid))
      break;
    if (got < 0 && errno != EINTR) {
      status = 0;
      break;
    }
    if (!res.timed_out && std::chrono::steady_clock::now() >= end) {
      res.timed_out = true;
      kill(static_cast<pid_t>(pid), SIGKILL); // the namespace's init: everything in it dies
    }
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(status))
    res.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    res.exit_code = 128 + WTERMSIG(status);
  int e = 0;
  if (::read(err_pipe[0], &e, sizeof e) == static_cast<ssize_t>(sizeof e))
    res.exec_errno = e;
  ::close(err_pipe[0]);
  return res;
}

// ---- the isolated recording ---------------------------------------------------------------------------

struct Plan {
  RecordOptions options;
  std::string exec_path;           // what execve gets (relative paths are relative to the mount)
  std::vector<std::string> files;  // DIR's regular files, sorted
  std::vector<std::string> skipped; // DIR entries that are not regular files
};

// The server of a recording: the copies of DIR's files in `work`, the stock policy, `recording`
// observing; mounted, with the policy's ids registered. nullptr, and `err`, on failure.
std::unique_ptr<FuseServer> start_server(const IsolatedDirs &dirs, const Plan &plan, const sim::InitSpec &init,
                                         Recording &recording, std::string &err) {
  const std::string work = dirs.backing + "/files";
  if (mkdir(work.c_str(), 0755) != 0) {
    err = errno_text("mkdir " + work, errno);
    return nullptr;
  }
  for (const std::string &name : plan.files) {
    std::error_code ec;
    if (!std::filesystem::copy_file(plan.options.source_dir + "/" + name, work + "/" + name, ec)) {
      err = "copy " + plan.options.source_dir + "/" + name + ": " + ec.message();
      return nullptr;
    }
  }
  std::unique_ptr<FileStore> files = directory_files(work, plan.files, err);
  if (!files)
    return nullptr;
  ServerParts parts{std::move(files), policy::make_stock(plan.options.policy, kRecordProfile), &recording,
                    kEntryTimeout};
  std::unique_ptr<FuseServer> server = FuseServer::open(std::move(parts), dirs.ctl, err);
  if (server && server->mount(dirs.mnt, sim::init_reply(init), err) != 0)
    return nullptr;
  return server;
}

// Why nothing can be recorded from this run (printed), or kBodyOk.
int check_run(const CommandResult &cmd, const Plan &plan, const FuseServer &server, bool all_released,
              const Recording &recording) {
  const RecordOptions &opt = plan.options;
  if (!cmd.started) {
    fmt::print(stderr, "fpsim-harness record: cannot start the command: {}\n", std::strerror(cmd.start_errno));
    return kBodySetupFailed;
  }
  if (cmd.exec_errno != 0) {
    fmt::print(stderr, "fpsim-harness record: cannot execute {}: {}\n", printable(opt.command.front()),
               std::strerror(cmd.exec_errno));
    return kBodyExecFailed;
  }
  if (cmd.timed_out) {
    fmt::print(stderr, "fpsim-harness record: the command did not finish within {} s and was killed; "
                       "nothing recorded\n", opt.timeout.count());
    return kBodyTimedOut;
  }
  for (const std::string &problem : server.problems())
    fmt::print(stderr, "fpsim-harness record: server: {}\n", problem);
  if (!all_released)
    fmt::print(stderr, "fpsim-harness record: some files were still not released {} s after the command "
                       "ended\n", std::chrono::duration_cast<std::chrono::seconds>(kReleaseGrace).count());
  if (const std::vector<std::string> bad = recording.inexpressible_names(); !bad.empty()) {
    fmt::print(stderr, "fpsim-harness record: the command opened or created files whose names a trace cannot "
                       "hold ([A-Za-z][A-Za-z0-9_.-]{{0,63}}, and not dir, pipe, socket, devnull or badfd "
                       "in a backing_open): {}; nothing recorded\n", quoted_list(bad));
    return kBodyInexpressible;
  }
  if (cmd.exit_code != 0)
    fmt::print(stderr, "fpsim-harness record: note: the command exited with status {}\n", cmd.exit_code);
  return kBodyOk;
}

// The comment lines before the first statement: what was recorded and how.
std::string header_comments(const Plan &plan, int exit_code) {
  const RecordOptions &opt = plan.options;
  const bool registers = opt.policy != policy::Stock::Cached && opt.policy != policy::Stock::DirectIo;
  std::string text = fmt::format("# recorded by fpsim-harness record --policy {} from the command\n#   {}\n",
                                 policy::stock_name(opt.policy), printable(shell_quote(opt.command)));
  text += fmt::format("# run in a mount of {} regular file(s) copied from {}; exit status {}\n",
                      plan.files.size(), printable(opt.source_dir), exit_code);
  std::istringstream policy_text("policy " + std::string(policy::stock_name(opt.policy)) + ": " +
                                 std::string(policy::stock_description(opt.policy)));
  for (std::string line; std::getline(policy_text, line);)
    text += "# " + line + "\n";
  for (const std::string &s : plan.skipped)
    text += "# not served (not a regular file): " + printable(s) + "\n";
  text += registers
              ? "# statements: the server's BACKING_OPEN/BACKING_CLOSE ioctls, and every OPEN, CREATE, OPENDIR and\n"
                "# RELEASE it received, in the order it received them\n"
              : "# statements: every OPEN, CREATE, OPENDIR and RELEASE the server received, in that order\n";
  return text;
}

// The comment lines after the last statement: the requests that made no statement.
std::string trailer_comments(const Plan &plan, const FuseServer &server, const Recording &recording) {
  const bool registers = plan.options.policy == policy::Stock::Hp || plan.options.policy == policy::Stock::Passthrough;
  std::string text = registers
                         ? "# reads and writes are not statements: passthrough I/O goes to the backing files, unseen\n"
                         : "# reads and writes are not statements (the server answered them: READ/WRITE below)\n";
  std::vector<std::string> counts;
  for (const auto &[op, n] : recording.counts())
    counts.push_back(opcode_text(op) + " " + std::to_string(n));
  std::vector<std::string> enosys;
  for (std::uint32_t op : server.unimplemented())
    enosys.push_back(opcode_text(op));
  text += comment_list("requests the server received:", counts);
  if (!enosys.empty())
    text += comment_list("answered ENOSYS (not implemented):", enosys);
  return text;
}

// Replays the trace built from the recording on the simulator: kBodyOk when it agrees, else
// kBodyDisagrees; `report` is what the parent prints once OUT is written.
int simulate(const sim::Trace &trace, const std::string &text, const Plan &plan, std::string &report) {
  // The file must say what was replayed, so that `fpsim replay OUT` gives the same verdict: the
  // comment lines spliced between the printed statements must leave them as they were.
  const sim::ParseResult reread = sim::parse_trace(text, trace.path);
  if (const auto *e = std::get_if<sim::ParseError>(&reread))
    fmt::print(stderr, "fpsim-harness record: the recorded trace does not parse: {}\n{}", e->str(), text);
  const auto *reread_trace = std::get_if<sim::Trace>(&reread);
  FPSIM_ASSERT(reread_trace && sim::print_trace(*reread_trace) == sim::print_trace(trace),
               "the recorded trace reads back as the statements replayed");

  sim::SimExecutor sim_ex;
  const sim::ReplayResult replayed = sim::replay(trace, sim_ex, trace.profile);
  const std::string out = printable(plan.options.output);
  report = fmt::format("fpsim-harness record: wrote {} ({} statements, policy {})\n", out,
                       trace.statements.size(), policy::stock_name(plan.options.policy));
  if (replayed.passed()) {
    report += fmt::format("fpsim-harness record: the simulator agrees: PASS {} [6.18] {} steps\n", out,
                          replayed.steps);
    return kBodyOk;
  }
  report += fmt::format("fpsim-harness record: the simulator DISAGREES with the recorded trace: FAIL {} [6.18]\n",
                        out);
  for (const sim::ReplayFailure &f : replayed.failures)
    report += sim::format_failure(f, plan.options.output);
  return kBodyDisagrees;
}

TraceText make_trace(const Plan &plan, int exit_code, const FuseServer &server, const Recording &recording) {
  TraceText t = recording.finish();
  t.trace.path = plan.options.output;
  t.trace.profile = kRecordProfile;
  t.trace.profile_given = true;
  t.trace.title = "recorded: " + printable(shell_quote(plan.options.command));
  std::replace(t.trace.title.begin(), t.trace.title.end(), '"', '\'');
  t.comments.front() = header_comments(plan, exit_code) + t.comments.front();
  t.comment(trailer_comments(plan, server, recording));
  for (const std::string &w : recording.warnings())
    fmt::print(stderr, "fpsim-harness record: note: {}\n", w);
  return t;
}

// In the isolated child: records, writes the trace to `trace_fd` and the parent's report to
// `report_fd`, and returns a kBody* verdict.
int record_body(const IsolatedDirs &dirs, const Plan &plan, int trace_fd, int report_fd) {
  // Only the parent decides about signals: it cancels the run and kills this child.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  const RecordOptions &opt = plan.options;
  sim::InitSpec init;
  init.passthrough = true;
  init.max_stack_depth = 1;
  Recording recording(opt.verbose, init);
  std::string err;
  std::unique_ptr<FuseServer> server = start_server(dirs, plan, init, recording, err);
  if (!server) {
    fmt::print(stderr, "fpsim-harness record: {}\n", err);
    return kBodySetupFailed;
  }
  const CommandResult cmd = run_command(plan.exec_path, opt.command, dirs.mnt, opt.timeout, opt.run_as);
  const bool all_released = server->wait_all_released(kReleaseGrace);
  server->end_run();
  server->shutdown();
  if (const int rc = check_run(cmd, plan, *server, all_released, recording); rc != kBodyOk)
    return rc;

  TraceText t = make_trace(plan, cmd.exit_code, *server, recording);
  const std::string text = t.render();
  std::string report;
  const int verdict = simulate(t.trace, text, plan, report);
  if (!write_all(trace_fd, text) || !write_all(report_fd, report)) {
    fmt::print(stderr, "fpsim-harness record: {}\n", errno_text("writing the result", errno));
    return kBodyWriteFailed;
  }
  return verdict;
}

// ---- the parent ----------------------------------------------------------------------------------

// The path execve gets for `cmd`, like execvp would search it, or nullopt. Relative candidates are
// checked against the source directory: the command runs in a copy of it.
std::optional<std::string> resolve_command(const std::string &cmd, const std::string &source_dir) {
  auto executable = [&](const std::string &candidate) {
    const std::string check = candidate.front() == '/' ? candidate : source_dir + "/" + candidate;
    struct stat st {};
    return stat(check.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(check.c_str(), X_OK) == 0;
  };
  if (cmd.empty())
    return std::nullopt;
  if (cmd.find('/') != std::string::npos)
    return executable(cmd) ? std::optional(cmd) : std::nullopt;
  const char *env = getenv("PATH");
  const std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    const std::size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty())
      dir = ".";
    const std::string candidate = dir + "/" + cmd;
    if (executable(candidate))
      return candidate;
    if (colon == std::string::npos)
      return std::nullopt;
    start = colon + 1;
  }
}

// Removes a temporary output file unless it was renamed into place.
struct TempFile {
  std::string path;
  int fd = -1;
  ~TempFile() {
    if (fd >= 0)
      ::close(fd);
    if (!path.empty())
      unlink(path.c_str());
  }
};

std::string dirname_of(const std::string &path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

std::string basename_of(const std::string &path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// DIR's regular files (every name one a trace can hold) and the command to run, or the usage
// error's exit code (printed).
int plan_recording(Plan &plan) {
  const RecordOptions &opt = plan.options;
  if (opt.command.empty()) {
    fmt::print(stderr, "fpsim-harness record: no command given (record ... -- CMD [ARGS...])\n");
    return kExitUsage;
  }
  struct stat st {};
  if (stat(opt.source_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fmt::print(stderr, "fpsim-harness record: --source {}: {}\n", printable(opt.source_dir),
               S_ISDIR(st.st_mode) || errno == 0 ? "not a directory" : std::strerror(errno));
    return kExitUsage;
  }
  DIR *dir = opendir(opt.source_dir.c_str());
  if (dir == nullptr) {
    fmt::print(stderr, "fpsim-harness record: --source {}: {}\n", printable(opt.source_dir), std::strerror(errno));
    return kExitUsage;
  }
  std::vector<std::string> bad;
  while (dirent *e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..")
      continue;
    struct stat fst {};
    if (lstat((opt.source_dir + "/" + name).c_str(), &fst) != 0 || !S_ISREG(fst.st_mode)) {
      plan.skipped.push_back(name);
      continue;
    }
    // The passthrough policy names every file in a backing_open, where the special sources are taken.
    if (!valid_name(name) || (opt.policy == policy::Stock::Passthrough && !valid_backing_file(name)))
      bad.push_back(name);
    else
      plan.files.push_back(name);
  }
  closedir(dir);
  std::sort(plan.files.begin(), plan.files.end());
  std::sort(plan.skipped.begin(), plan.skipped.end());
  if (!bad.empty()) {
    std::sort(bad.begin(), bad.end());
    fmt::print(stderr, "fpsim-harness record: --source {}: file names a trace cannot hold "
                       "([A-Za-z][A-Za-z0-9_.-]{{0,63}}{}): {}\n", printable(opt.source_dir),
               opt.policy == policy::Stock::Passthrough ? ", and not dir, pipe, socket, devnull or badfd" : "",
               quoted_list(bad));
    return kExitUsage;
  }
  for (const std::string &s : plan.skipped)
    fmt::print(stderr, "fpsim-harness record: note: {} is not a regular file; not served\n", printable(s));
  std::optional<std::string> exec_path = resolve_command(opt.command.front(), opt.source_dir);
  if (!exec_path) {
    fmt::print(stderr, "fpsim-harness record: {}: command not found\n", printable(opt.command.front()));
    return kExitUsage;
  }
  plan.exec_path = *exec_path;
  return kExitOk;
}

int cannot_write(const std::string &output, int e) {
  fmt::print(stderr, "fpsim-harness record: -o {}: cannot write: {}\n", printable(output), std::strerror(e));
  return kExitUsage;
}

// The template of OUT's temporary file beside it, once a probe showed it can be made there (so an
// unwritable OUT fails before anything runs), or the usage error's exit code.
int probe_output(const std::string &output, std::string &out_template) {
  struct stat st {};
  if (output.empty() || output.back() == '/' || (stat(output.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
    fmt::print(stderr, "fpsim-harness record: -o {}: is a directory\n", printable(output));
    return kExitUsage;
  }
  out_template = dirname_of(output) + "/." + basename_of(output) + ".XXXXXX";
  // A probe only: the real temporary file is made at the end, so that a harness killed mid-run
  // (even with SIGKILL) leaves nothing beside OUT.
  TempFile probe;
  probe.path = out_template;
  probe.fd = mkostemp(probe.path.data(), O_CLOEXEC);
  if (probe.fd < 0) {
    probe.path.clear();
    return cannot_write(output, errno);
  }
  return kExitOk;
}

// Writes OUT atomically (temporary file, then rename): 0 or the usage error's exit code.
int write_output(const std::string &out_template, const std::string &output, const std::string &text) {
  TempFile out;
  out.path = out_template;
  out.fd = mkostemp(out.path.data(), O_CLOEXEC);
  if (out.fd < 0) {
    out.path.clear();
    return cannot_write(output, errno);
  }
  const mode_t mask = umask(0);
  umask(mask);
  const bool written = write_all(out.fd, text) && fsync(out.fd) == 0 && fchmod(out.fd, 0666 & ~mask) == 0;
  const int close_rc = ::close(out.fd);
  out.fd = -1;
  if (!written || close_rc != 0 || rename(out.path.c_str(), output.c_str()) != 0)
    return cannot_write(output, errno);
  out.path.clear();
  return kExitOk;
}

} // namespace

int record(const RecordOptions &options, const std::function<int()> &preconditions) {
  Plan plan;
  plan.options = options;
  std::string out_template;
  if (const int rc = plan_recording(plan); rc != kExitOk)
    return rc;
  if (const int rc = probe_output(plan.options.output, out_template); rc != kExitOk)
    return rc;
  if (const int rc = preconditions(); rc != 0)
    return rc;

  const int trace_fd = child_result_file();
  const int report_fd = child_result_file();
  if (trace_fd < 0 || report_fd < 0) {
    fmt::print(stderr, "fpsim-harness record: mkstemp: {}\n", std::strerror(errno));
    return kExitFailed;
  }
  const IsolatedRun run = run_isolated(
      [&](const IsolatedDirs &dirs) { return record_body(dirs, plan, trace_fd, report_fd); },
      plan.options.timeout + 60s);
  const std::string text = read_child_result(trace_fd);
  const std::string report = read_child_result(report_fd);
  if (isolated_runs_cancelled())
    return kRecordInterrupted;
  if (!run.started) {
    fmt::print(stderr, "fpsim-harness record: the isolated run did not start: {}\n", run.error);
    return kExitFailed;
  }
  if (!run.cleaned_up)
    fmt::print(stderr, "fpsim-harness record: warning: {}\n", run.error);
  const bool recorded = !run.timed_out && run.signal == 0 &&
                        (run.exit_code == kBodyOk || run.exit_code == kBodyDisagrees);
  if (!recorded) {
    if (run.exit_code == kBodyExecFailed)
      return kExitUsage; // already explained
    if (run.timed_out || run.signal != 0)
      fmt::print(stderr, "fpsim-harness record: the recording {}{}\n",
                 run.timed_out ? "timed out" : fmt::format("died of signal {}", run.signal),
                 run.error.empty() ? "" : " (" + run.error + ")");
    return kExitFailed;
  }
  if (const int rc = write_output(out_template, plan.options.output, text); rc != kExitOk)
    return rc;
  fmt::print(stderr, "{}", report);
  return run.exit_code == kBodyOk ? kExitOk : kExitFailed;
}

} // namespace fpsim::harness
