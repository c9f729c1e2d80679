#include "kernel_executor.h"

#include "base/assert.h"
#include "fuse_proto.h"
#include "wire.h"
#include "sim/trace/printer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <thread>

namespace fpsim::harness {

using namespace std::chrono_literals;
using sim::NameKind;
using sim::Op;
using sim::Outcome;
using sim::Statement;

namespace {

constexpr std::size_t kFileSize = 64 * 1024;
constexpr std::size_t kMapSize = 4096;
constexpr std::size_t kReadSize = 1;
constexpr char kWriteByte = 'F'; // keeps a served file's "FUSE" prefix; foreign to "BACKING"

// Every byte of a served file is 'F' and of a backing file 'B', so a read(2) at any offset tells
// the routes apart (pread would fail with ESPIPE on nonseekable/stream files).
std::string server_content(const std::string &) { return std::string(kFileSize, 'F'); }
std::string backing_content(const std::string &) { return std::string(kFileSize, 'B'); }

Outcome kind(Outcome::Kind k) {
  Outcome o;
  o.kind = k;
  return o;
}

Outcome blocks() { return kind(Outcome::Kind::Blocks); }

KernelExecutor::CallResult call_result(const SysResult &sr) {
  KernelExecutor::CallResult r;
  r.ret = sr.ret;
  r.err = sr.err;
  return r;
}

int access_flags(sim::AccessMode a) {
  switch (a) {
  case sim::AccessMode::ReadOnly:
    return O_RDONLY;
  case sim::AccessMode::WriteOnly:
    return O_WRONLY;
  case sim::AccessMode::ReadWrite:
    return O_RDWR;
  }
  FPSIM_UNREACHABLE("an access mode outside the enum");
}

// Drops CAP_SYS_ADMIN from the calling thread's effective set (capabilities are per thread; the raw
// syscall, unlike libcap's process-wide helpers, changes only this one). 0 or -errno.
int drop_sys_admin_in_this_thread() {
  __user_cap_header_struct hdr{};
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capget, &hdr, data) != 0)
    return -errno;
  data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
  if (syscall(SYS_capset, &hdr, data) != 0)
    return -errno;
  return 0;
}

// Whether every other thread of this process is asleep (or gone): no worker is about to return from
// its syscall and the server thread is not handling a request. A call still in flight then is
// blocked in the kernel, not just slow to be scheduled.
bool state_running(const std::string &stat_path) {
  std::ifstream stat(stat_path);
  std::string text;
  std::getline(stat, text);
  const std::size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'R';
}

bool others_asleep(const std::vector<pid_t> &helpers) {
  for (pid_t pid : helpers)
    if (state_running(fmt::format("/proc/{}/stat", pid)))
      return false;
  const long self = static_cast<long>(gettid());
  DIR *dir = opendir("/proc/self/task");
  if (dir == nullptr)
    return true;
  bool asleep = true;
  while (dirent *e = readdir(dir)) {
    if (e->d_name[0] == '.')
      continue;
    const long tid = std::strtol(e->d_name, nullptr, 10);
    if (tid == self)
      continue;
    if (state_running(fmt::format("/proc/self/task/{}/stat", tid))) {
      asleep = false;
      break;
    }
  }
  closedir(dir);
  return asleep;
}

} // namespace

struct KernelExecutor::Call {
  PendingCall<CallResult> pc;
  std::optional<CallResult> result;

  std::optional<CallResult> wait(std::chrono::milliseconds t) {
    if (!result)
      result = pc.wait_for(t);
    return result;
  }
  bool done() { return result.has_value() || pc.finished(); }
};

bool needs_overlayfs(const sim::Trace &t) {
  return std::any_of(t.statements.begin(), t.statements.end(), [](const Statement &s) {
    return s.op == Op::BackingOpen && s.source_fs == sim::SourceFs::Overlay;
  });
}

KernelExecutor::KernelExecutor(IsolatedDirs dirs, KernelExecutorOptions options)
    : dirs_(std::move(dirs)), options_(options) {}

KernelExecutor::~KernelExecutor() { cleanup(); }

bool KernelExecutor::settled(const std::chrono::steady_clock::time_point &start) {
  if (std::chrono::steady_clock::now() - start < options_.deadline)
    return false;
  if (std::chrono::steady_clock::now() - start >= options_.deadline + options_.settle_limit)
    return true; // something keeps running: give up waiting for quiet
  for (int i = 0; i < 3; ++i) {
    std::vector<pid_t> helpers;
    for (const auto &m : maps_)
      if (m && m->pid > 0)
        helpers.push_back(m->pid);
    if (!others_asleep(helpers))
      return false;
    if (i < 2)
      std::this_thread::sleep_for(3ms);
  }
  return true;
}

std::optional<KernelExecutor::CallResult> KernelExecutor::wait_blocking(const std::shared_ptr<Call> &call) {
  const auto start = std::chrono::steady_clock::now();
  if (std::optional<CallResult> r = call->wait(options_.deadline))
    return r;
  while (!settled(start))
    if (std::optional<CallResult> r = call->wait(10ms))
      return r;
  return call->wait(0ms);
}

std::shared_ptr<KernelExecutor::Call> KernelExecutor::start(std::function<CallResult()> fn) {
  auto call = std::make_shared<Call>();
  call->pc = PendingCall<CallResult>::start(std::move(fn));
  return call;
}

void KernelExecutor::note(std::string rule, std::string message) {
  violations_.push_back(sim::Violation{std::move(rule), std::move(message)});
}

off_t KernelExecutor::next_write_offset() {
  return static_cast<off_t>(writes_started_++ % kMapSize);
}

std::string KernelExecutor::file_of_handle(int h) const {
  return handle_file_.at(static_cast<std::size_t>(h));
}

// ---- begin / end ----------------------------------------------------------------------------------

void KernelExecutor::begin(const sim::Trace &t, sim::KernelProfile p) {
  cleanup();
  trace_ = &t;
  profile_ = p;
  mounted_once_ = false;
  writeback_cache_ = false;
  violations_.clear();
  problems_seen_ = 0;
  steps_ = 0;
  fault_events_seen_ = 0;
  faults_fired_ = 0;
  fault_aborted_ = false;
  pending_.clear();
  fds_.assign(t.names.handles.size(), -1);
  handle_file_.assign(t.names.handles.size(), "");
  handle_positional_.assign(t.names.handles.size(), true);
  writes_started_ = 0;
  maps_.assign(t.names.mappings.size(), nullptr);
  held_.assign(t.names.writes.size(), std::nullopt);

  std::string err;
  // A fresh 0700 backing directory for this trace.
  static int serial = 0;
  backing_dir_ = fmt::format("{}/t{}", dirs_.backing, serial++);
  if (mkdir(backing_dir_.c_str(), 0700) != 0)
    throw std::runtime_error(fmt::format("mkdir {}: {}", backing_dir_, std::strerror(errno)));
  backing_fds_.clear();
  for (const std::string &name : t.names.backing_files) {
    const std::string path = backing_dir_ + "/" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    const std::string content = backing_content(name);
    if (fd < 0 || ::pwrite(fd, content.data(), content.size(), 0) != static_cast<ssize_t>(content.size()))
      throw std::runtime_error(fmt::format("creating backing file {}: {}", path, std::strerror(errno)));
    backing_fds_.push_back(fd);
  }
  if (needs_overlayfs(t)) {
    const std::string at = backing_dir_ + ".overlay";
    if (mount_overlay(backing_dir_, at, err) != 0)
      throw std::runtime_error(err);
    overlay_dir_ = at;
  }

  // O_TRUNC must not shrink a served file: writes stay in place (README, modelling decisions).
  std::vector<std::pair<std::string, std::string>> files;
  for (std::size_t i = 0; i < t.names.mount_files.size(); ++i)
    if (!t.names.mount_file_created[i])
      files.emplace_back(t.names.mount_files[i], server_content(t.names.mount_files[i]));
  script_ = std::make_shared<policy::ScriptedPolicy>();
  std::unique_ptr<FuseServer> server = FuseServer::open(
      ServerParts{memory_files(files, {true, server_content("")}), script_}, dirs_.ctl, err);
  if (!server)
    throw std::runtime_error(err);
  server_ = std::move(server);
  if (options_.fault && options_.fault->kind != Fault::Kind::KillServerAtStep)
    server_->inject_fault(*options_.fault, fault_hook());
}

void KernelExecutor::cleanup() {
  bool helpers = false;
  for (const auto &m : maps_)
    helpers |= m && m->pid > 0;
  if (!server_ && pending_.empty() && abandoned_.empty() && !helpers && overlay_dir_.empty())
    return;
  std::vector<std::shared_ptr<Call>> calls = abandoned_;
  for (auto &[key, p] : pending_)
    calls.push_back(p.call);
  for (auto &h : held_)
    if (h)
      calls.push_back(h->call);
  bool stuck = false;
  for (auto &c : calls)
    stuck |= !c->done();
  if (stuck && server_ && mounted_once_) {
    std::string err;
    server_->abort(err); // requests in flight fail, so the calls return
  }
  for (auto &c : calls)
    c->wait(options_.long_deadline);
  bool still_stuck = false;
  for (auto &c : calls)
    still_stuck |= !c->done();
  pending_.clear();
  held_.assign(held_.size(), std::nullopt);
  abandoned_.clear();
  for (auto &m : maps_) {
    if (m && m->pid > 0 && (!m->mapped || unmap(*m, options_.long_deadline) == ETIMEDOUT))
      reap(*m, true);
    m.reset();
  }
  for (int &fd : fds_) {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  if (still_stuck) {
    // A worker still inside the kernel may touch the server when it returns: keep it alive.
    new std::shared_ptr<FuseServer>(server_);
  }
  server_.reset();
  for (int fd : backing_fds_)
    ::close(fd);
  backing_fds_.clear();
  if (!overlay_dir_.empty()) {
    // Detached: a backing object a call stuck in the kernel keeps alive may still pin it. It
    // cannot fail on a mount point, and the run's namespace takes whatever is left with it.
    umount2(overlay_dir_.c_str(), MNT_DETACH);
    overlay_dir_.clear();
  }
}

void KernelExecutor::end() { cleanup(); }

// ---- statements -----------------------------------------------------------------------------------

sim::CheckResult KernelExecutor::check(const Statement &, const sim::Bindings &) {
  return sim::CheckResult{sim::CheckResult::Kind::NotObservable, {}};
}

std::vector<sim::Violation> KernelExecutor::after_step() {
  std::vector<sim::Violation> v = std::move(violations_);
  violations_.clear();
  if (server_) {
    std::vector<std::string> problems = server_->problems();
    for (std::size_t i = problems_seen_; i < problems.size(); ++i)
      v.push_back(sim::Violation{"server", problems[i]});
    problems_seen_ = problems.size();
  }
  return v;
}

std::vector<sim::Violation> KernelExecutor::drain() {
  std::vector<sim::Violation> v = after_step();
  auto leak = [&v](std::string message) { v.push_back(sim::Violation{"leak", std::move(message)}); };
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line))
    if (line.find(" " + dirs_.mnt + " ") != std::string::npos)
      leak("still mounted: " + line);
  if (server_ && mounted_once_ && !server_->wait_stopped(options_.long_deadline))
    leak("the server thread is still running");
  for (auto &[key, p] : pending_)
    if (!p.call->done())
      leak(fmt::format("{} {} is still blocked in the kernel", sim::op_name(p.op),
                       trace_->names.of(key.kind).at(static_cast<std::size_t>(key.slot))));
  for (std::size_t i = 0; i < maps_.size(); ++i)
    if (maps_[i] && maps_[i]->mapped)
      leak(fmt::format("mapping {} is still mapped", trace_->names.mappings[i]));
  for (std::size_t w = 0; w < held_.size(); ++w)
    if (held_[w])
      leak(fmt::format("write {} is still held by the server", trace_->names.writes[w]));
  return v;
}

Outcome KernelExecutor::step(const Statement &s, const sim::Bindings &bindings) {
  ++steps_;
  fault_before_step();
  const Outcome o = run_step(s, bindings);
  fault_after_step(o);
  return o;
}

// ---- fault injection ------------------------------------------------------------------------------

std::function<void(const std::string &)> KernelExecutor::fault_hook() const {
  // Copies, not `this`: a server kept alive for a call stuck in the kernel may fire after this
  // executor is gone. Said on stderr at once, because a kill-child fault leaves no other trace in
  // the child, and a test can wait for the line to act while the call is blocked.
  return [spec = options_.fault ? options_.fault->spec : std::string(),
          on_fault = options_.on_fault](const std::string &what) {
    fmt::print(stderr, "fpsim-harness: fault {} fired in process {}: {}\n", spec, getpid(), what);
    if (on_fault)
      on_fault(what);
  };
}

void KernelExecutor::fault_before_step() {
  const std::optional<Fault> &f = options_.fault;
  if (!f || f->kind != Fault::Kind::KillServerAtStep || steps_ != f->nth || !server_)
    return;
  server_->crash();
  const std::string what = fmt::format(
      "the server died before step {}: its thread is gone and its /dev/fuse file was released", steps_);
  ++faults_fired_;
  fault_hook()(what);
  note("fault", f->spec + ": " + what);
}

void KernelExecutor::fault_after_step(const Outcome &o) {
  if (!options_.fault || !server_)
    return;
  const Fault &f = *options_.fault;
  const std::vector<std::string> events = server_->fault_events(options_.long_deadline);
  for (; fault_events_seen_ < events.size(); ++fault_events_seen_) {
    ++faults_fired_;
    note("fault", f.spec + ": " + events[fault_events_seen_]);
  }
  // The harness cannot tell which request a blocked call waits for; once a request is withheld, the
  // first call that blocks is taken to wait for it. Nothing would ever answer it: the connection
  // has to be aborted, as an operator would through fusectl, or the call stays blocked for good.
  if (fault_aborted_ || o.kind != Outcome::Kind::Blocks || !server_->fault_left_request_pending())
    return;
  fault_aborted_ = true;
  std::string err;
  if (server_->abort(err) != 0) {
    note("fault", f.spec + ": a call blocks on the withheld request, and aborting the connection failed: " + err);
    return;
  }
  std::vector<std::shared_ptr<Call>> calls = abandoned_;
  for (auto &[key, p] : pending_)
    calls.push_back(p.call);
  std::size_t stuck = 0;
  for (auto &c : calls)
    stuck += !c->wait(options_.long_deadline).has_value();
  note("fault", fmt::format("{}: the call missed its {} ms deadline (blocks); the harness aborted the connection "
                            "through fusectl, {}",
                            f.spec, options_.deadline.count(),
                            stuck == 0 ? std::string("and every blocked call returned")
                                       : fmt::format("but {} blocked call(s) did not return", stuck)));
}

Outcome KernelExecutor::run_step(const Statement &s, const sim::Bindings &bindings) {
  switch (s.op) {
  case Op::Init:
    return init(s);
  case Op::BackingOpen:
    return backing_open(s);
  case Op::BackingClose:
    return backing_close(s, bindings);
  case Op::Open:
  case Op::Create:
  case Op::Opendir:
    return open_like(s, bindings);
  case Op::Read:
    return read(s);
  case Op::Write:
    return write(s);
  case Op::Mmap:
    return mmap(s);
  case Op::Munmap:
    return munmap_mapping(s);
  case Op::Close:
    return close_handle(s);
  case Op::WriteBegin:
    return write_begin(s);
  case Op::WriteEnd:
    return write_end(s);
  case Op::Await:
    return await(s);
  case Op::Abort:
    return abort_connection();
  case Op::Umount:
    return unmount(s);
  case Op::DevClose:
    return dev_close();
  case Op::Check:
    FPSIM_UNREACHABLE("a check statement reached step(); checks go through check()");
  }
  FPSIM_UNREACHABLE("a statement op outside the enum");
}

Outcome KernelExecutor::init(const Statement &s) {
  std::string err;
  const int rc = server_->mount(dirs_.mnt, sim::init_reply(s.init), err);
  if (rc != 0) {
    note("harness", "mount: " + err);
    // As after umount: with nothing mounted, a path walk must fail (ENOENT), not reach the bare
    // directory underneath, which is the host's: a create would write into /tmp. EBUSY: a mount
    // from an earlier init is still there.
    if (rmdir(dirs_.mnt.c_str()) != 0 && errno != ENOENT && errno != EBUSY)
      note("harness", wire::errno_text("rmdir " + dirs_.mnt + " after a failed mount", errno));
    return Outcome::errno_(-rc);
  }
  mounted_once_ = true;
  writeback_cache_ = s.init.writeback_cache;
  return Outcome::ok();
}

Outcome KernelExecutor::munmap_mapping(const Statement &s) {
  std::shared_ptr<Mapper> &m = maps_.at(static_cast<std::size_t>(s.mapping));
  if (!m || !m->mapped)
    return Outcome::ok(); // munmap of a range that is not mapped succeeds and does nothing
  const int e = unmap(*m, options_.long_deadline);
  if (e == ETIMEDOUT) {
    note("harness", "munmap did not return");
    return blocks();
  }
  m.reset();
  return e == 0 ? Outcome::ok() : Outcome::errno_(e);
}

// close(2) sleeps where fuse_flush takes the inode lock (flush_takes_inode_lock): a close is a
// blocking call like a read, settled by the same deadline and awaited by its handle.
Outcome KernelExecutor::close_handle(const Statement &s) {
  int &fd = fds_.at(static_cast<std::size_t>(s.handle));
  const int f = fd;
  fd = -1; // the fd is gone whatever close(2) returns
  auto call = start([f] { return call_result(sys_result(::close(f))); });
  return settle(s, file_of_handle(s.handle), call);
}

Outcome KernelExecutor::abort_connection() {
  std::string err;
  const int rc = server_->abort(err);
  // ENOENT is the kernel's answer once the superblock is gone (its fusectl directory with it).
  if (rc != 0 && rc != -ENOENT)
    note("harness", "abort: " + err);
  return rc == 0 ? Outcome::ok() : Outcome::errno_(-rc);
}

Outcome KernelExecutor::unmount(const Statement &s) {
  const int rc = server_->umount(s.detach);
  if (rc != 0)
    return Outcome::errno_(-rc);
  // A path walk after umount must fail as on a vanished mount (the model's ENOENT), not reach
  // the bare directory underneath: opendir would open it and create would write into it.
  if (rmdir(dirs_.mnt.c_str()) != 0)
    note("harness", wire::errno_text("rmdir " + dirs_.mnt + " after umount", errno));
  return Outcome::ok();
}

Outcome KernelExecutor::dev_close() {
  const int rc = server_->dev_close();
  // The connection is gone: writes the server held die with it, their write(2) returns.
  return rc == 0 ? Outcome::ok() : Outcome::errno_(-rc);
}

// ---- ioctls ---------------------------------------------------------------------------------------

int KernelExecutor::unprivileged_ioctl(unsigned long request, void *arg) {
  // Capabilities are per thread: a thread that drops CAP_SYS_ADMIN from its effective set is an
  // unprivileged caller for capable(), and unlike a forked child it duplicates no FUSE fds or mappings.
  int result = 0;
  int dropped = 0;
  const int devfd = server_->dev_fd();
  std::thread t([&] {
    dropped = drop_sys_admin_in_this_thread();
    if (dropped != 0)
      return;
    const int rc = ioctl(devfd, request, arg);
    result = rc < 0 ? -errno : rc;
  });
  t.join();
  if (dropped != 0) {
    note("harness", fmt::format("capset (dropping CAP_SYS_ADMIN): {}", std::strerror(-dropped)));
    return dropped;
  }
  return result;
}

const std::string &KernelExecutor::source_dir(sim::SourceFs fs) const {
  switch (fs) {
  case sim::SourceFs::BackingDir:
    return backing_dir_;
  case sim::SourceFs::Overlay:
    return overlay_dir_;
  }
  FPSIM_UNREACHABLE("a source filesystem outside the enum");
}

Outcome KernelExecutor::backing_open(const Statement &s) {
  int fd = -1;
  int extra = -1; // the other end of a pipe or socket pair
  int e = 0;
  switch (s.source) {
  case sim::SourceKind::File:
  case sim::SourceKind::OPath: {
    const std::string path = source_dir(s.source_fs) + "/" +
                             trace_->names.backing_files.at(static_cast<std::size_t>(s.backing_file));
    // O_NOFOLLOW: only the plain files this run created in its own tmpfs are ever opened.
    fd = ::open(path.c_str(),
                (s.source == sim::SourceKind::OPath ? O_PATH : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
    break;
  }
  case sim::SourceKind::Dir:
    fd = ::open(source_dir(s.source_fs).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    break;
  case sim::SourceKind::Pipe: {
    int p[2];
    if (pipe2(p, O_CLOEXEC) == 0) {
      fd = p[0];
      extra = p[1];
    }
    break;
  }
  case sim::SourceKind::Socket: {
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0) {
      fd = p[0];
      extra = p[1];
    }
    break;
  }
  case sim::SourceKind::DevNull:
    fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    break;
  case sim::SourceKind::BadFd:
    break;
  }
  if (s.source != sim::SourceKind::BadFd && fd < 0) {
    e = errno;
    return Outcome::invalid(fmt::format("cannot make the source fd: {}", std::strerror(e)));
  }
  int rc;
  if (s.unprivileged) {
    proto::fuse_backing_map map{fd, s.map_flags, s.map_padding};
    rc = unprivileged_ioctl(proto::kDevIocBackingOpen, &map);
  } else {
    rc = server_->backing_open(fd, s.map_flags, s.map_padding);
  }
  if (fd >= 0)
    ::close(fd);
  if (extra >= 0)
    ::close(extra);
  if (rc < 0)
    return Outcome::errno_(-rc);
  Outcome o = kind(Outcome::Kind::Id);
  o.id = rc;
  return o;
}

Outcome KernelExecutor::backing_close(const Statement &s, const sim::Bindings &bindings) {
  std::string why;
  const std::optional<std::uint32_t> target = bindings.close_target(s, trace_->names, &why);
  if (!target)
    return Outcome::invalid(why);
  std::uint32_t id = *target;
  const int rc = s.unprivileged ? unprivileged_ioctl(proto::kDevIocBackingClose, &id)
                                : server_->backing_close(id);
  return rc < 0 ? Outcome::errno_(-rc) : Outcome::ok();
}

// ---- opens ----------------------------------------------------------------------------------------

Outcome KernelExecutor::settle(const Statement &s, std::string file, const std::shared_ptr<Call> &call) {
  const sim::NameRef name = sim::blocked_name(s);
  std::optional<CallResult> r = wait_blocking(call);
  if (!r) {
    pending_[name] = Pending{s.op, s.handle, std::move(file), call};
    return blocks();
  }
  return finish(s.op, s.handle, name.slot, *r);
}

Outcome KernelExecutor::open_like(const Statement &s, const sim::Bindings &bindings) {
  std::string why;
  const std::optional<model::OpenReply> reply =
      sim::open_reply(s.reply, bindings, trace_->names, profile_, &why);
  if (!reply)
    return Outcome::invalid(why);
  const auto h = static_cast<std::size_t>(s.handle);
  std::string path = dirs_.mnt;
  std::string name;
  policy::OpenKind kind = policy::OpenKind::Opendir;
  int flags = O_CLOEXEC;
  if (s.op == Op::Opendir) {
    flags |= O_RDONLY | O_DIRECTORY;
  } else {
    name = trace_->names.mount_files.at(static_cast<std::size_t>(s.file));
    path += "/" + name;
    if (s.op == Op::Create) {
      kind = policy::OpenKind::Create;
      flags |= O_CREAT | O_EXCL | O_RDWR;
    } else {
      kind = policy::OpenKind::Open;
      flags |= access_flags(s.access);
      if (s.o_direct)
        flags |= O_DIRECT;
      if (s.o_trunc)
        flags |= O_TRUNC;
    }
  }
  script_->script(kind, name, *reply);
  handle_file_[h] = name;
  // A nonseekable or stream file refuses pwrite (ESPIPE before any permission check).
  handle_positional_[h] = s.reply.kind != sim::ReplySpec::Kind::Flags ||
                          !(s.reply.flags & (sim::reply_flag::NONSEEKABLE | sim::reply_flag::STREAM));
  std::shared_ptr<FuseServer> server = server_;
  auto call = start([server, path, flags, kind, name] {
    const std::size_t before = server->open_events().size();
    CallResult r = call_result(sys_result(::open(path.c_str(), flags, 0644)));
    // Sampled right after open(2) returned: a refused open's synchronous RELEASE is already recorded.
    // The request's pid is the calling thread's id, so concurrent opens of one name stay apart.
    const auto tid = static_cast<std::uint32_t>(gettid());
    const std::vector<OpenEvent> events = server->open_events();
    for (std::size_t i = before; i < events.size(); ++i) {
      const OpenEvent &e = events[i];
      if (e.pid == tid && e.request.kind == kind && e.request.name == name && e.fh && server->released(*e.fh))
        r.release = true;
    }
    return r;
  });
  return settle(s, name, call);
}

// ---- I/O ------------------------------------------------------------------------------------------

Outcome KernelExecutor::route_of_read(const CallResult &r) {
  if (r.err)
    return Outcome::errno_(r.err);
  // One byte: 'B' from a backing file or 'F' from a served one (writes put 'F' into a served
  // file, and a backing file's 'B' is restored after every write).
  if (r.data == "B") {
    if (r.srv_after != r.srv_before)
      note("route", fmt::format("a read returned backing data, but the server received {} READ "
                                "request(s) meanwhile",
                                r.srv_after - r.srv_before));
    return kind(Outcome::Kind::Backing);
  }
  // Everything else came through FUSE.
  if (r.data != "F")
    note("route", fmt::format("a read returned neither backing nor served data: \"{}\"", r.data));
  return kind(Outcome::Kind::Fuse);
}

Outcome KernelExecutor::route_of_write(const CallResult &r) {
  if (r.err)
    return Outcome::errno_(r.err);
  if (r.to_backing) {
    if (r.srv_after != r.srv_before)
      note("route", fmt::format("a write reached the backing file, but the server received {} "
                                "WRITE request(s) meanwhile",
                                r.srv_after - r.srv_before));
    return kind(Outcome::Kind::Backing);
  }
  if (r.srv_after == r.srv_before && !writeback_cache_)
    note("route", "a write changed no backing file, yet the server received no WRITE");
  return kind(Outcome::Kind::Fuse);
}

Outcome KernelExecutor::read(const Statement &s) {
  const int fd = fds_.at(static_cast<std::size_t>(s.handle));
  std::shared_ptr<FuseServer> server = server_;
  auto call = start([server, fd] {
    const std::uint64_t before = server->count(proto::READ);
    std::string buf(kReadSize, '\0');
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    CallResult r = call_result(sys_result(n));
    r.srv_before = before;
    r.srv_after = server->count(proto::READ);
    if (n > 0)
      r.data = buf.substr(0, static_cast<std::size_t>(n));
    return r;
  });
  return settle(s, file_of_handle(s.handle), call);
}

namespace {

// A 1-byte pwrite in place, inside the first page (never past EOF, always the folio the model
// tracks): positional, so writes held on one fd do not serialize on the file position lock as
// write(2) would. Each write of a trace has its own offset, so concurrent writes can tell their
// byte in a backing file apart (its 'B' is put back). The server side is told apart by thread:
// only WRITE requests this thread sent count. Nonseekable and stream files take write(2); they
// are never passthrough, so a scan of the backing files suffices there.
KernelExecutor::CallResult do_write(FuseServer &server, int fd, bool positional, off_t offset,
                                    const std::vector<int> &backing_fds) {
  const auto tid = static_cast<std::uint32_t>(gettid());
  const std::uint64_t before = server.writes_from_thread(tid);
  KernelExecutor::CallResult r = call_result(
      sys_result(positional ? ::pwrite(fd, &kWriteByte, 1, offset) : ::write(fd, &kWriteByte, 1)));
  r.srv_before = before;
  r.srv_after = server.writes_from_thread(tid);
  for (int bfd : backing_fds) {
    if (positional) {
      char c = 0;
      if (::pread(bfd, &c, 1, offset) == 1 && c == kWriteByte) {
        r.to_backing = true;
        (void)!::pwrite(bfd, "B", 1, offset);
      }
      continue;
    }
    std::string content(kFileSize, '\0');
    const ssize_t n = ::pread(bfd, content.data(), content.size(), 0);
    const std::size_t at = n > 0 ? content.find(kWriteByte) : std::string::npos;
    if (at != std::string::npos && at < static_cast<std::size_t>(n)) {
      r.to_backing = true;
      (void)!::pwrite(bfd, "B", 1, static_cast<off_t>(at));
    }
  }
  return r;
}

} // namespace

Outcome KernelExecutor::write(const Statement &s) {
  const int fd = fds_.at(static_cast<std::size_t>(s.handle));
  std::shared_ptr<FuseServer> server = server_;
  std::vector<int> bfds = backing_fds_;
  const bool positional = handle_positional_.at(static_cast<std::size_t>(s.handle));
  const off_t offset = next_write_offset();
  auto call = start([server, fd, positional, offset, bfds] {
    return do_write(*server, fd, positional, offset, bfds);
  });
  return settle(s, file_of_handle(s.handle), call);
}

std::shared_ptr<KernelExecutor::Mapper> KernelExecutor::spawn_mapper(int fd, bool shared, int *err) {
  auto m = std::make_shared<Mapper>();
  int cmd[2];
  int res[2];
  if (pipe2(cmd, O_CLOEXEC) != 0) {
    *err = errno;
    return nullptr;
  }
  if (pipe2(res, O_CLOEXEC) != 0) {
    *err = errno;
    ::close(cmd[0]);
    ::close(cmd[1]);
    return nullptr;
  }
  m->cmd_r = cmd[0];
  m->cmd_w = cmd[1];
  m->res_r = res[0];
  m->res_w = res[1];
  const int type = shared ? MAP_SHARED : MAP_PRIVATE;
  // Like fork(2) (a copy of the address space, continuing on a copy of this stack), but sharing the fd
  // table. The child makes raw syscalls only: other threads may hold locks (malloc, sanitizers) that
  // were copied locked. It never closes an fd: the table is shared with this process.
  const long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) {
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    long out[2] = {0, 0};
    const long addr = syscall(SYS_mmap, 0, kMapSize, PROT_READ, type, fd, 0);
    if (addr == -1)
      out[1] = errno;
    else
      out[0] = addr;
    syscall(SYS_write, res[1], out, sizeof out);
    if (addr != -1) {
      char c = 0;
      syscall(SYS_read, cmd[0], &c, 1);
      const long rc = syscall(SYS_munmap, addr, kMapSize);
      out[0] = rc;
      out[1] = rc == -1 ? errno : 0;
      syscall(SYS_write, res[1], out, sizeof out);
    }
    syscall(SYS_exit_group, 0);
  }
  if (pid < 0) {
    *err = errno;
    for (int fd2 : {cmd[0], cmd[1], res[0], res[1]})
      ::close(fd2);
    return nullptr;
  }
  m->pid = static_cast<pid_t>(pid);
  return m;
}

namespace {

// Reads the helper's {ret, errno}; nullopt when it does not come within `deadline`.
std::optional<std::pair<long, long>> read_result(int fd, std::chrono::milliseconds deadline) {
  pollfd pfd{fd, POLLIN, 0};
  int ready;
  do {
    ready = poll(&pfd, 1, static_cast<int>(deadline.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0)
    return std::nullopt;
  long out[2] = {0, 0};
  const ssize_t n = ::read(fd, out, sizeof out);
  if (n != static_cast<ssize_t>(sizeof out))
    return std::pair<long, long>{-1, EPIPE}; // the helper died
  return std::pair<long, long>{out[0], out[1]};
}

} // namespace

int KernelExecutor::unmap(Mapper &m, std::chrono::milliseconds deadline) {
  char c = 'u';
  if (::write(m.cmd_w, &c, 1) != 1)
    return errno;
  std::optional<std::pair<long, long>> r = read_result(m.res_r, deadline);
  if (!r)
    return ETIMEDOUT;
  m.mapped = false;
  reap(m, false);
  return static_cast<int>(r->second);
}

void KernelExecutor::reap(Mapper &m, bool kill) {
  if (m.pid > 0) {
    if (kill)
      ::kill(m.pid, SIGKILL);
    // Bounded: a helper asleep in the kernel (uninterruptibly) cannot die before it wakes up.
    const auto end = std::chrono::steady_clock::now() + options_.long_deadline;
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(m.pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(1ms);
    if (got != m.pid)
      note("leak", fmt::format("mapping helper {} did not exit", m.pid));
    m.pid = -1;
  }
  for (int *fd : {&m.cmd_r, &m.cmd_w, &m.res_r, &m.res_w}) {
    if (*fd >= 0)
      ::close(*fd);
    *fd = -1;
  }
  m.mapped = false;
}

Outcome KernelExecutor::mmap(const Statement &s) {
  const int fd = fds_.at(static_cast<std::size_t>(s.handle));
  int err = 0;
  std::shared_ptr<Mapper> m = spawn_mapper(fd, s.shared, &err);
  if (!m)
    return Outcome::invalid(fmt::format("cannot start the mapping's helper process: {}", std::strerror(err)));
  maps_.at(static_cast<std::size_t>(s.mapping)) = m;
  const int res_r = m->res_r;
  auto call = start([res_r] {
    CallResult r;
    long out[2] = {0, 0};
    const ssize_t n = ::read(res_r, out, sizeof out); // blocks while the helper's mmap(2) does
    if (n != static_cast<ssize_t>(sizeof out)) {
      r.err = EPIPE;
      return r;
    }
    r.ret = out[0];
    r.err = static_cast<int>(out[1]);
    return r;
  });
  return settle(s, file_of_handle(s.handle), call);
}

Outcome KernelExecutor::finish(Op op, int handle, int slot, const CallResult &r) {
  switch (op) {
  case Op::Open:
  case Op::Create:
  case Op::Opendir: {
    if (!r.err)
      fds_.at(static_cast<std::size_t>(handle)) = static_cast<int>(r.ret);
    Outcome o = r.err ? Outcome::errno_(r.err) : Outcome::ok();
    o.release = r.release;
    return o;
  }
  case Op::Read:
    return route_of_read(r);
  case Op::Write:
  case Op::WriteBegin:
  case Op::WriteEnd:
    return route_of_write(r);
  case Op::Mmap:
  {
    std::shared_ptr<Mapper> &m = maps_.at(static_cast<std::size_t>(slot));
    if (r.err) {
      if (m) // the helper exits after reporting a failed mmap
        reap(*m, r.err == EPIPE);
      m.reset();
      return Outcome::errno_(r.err);
    }
    if (m)
      m->mapped = true;
    return Outcome::ok();
  }
  case Op::Close:
    return r.err ? Outcome::errno_(r.err) : Outcome::ok();
  case Op::Init:
  case Op::BackingOpen:
  case Op::BackingClose:
  case Op::Munmap:
  case Op::Await:
  case Op::Abort:
  case Op::Umount:
  case Op::DevClose:
  case Op::Check:
    break;
  }
  FPSIM_UNREACHABLE("a statement that cannot block was pending");
}

// ---- held writes ----------------------------------------------------------------------------------

Outcome KernelExecutor::settle_write_begin(int w, const std::string &file, std::uint64_t token,
                                           const std::shared_ptr<Call> &call) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (std::optional<HeldWrite> held = server_->wait_held_write(token, 5ms)) {
      held_.at(static_cast<std::size_t>(w)) = Held{call, file, held->unique};
      return Outcome::ok();
    }
    if (call->done()) {
      // Returned without being parked: it went to the backing file, failed, or (unexpectedly) was
      // answered by the server. The hold was not consumed; disarm it.
      server_->cancel_hold(token);
      std::optional<CallResult> r = call->wait(0ms);
      // A race: parked right before returning is impossible, the write cannot return while parked.
      return route_of_write(*r);
    }
    if (settled(start) && !call->done() && !server_->wait_held_write(token, 0ms).has_value())
      return blocks();
  }
}

Outcome KernelExecutor::write_begin(const Statement &s) {
  const int fd = fds_.at(static_cast<std::size_t>(s.handle));
  const std::string file = file_of_handle(s.handle);
  const std::uint64_t token = ++hold_tokens_;
  std::shared_ptr<FuseServer> server = server_;
  std::vector<int> bfds = backing_fds_;
  const bool positional = handle_positional_.at(static_cast<std::size_t>(s.handle));
  const off_t offset = next_write_offset();
  auto call = start([server, fd, positional, offset, bfds, token] {
    server->hold_next_write_of_this_thread(token);
    return do_write(*server, fd, positional, offset, bfds);
  });
  Outcome o = settle_write_begin(s.write, file, token, call);
  if (o.kind == Outcome::Kind::Blocks)
    pending_[sim::blocked_name(s)] = Pending{s.op, s.handle, file, call, token};
  return o;
}

Outcome KernelExecutor::write_end(const Statement &s) {
  const auto w = static_cast<std::size_t>(s.write);
  const std::string &wname = trace_->names.writes.at(w);
  if (pending_.count(sim::NameRef{NameKind::Write, s.write}))
    return Outcome::invalid(
        fmt::format("{} is still waiting for the inode lock: the server never received it", wname));
  if (!held_[w])
    return Outcome::invalid(
        fmt::format("{} is not in flight: its write_begin was not held by the server", wname));
  const Held held = *held_[w];
  held_[w].reset();
  const int rc = server_->finish_held_write(held.unique);
  if (rc != 0 && rc != -ENOENT)
    note("server", fmt::format("answering the held WRITE of {}: {}", wname, std::strerror(-rc)));
  std::optional<CallResult> r = held.call->wait(options_.long_deadline);
  if (!r) {
    abandoned_.push_back(held.call);
    return blocks();
  }
  settle_woken_writes();
  return route_of_write(*r);
}

// The writer that just returned dropped the inode lock; a write_begin queued on it is woken but
// must still run to take the lock, and on a loaded machine a later statement's writer could
// steal the lock first (rwsem lock stealing). Give the queued ones a moment to get their WRITE
// parked before the trace goes on.
void KernelExecutor::settle_woken_writes() {
  const auto end = std::chrono::steady_clock::now() + 200ms;
  for (const auto &[key, p] : pending_) {
    if (p.op != Op::WriteBegin)
      continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return;
    server_->wait_held_write(p.hold_token, left);
  }
}

// ---- await ----------------------------------------------------------------------------------------

Outcome KernelExecutor::await(const Statement &s) {
  const sim::NameRef key = sim::awaited_name(s);
  auto it = pending_.find(key);
  const std::string &name =
      trace_->names.of(s.await_kind).at(static_cast<std::size_t>(s.await_slot));
  if (it == pending_.end())
    return Outcome::invalid(fmt::format("nothing is blocked on {}", name));
  const Pending p = it->second;
  if (p.op == Op::WriteBegin) {
    Outcome o = settle_write_begin(s.await_slot, p.file, p.hold_token, p.call);
    if (o.kind != Outcome::Kind::Blocks)
      pending_.erase(key);
    return o;
  }
  std::optional<CallResult> r = wait_blocking(p.call);
  if (!r)
    return blocks();
  pending_.erase(key);
  return finish(p.op, p.handle, s.await_slot, *r);
}

} // namespace fpsim::harness
