#include "fuse_server.h"

#include "base/assert.h"
#include "fuse_proto.h"
#include "namespace.h"
#include "wire.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <cstring>

namespace fpsim::harness {
namespace {

// How long mount waits for the server to answer an INIT sent after mount(2) returned; generous
// for a guest under software emulation.
constexpr std::chrono::seconds kAsyncInitTimeout{30};

// The device of the filesystem mounted last on `mnt`, from /proc/self/mountinfo ("major:minor" is
// the third field, the mount point the fifth).
std::optional<dev_t> mounted_device(const std::string &mnt) {
  std::ifstream in("/proc/self/mountinfo");
  std::optional<dev_t> dev;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, majmin, root, point;
    if (!(fields >> id >> parent >> majmin >> root >> point) || point != mnt)
      continue;
    unsigned maj = 0, min = 0;
    if (std::sscanf(majmin.c_str(), "%u:%u", &maj, &min) == 2)
      dev = makedev(maj, min);
  }
  return dev;
}

namespace p = proto;

constexpr std::uint32_t kMaxWrite = 1u << 20;
// One request is at most max_write of data plus headers; the kernel wants room for a full one.
constexpr std::size_t kReadBufferSize = kMaxWrite + 4096;
static_assert(kReadBufferSize >= p::kMinReadBuffer);

// Added to a request's unique for a garbage reply: keeps it even (an odd unique is the reply to an
// INTERRUPT of the same request) and far beyond any unique the kernel hands out in a trace.
constexpr std::uint64_t kForeignUnique = std::uint64_t{1} << 40;
constexpr std::size_t kOversize = 4096;

std::string errno_name(int e) {
  const char *name = strerrorname_np(e);
  return name ? name : "errno " + std::to_string(e);
}

using namespace wire;

SessionObserver &no_observer() {
  static SessionObserver none;
  return none;
}

} // namespace

std::unique_ptr<FuseServer> FuseServer::open(ServerParts parts, std::string fusectl_fallback_dir,
                                             std::string &err) {
  FPSIM_ASSERT(parts.files && parts.policy, "a FUSE server needs its files and a policy");
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    err = errno_text("open /dev/fuse", errno);
    return nullptr;
  }
  return std::unique_ptr<FuseServer>(new FuseServer(fd, std::move(parts), std::move(fusectl_fallback_dir)));
}

FuseServer::FuseServer(int devfd, ServerParts parts, std::string fusectl_fallback_dir)
    : devfd_(devfd), parts_(std::move(parts)), observer_(parts_.observer ? *parts_.observer : no_observer()),
      fusectl_fallback_dir_(std::move(fusectl_fallback_dir)),
      start_time_(static_cast<std::uint64_t>(time(nullptr))) {
  for (const std::string &name : parts_.files->names())
    add_name(name);
}

FuseServer::~FuseServer() { shutdown(); }

void FuseServer::shutdown() {
  if (shut_down_)
    return;
  shut_down_ = true;
  if (mounted_ && umount(false) != 0) {
    note_problem("umount " + mnt_ + ": busy at the teardown, detached instead");
    umount(true); // files are still open; the lazy detach always succeeds
  }
  if (thread_.joinable()) {
    // After an unmount the thread sees ENODEV once the last file is closed. If files stay open
    // (stuck calls, leaked fds) only an abort ends the connection's traffic.
    if (!wait_stopped(std::chrono::milliseconds(500)) && dev_ != 0) {
      std::string err;
      if (abort(err) != 0)
        note_problem("abort at the teardown: " + err);
      wait_stopped(std::chrono::milliseconds(1000));
    }
    stop_thread();
  }
  if (devfd_ >= 0) {
    close(devfd_);
    devfd_ = -1;
  }
  if (dev_ != 0)
    unregister_fuse_connection(dev_);
}

// ---- files ------------------------------------------------------------------------------------------

std::optional<std::string> FuseServer::file_content(const std::string &name) const {
  std::lock_guard lock(mutex_);
  p::fuse_attr attr{};
  std::string data;
  if (parts_.files->attr(name, attr) != 0 ||
      parts_.files->read(name, 0, static_cast<std::uint32_t>(attr.size), data) != 0)
    return std::nullopt;
  return data;
}

const std::string *FuseServer::name_of(std::uint64_t nodeid) const {
  auto it = names_.find(nodeid);
  return it == names_.end() ? nullptr : &it->second;
}

std::uint64_t FuseServer::add_name(const std::string &name) {
  const std::uint64_t nodeid = next_nodeid_++;
  names_[nodeid] = name;
  state_.files[name] = nodeid;
  return nodeid;
}

void FuseServer::drop_name(std::uint64_t nodeid) {
  state_.files.erase(names_.at(nodeid));
  names_.erase(nodeid);
}

// ---- mount ------------------------------------------------------------------------------------------

int FuseServer::mount(const std::string &mnt, const model::InitReply &init, std::string &err) {
  if (devfd_ < 0) {
    err = "mount: /dev/fuse is already closed";
    return -EBADF;
  }
  if (crashed_) {
    err = "mount: the server was killed (injected fault): its /dev/fuse fd is gone";
    return -EBADF;
  }
  if (thread_.joinable()) {
    err = "mount: this server has already been mounted";
    return -EBUSY;
  }
  // Armed only now, not at open(): an armed but unmounted fd makes ioctls wait for the mount instead of
  // failing, and a backing_open before `init` must fail with EPERM like on an async-INIT server. A
  // kernel without SYNC_INIT (ENOTTY: before 6.18) answers INIT after mount(2) returns; the mount
  // then waits for the answer, so that a trace's next statement meets the same connection.
  const bool sync_init = ioctl(devfd_, p::kDevIocSyncInit) == 0;
  if (!sync_init && errno != ENOTTY) {
    int e = errno;
    err = errno_text("ioctl(FUSE_DEV_IOC_SYNC_INIT)", e);
    return -e;
  }
  sync_init_ = sync_init;
  {
    std::lock_guard lock(mutex_);
    init_ = init;
    init_answered_ = false;
  }
  install_wake_handler();
  stopping_ = false;
  thread_done_ = false;
  // With SYNC_INIT, mount(2) blocks until INIT is answered, so the reader must already be running;
  // without it, a read of the fd before mount(2) fails with EPERM, so the reader starts after.
  if (sync_init)
    thread_ = std::thread([this] { serve(); });

  std::string opts = "fd=" + std::to_string(devfd_) +
                     ",rootmode=40000,user_id=0,group_id=0,allow_other";
  if (::mount("fpsim", mnt.c_str(), "fuse.fpsim", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
    int e = errno;
    err = errno_text("mount fuse.fpsim on " + mnt, e);
    stop_thread();
    // The failed mount leaves the fd armed for SYNC_INIT, and on an armed fd every ioctl waits for a
    // mount that will never come (observed on 6.18). A fresh fd restores the plain unmounted state;
    // nothing is lost, as an unmounted fd cannot hold backing ids.
    close(devfd_);
    devfd_ = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (devfd_ < 0)
      err += "; " + errno_text("reopening /dev/fuse", errno);
    return -e;
  }
  mnt_ = mnt;
  mounted_ = true;
  if (!sync_init)
    thread_ = std::thread([this] { serve(); });
  // The superblock's device names the connection in fusectl; take it now, a later abort may come
  // after an unmount. Read from mountinfo, not stat(2): a stat would be a GETATTR, and a process
  // killed while waiting for it (with its server thread already gone) would hang unregistered.
  std::optional<dev_t> dev = mounted_device(mnt);
  if (!dev) {
    err = "cannot find " + mnt + " in /proc/self/mountinfo after mount";
    return -ENOENT;
  }
  dev_ = *dev;
  register_fuse_connection(dev_);
  std::unique_lock lock(mutex_);
  if (!sync_init) {
    if (!changed_.wait_for(lock, kAsyncInitTimeout, [&] { return init_answered_ || thread_done_; })) {
      err = fmt::format("the kernel's INIT was not answered within {} s of mount(2)", kAsyncInitTimeout.count());
      return -ETIMEDOUT;
    }
    if (!init_answered_) {
      err = "the server thread ended before INIT was answered";
      return -EIO;
    }
  }
  for (policy::Holder holder : parts_.policy->register_at_mount(state_))
    register_backing(holder);
  return 0;
}

std::optional<KernelInit> FuseServer::kernel_init() const {
  std::lock_guard lock(mutex_);
  return kernel_init_;
}

// ---- ioctls -----------------------------------------------------------------------------------------

int FuseServer::backing_open(int fd, std::uint32_t flags, std::uint64_t padding) {
  if (crashed_)
    return -EBADF;
  p::fuse_backing_map map{fd, flags, padding};
  int id = ioctl(devfd_, p::kDevIocBackingOpen, &map);
  return id < 0 ? -errno : id;
}

int FuseServer::backing_close(std::uint32_t id) {
  if (crashed_)
    return -EBADF;
  return ioctl(devfd_, p::kDevIocBackingClose, &id) < 0 ? -errno : 0;
}

// ---- backing ids the policy asks for ----------------------------------------------------------------

void FuseServer::register_backing(policy::Holder holder) {
  const std::string &name = names_.at(holder.inode);
  const int result = backing_open(parts_.files->backing_fd(name));
  if (result > 0)
    state_.backing_ids[holder] = result;
  else
    state_.backing_failed = true;
  observer_.backing_opened(name, result);
}

void FuseServer::close_backing(policy::Holder holder) {
  const std::int32_t id = state_.backing_ids.at(holder);
  state_.backing_ids.erase(holder);
  const int result = backing_close(static_cast<std::uint32_t>(id));
  observer_.backing_closed(names_.at(holder.inode), id, result);
}

bool FuseServer::wait_all_released(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return unreleased_.empty(); });
}

void FuseServer::end_run() {
  std::lock_guard lock(mutex_);
  for (policy::Holder holder : parts_.policy->close_at_end(state_))
    close_backing(holder);
}

// ---- observation ------------------------------------------------------------------------------------

std::vector<OpenEvent> FuseServer::open_events() const {
  std::lock_guard lock(mutex_);
  return opens_;
}

bool FuseServer::released(std::uint64_t fh) const {
  std::lock_guard lock(mutex_);
  return released_.count(fh) != 0;
}

std::uint64_t FuseServer::count(std::uint32_t opcode) const {
  std::lock_guard lock(mutex_);
  return counts_.count(opcode) ? counts_.at(opcode) : 0;
}

std::set<std::uint32_t> FuseServer::unimplemented() const {
  std::lock_guard lock(mutex_);
  return unimplemented_;
}

std::uint64_t FuseServer::writes_from_thread(std::uint32_t tid) const {
  std::lock_guard lock(mutex_);
  return writes_by_thread_.count(tid) ? writes_by_thread_.at(tid) : 0;
}

std::vector<std::string> FuseServer::problems() const {
  std::lock_guard lock(mutex_);
  return problems_;
}

void FuseServer::note_problem(std::string what) {
  std::lock_guard lock(mutex_);
  problems_.push_back(std::move(what));
}

// ---- held writes ------------------------------------------------------------------------------------

void FuseServer::hold_next_write_of_this_thread(std::uint64_t token) {
  const auto tid = static_cast<std::uint32_t>(gettid());
  std::lock_guard lock(mutex_);
  hold_armed_[tid] = token;
}

std::optional<HeldWrite> FuseServer::wait_held_write(std::uint64_t token,
                                                     std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<HeldWrite> found;
  changed_.wait_for(lock, timeout, [&] {
    for (const auto &[unique, parked] : parked_) {
      if (parked.info.token == token) {
        found = parked.info;
        return true;
      }
    }
    return false;
  });
  return found;
}

void FuseServer::cancel_hold(std::uint64_t token) {
  std::lock_guard lock(mutex_);
  std::erase_if(hold_armed_, [&](const auto &armed) { return armed.second == token; });
}

int FuseServer::finish_held_write(std::uint64_t unique, int error) {
  std::unique_lock lock(mutex_);
  auto it = parked_.find(unique);
  if (it == parked_.end())
    return -ENOENT;
  Parked parked = std::move(it->second);
  parked_.erase(it);
  Answer answer;
  std::uint32_t written = 0;
  answer.error = error != 0 ? error
                            : parts_.files->write(parked.info.name, parked.info.offset, parked.data, written);
  if (answer.error == 0)
    answer.payload = bytes_of(p::fuse_write_out{written, 0});
  lock.unlock();
  return reply(unique, answer.error, answer.payload.data(), answer.payload.size());
}

// ---- teardown ---------------------------------------------------------------------------------------

int FuseServer::abort(std::string &err) {
  if (dev_ == 0) {
    err = "abort: the server was never mounted";
    return -ENOTCONN;
  }
  return abort_fuse_connection(dev_, fusectl_fallback_dir_, err);
}

int FuseServer::umount(bool detach) {
  if (mnt_.empty())
    return -EINVAL;
  if (umount2(mnt_.c_str(), detach ? MNT_DETACH : 0) != 0)
    return -errno;
  mounted_ = false;
  return 0;
}

int FuseServer::dev_close() {
  if (devfd_ < 0)
    return -EBADF;
  if (crashed_) {
    // What is left is the /dev/null placeholder of release_device(); the real fd died with the server.
    stop_thread();
    close(devfd_);
    devfd_ = -1;
    return -EBADF;
  }
  // The thread's read holds a reference to the device file; closing the fd under it would neither end
  // the read nor release the connection, so the thread has to be gone first.
  stop_thread();
  {
    std::lock_guard lock(mutex_);
    parked_.clear(); // their requests die with the connection
  }
  int rc = close(devfd_);
  int e = errno;
  devfd_ = -1;
  // Closing the only /dev/fuse fd ends the connection: there is nothing left to abort on a timeout.
  if (dev_ != 0)
    unregister_fuse_connection(dev_);
  return rc == 0 ? 0 : -e;
}

bool FuseServer::wait_stopped(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return thread_done_.load(); });
}

void FuseServer::stop_thread() {
  if (!thread_.joinable())
    return;
  stopping_ = true;
  // Repeated because a signal landing just before the thread enters read(2) is lost.
  while (!wait_stopped(std::chrono::milliseconds(10)))
    pthread_kill(thread_.native_handle(), wake_signal());
  thread_.join();
}

// ---- the server thread ------------------------------------------------------------------------------

void FuseServer::serve() {
  try {
    std::vector<char> buf(kReadBufferSize);
    while (!stopping_) {
      ssize_t n = read(devfd_, buf.data(), buf.size());
      if (n < 0) {
        int e = errno;
        if (e == EINTR)
          continue; // stop_thread's wake-up (the loop condition decides) or a stray signal
        // ENODEV: unmounted and the last file closed; ECONNABORTED: aborted. Both end the connection.
        if (e != ENODEV && e != ECONNABORTED)
          note_problem(errno_text("read /dev/fuse", e));
        break;
      }
      handle(buf.data(), static_cast<std::size_t>(n));
      if (crash_requested_) {
        release_device();
        break;
      }
    }
  } catch (const std::exception &e) {
    note_problem(std::string("server thread: ") + e.what());
  } catch (...) {
    note_problem("server thread: unknown exception");
  }
  std::lock_guard lock(mutex_);
  thread_done_ = true;
  changed_.notify_all();
}

int FuseServer::reply(std::uint64_t unique, int error, const void *payload, std::size_t size) {
  if (crashed_)
    return -EBADF;
  p::fuse_out_header out{};
  out.len = static_cast<std::uint32_t>(sizeof(out) + (error == 0 ? size : 0));
  out.error = -error;
  out.unique = unique;
  iovec iov[2] = {{&out, sizeof(out)}, {const_cast<void *>(payload), size}};
  int iovcnt = (error == 0 && size > 0) ? 2 : 1;
  ssize_t n = writev(devfd_, iov, iovcnt);
  if (n < 0) {
    int e = errno;
    // ENOENT: the kernel no longer waits for this request (interrupted or aborted); not our fault.
    if (e != ENOENT)
      note_problem(errno_text("reply to request " + std::to_string(unique), e));
    return -e;
  }
  return 0;
}

void FuseServer::handle(const char *req, std::size_t len) {
  p::fuse_in_header hdr{};
  if (!read_struct(req, len, hdr) || hdr.len != len) {
    note_problem("malformed request of " + std::to_string(len) + " bytes");
    return;
  }
  const char *in = req + sizeof(hdr);
  std::size_t insize = len - sizeof(hdr);

  Answer answer;
  std::optional<Fault> hit;
  {
    std::lock_guard lock(mutex_);
    const std::uint64_t nth = ++counts_[hdr.opcode];
    current_pid_ = hdr.pid;
    if (fault_ && !fault_hit_ && fault_->opcode == hdr.opcode && fault_->nth == nth) {
      fault_hit_ = true;
      fault_firing_ = true;
      hit = fault_;
    }
    // A garbled WRITE is answered, never parked: its write_begin then finds nothing held.
    if (hit && hdr.opcode == p::WRITE)
      hold_armed_.erase(current_pid_);
    observer_.request(hdr, in, insize);
    // A withheld request must change nothing a later statement could see (no file created, no
    // open recorded); a garbled one is handled as usual, so only its reply is wrong.
    if (hit && hit->kind != Fault::Kind::Garbage)
      answer.send = false;
    else
      answer = dispatch(hdr, in, insize);
  }
  if (hit) {
    inject(*hit, hdr.unique, answer);
  } else if (answer.send) {
    const int rc = reply(hdr.unique, answer.error, answer.payload.data(), answer.payload.size());
    // The kernel processes an INIT reply inside the write(2) that delivers it.
    if (hdr.opcode == p::INIT && rc == 0) {
      std::lock_guard lock(mutex_);
      init_answered_ = true;
      changed_.notify_all();
    }
  }
  std::lock_guard lock(mutex_);
  for (policy::Holder holder : std::exchange(close_after_reply_, {}))
    if (state_.backing_ids.count(holder) != 0)
      close_backing(holder);
}

FuseServer::Answer FuseServer::dispatch(const p::fuse_in_header &hdr, const char *in, std::size_t insize) {
  switch (hdr.opcode) {
  case p::INIT: return on_init(in, insize);
  case p::LOOKUP: return on_lookup(hdr.nodeid, in, insize);
  case p::GETATTR: return on_getattr(hdr.nodeid);
  case p::SETATTR: return on_setattr(hdr.nodeid, in, insize);
  case p::OPEN:
  case p::OPENDIR: return on_open(hdr.opcode, hdr.nodeid, in, insize);
  case p::CREATE: return on_create(hdr.nodeid, in, insize);
  case p::READ: return on_read(hdr.nodeid, in, insize);
  case p::WRITE: return on_write(hdr.unique, hdr.nodeid, in, insize);
  case p::RELEASE:
  case p::RELEASEDIR: return on_release(in, insize);
  case p::READDIR: return on_readdir(hdr.nodeid, in, insize);
  case p::STATFS: return on_statfs();
  case p::FLUSH:
  case p::FSYNC:
  case p::FSYNCDIR:
  case p::DESTROY: return {}; // nothing to persist: an empty success
  case p::FORGET:
  case p::BATCH_FORGET:
  case p::INTERRUPT: return {0, {}, false}; // the protocol has no reply for these
  default: // a wire number, not an enum of ours: anything the kernel may send
    unimplemented_.insert(hdr.opcode);
    return {ENOSYS, {}, true};
  }
}

// ---- fault injection --------------------------------------------------------------------------------

void FuseServer::inject_fault(const Fault &fault, std::function<void(const std::string &)> fired) {
  std::lock_guard lock(mutex_);
  fault_ = fault;
  fault_hit_ = false;
  fault_fired_hook_ = std::move(fired);
}

std::vector<std::string> FuseServer::fault_events(std::chrono::milliseconds settle) const {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, settle, [&] { return !fault_firing_; });
  return fault_events_;
}

void FuseServer::fault_fired(const std::string &what) {
  std::function<void(const std::string &)> hook;
  {
    std::lock_guard lock(mutex_);
    fault_events_.push_back(what);
    fault_firing_ = false;
    changed_.notify_all();
    hook = fault_fired_hook_;
  }
  if (hook)
    hook(what);
}

void FuseServer::inject(const Fault &fault, std::uint64_t unique, const Answer &answer) {
  const std::string request = fmt::format("{} #{} (unique {})", p::opcode_name(fault.opcode), fault.nth, unique);
  switch (fault.kind) {
  case Fault::Kind::Silent:
    fault_request_pending_ = true;
    fault_fired("the server read " + request + " and left it unanswered");
    return;
  case Fault::Kind::Garbage:
    fault_fired(send_garbage(fault.garbage, unique, answer, request));
    return;
  case Fault::Kind::KillServer:
    fault_fired("the server died on reading " + request +
                ": the request is left unanswered and the server's /dev/fuse file released");
    crash_requested_ = true;
    return;
  case Fault::Kind::KillChild:
    fault_fired(fmt::format("the server read {} and left it unanswered; SIGKILL to the whole isolated "
                            "child (pid {}: the calling thread and the server thread alike)",
                            request, getpid()));
    kill(getpid(), SIGKILL);
    for (;;)
      pause(); // the signal is delivered on the way back to user space; nothing may run meanwhile
  case Fault::Kind::KillServerAtStep:
    return; // fired by the executor, between statements
  }
}

std::string FuseServer::send_garbage(Fault::Garbage how, std::uint64_t unique, const Answer &answer,
                                     const std::string &request) {
  std::string payload = answer.error == 0 ? answer.payload : std::string();
  p::fuse_out_header out{};
  out.error = -answer.error;
  out.unique = unique;
  std::size_t header_bytes = sizeof(out);
  std::string what;
  switch (how) {
  case Fault::Garbage::Unique:
    out.unique = unique + kForeignUnique;
    what = fmt::format("unique {} instead of {}", out.unique, unique);
    break;
  case Fault::Garbage::Short:
    if (payload.empty()) {
      header_bytes = sizeof(out) / 2;
      what = fmt::format("{} of the header's {} bytes", header_bytes, sizeof(out));
    } else {
      what = fmt::format("{} of its {} payload bytes", payload.size() / 2, payload.size());
      payload.resize(payload.size() / 2);
    }
    break;
  case Fault::Garbage::Errno:
    out.error = EIO; // the kernel takes only 0 and -1..-511
    payload.clear();
    what = "error +EIO (positive)";
    break;
  case Fault::Garbage::Oversized:
    what = fmt::format("{} payload bytes, {} more than the request takes", payload.size() + kOversize, kOversize);
    payload.append(kOversize, '\0');
    break;
  }
  out.len = static_cast<std::uint32_t>(sizeof(out) + payload.size());
  const std::string bytes = bytes_of(out).substr(0, header_bytes) + payload;
  const ssize_t n = ::write(devfd_, bytes.data(), bytes.size());
  const int e = errno;
  // A cut payload or an oversized one is refused (EINVAL) only after the kernel matched the reply to
  // its request, which then ends with EIO; the others are refused before, and the request still waits.
  const bool matched = how == Fault::Garbage::Oversized || (how == Fault::Garbage::Short && header_bytes == sizeof(out));
  fault_request_pending_ = n < 0 && !matched;
  return fmt::format("the server answered {} with {}; the kernel {}", request, what,
                     n < 0 ? "refused the reply: " + errno_name(e) : fmt::format("took {} bytes", n));
}

void FuseServer::crash() {
  if (crashed_)
    return;
  stop_thread();
  release_device();
}

void FuseServer::release_device() {
  // dup3 rather than close: the descriptor number stays taken (by /dev/null), so an ioctl or reply
  // racing with the crash can never reach a file opened later under the same number.
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0 || dup3(null_fd, devfd_, O_CLOEXEC) < 0) {
    note_problem(errno_text("crash: replacing /dev/fuse with /dev/null", errno));
    close(devfd_);
    devfd_ = -1;
  }
  if (null_fd >= 0)
    close(null_fd);
  crashed_ = true;
  {
    std::lock_guard lock(mutex_);
    parked_.clear(); // their requests ended with the device file
  }
  // Releasing the last /dev/fuse file aborted the connection: nothing is left to abort on a timeout.
  if (dev_ != 0)
    unregister_fuse_connection(dev_);
}

FuseServer::Answer FuseServer::on_init(const char *in, std::size_t insize) {
  p::fuse_init_in init{};
  if (!read_struct(in, insize, init))
    return {EINVAL, {}, true};
  kernel_init_ = KernelInit{init.major, init.minor, init.flags, init.flags2};

  std::uint64_t flags = p::init_flag::ASYNC_READ | p::init_flag::BIG_WRITES | p::init_flag::MAX_PAGES;
  if (init_.init_ext)
    flags |= p::init_flag::INIT_EXT;
  if (init_.writeback_cache)
    flags |= p::init_flag::WRITEBACK_CACHE;
  if (init_.passthrough)
    flags |= p::init_flag::PASSTHROUGH;
  if (init_.direct_io_allow_mmap)
    flags |= p::init_flag::DIRECT_IO_ALLOW_MMAP;

  p::fuse_init_out out{};
  out.major = p::kKernelVersion;
  out.minor = std::min(init.minor, p::kKernelMinorVersion);
  out.max_readahead = init.max_readahead;
  out.flags = static_cast<std::uint32_t>(flags);
  // Sent even without INIT_EXT: the point of leaving it out is that the kernel then ignores flags2.
  out.flags2 = static_cast<std::uint32_t>(flags >> 32);
  out.max_background = 16;
  out.congestion_threshold = 12;
  out.max_write = kMaxWrite;
  out.time_gran = 1;
  out.max_pages = 256;
  out.max_stack_depth = static_cast<std::uint32_t>(init_.max_stack_depth);
  // Always the full 64 bytes: a short reply is zero-filled, i.e. max_stack_depth 0, no passthrough.
  return {0, bytes_of(out), true};
}

int FuseServer::attr_of(std::uint64_t nodeid, p::fuse_attr &attr) const {
  attr = p::fuse_attr{};
  attr.ino = nodeid;
  attr.blksize = 4096;
  if (nodeid == p::kRootId) {
    attr.mode = S_IFDIR | 0755;
    attr.nlink = 2;
    attr.atime = attr.mtime = attr.ctime = start_time_;
    return 0;
  }
  const std::string *name = name_of(nodeid);
  if (name == nullptr)
    return ENOENT;
  attr.nlink = 1;
  return parts_.files->attr(*name, attr);
}

std::optional<std::string> FuseServer::entry_of(std::uint64_t nodeid) const {
  p::fuse_entry_out entry{};
  if (attr_of(nodeid, entry.attr) != 0)
    return std::nullopt;
  entry.nodeid = nodeid;
  // attr_valid stays 0: every stat asks the server.
  entry.entry_valid = parts_.entry_timeout;
  return bytes_of(entry);
}

FuseServer::Answer FuseServer::on_lookup(std::uint64_t parent, const char *in, std::size_t insize) {
  std::optional<std::string> name = read_name(in, insize);
  if (!name)
    return {EINVAL, {}, true};
  auto it = state_.files.find(*name);
  if (parent != p::kRootId || it == state_.files.end())
    return {ENOENT, {}, true};
  std::optional<std::string> entry = entry_of(it->second);
  return entry ? Answer{0, std::move(*entry), true} : Answer{EIO, {}, true};
}

FuseServer::Answer FuseServer::on_getattr(std::uint64_t nodeid) {
  p::fuse_attr_out out{};
  if (const int e = attr_of(nodeid, out.attr); e != 0)
    return {e, {}, true};
  return {0, bytes_of(out), true};
}

FuseServer::Answer FuseServer::on_setattr(std::uint64_t nodeid, const char *in, std::size_t insize) {
  p::fuse_setattr_in set{};
  if (!read_struct(in, insize, set))
    return {EINVAL, {}, true};
  if (nodeid != p::kRootId) {
    const std::string *name = name_of(nodeid);
    if (name == nullptr)
      return {ENOENT, {}, true};
    // The kernel sends SETATTR(size) for O_TRUNC opens and ftruncate on non-passthrough files.
    if (const int e = parts_.files->setattr(*name, set); e != 0)
      return {e, {}, true};
  }
  return on_getattr(nodeid);
}

model::OpenReply FuseServer::decide(policy::OpenRequest &request) {
  request.fh = next_fh_;
  for (policy::Holder holder : parts_.policy->register_before_reply(request, state_))
    register_backing(holder);
  return parts_.policy->reply(request, state_);
}

FuseServer::Answer FuseServer::finish_open(const policy::OpenRequest &request, model::OpenReply reply,
                                           bool with_entry) {
  Answer answer;
  if (reply.kind == model::OpenReply::Kind::Flags && with_entry) {
    std::optional<std::string> entry = entry_of(request.inode);
    if (entry)
      answer.payload = std::move(*entry);
    else
      reply = policy::reply_error(EIO);
  }
  OpenEvent event{request, reply, std::nullopt, current_pid_};
  switch (reply.kind) {
  case model::OpenReply::Kind::Error: answer.error = reply.error; break;
  case model::OpenReply::Kind::Enosys: answer.error = ENOSYS; break;
  case model::OpenReply::Kind::Flags:
    event.fh = next_fh_++;
    unreleased_[*event.fh] = opens_.size();
    if (request.kind != policy::OpenKind::Opendir)
      ++state_.open_handles[request.inode];
    answer.payload += bytes_of(p::fuse_open_out{*event.fh, reply.open_flags, reply.backing_id});
    close_after_reply_ = parts_.policy->close_after_reply(request, state_);
    break;
  }
  opens_.push_back(event);
  observer_.opened(event);
  return answer;
}

FuseServer::Answer FuseServer::on_open(std::uint32_t opcode, std::uint64_t nodeid, const char *in,
                                       std::size_t insize) {
  p::fuse_open_in open_in{};
  if (!read_struct(in, insize, open_in))
    return {EINVAL, {}, true};
  policy::OpenRequest request{policy::OpenKind::Opendir, nodeid, "", open_in.flags, 0};
  if (opcode == p::OPEN) {
    const std::string *name = name_of(nodeid);
    if (name == nullptr)
      return {ENOENT, {}, true};
    request.kind = policy::OpenKind::Open;
    request.name = *name;
  } else if (nodeid != p::kRootId) {
    return {ENOTDIR, {}, true};
  }
  const model::OpenReply reply = decide(request);
  return finish_open(request, reply, false);
}

FuseServer::Answer FuseServer::on_create(std::uint64_t parent, const char *in, std::size_t insize) {
  p::fuse_create_in create{};
  if (!read_struct(in, insize, create))
    return {EINVAL, {}, true};
  std::optional<std::string> name = read_name(in + sizeof(create), insize - sizeof(create));
  if (!name || parent != p::kRootId)
    return {EINVAL, {}, true};
  if (state_.files.count(*name) != 0)
    return {EEXIST, {}, true};
  if (const int e = parts_.files->create(*name, create.mode & ~create.umask); e != 0)
    return {e, {}, true};
  policy::OpenRequest request{policy::OpenKind::Create, add_name(*name), *name, create.flags, 0};
  const model::OpenReply reply = decide(request);
  // A CREATE the server fails leaves nothing behind: a later open of the name must find no file.
  if (reply.kind != model::OpenReply::Kind::Flags) {
    for (policy::Holder holder : {policy::Holder{request.inode, 0}, policy::Holder{request.inode, request.fh}})
      if (state_.backing_ids.count(holder) != 0)
        close_backing(holder);
    parts_.files->remove(*name);
    drop_name(request.inode);
  }
  return finish_open(request, reply, true);
}

FuseServer::Answer FuseServer::on_read(std::uint64_t nodeid, const char *in, std::size_t insize) {
  p::fuse_read_in read_in{};
  if (!read_struct(in, insize, read_in))
    return {EINVAL, {}, true};
  const std::string *name = name_of(nodeid);
  if (name == nullptr)
    return {ENOENT, {}, true};
  Answer answer;
  answer.error = parts_.files->read(*name, read_in.offset, read_in.size, answer.payload);
  return answer;
}

FuseServer::Answer FuseServer::on_write(std::uint64_t unique, std::uint64_t nodeid, const char *in,
                                        std::size_t insize) {
  p::fuse_write_in write_in{};
  if (!read_struct(in, insize, write_in) || insize - sizeof(write_in) < write_in.size)
    return {EINVAL, {}, true};
  const std::string *name = name_of(nodeid);
  if (name == nullptr)
    return {ENOENT, {}, true};
  std::string data(in + sizeof(write_in), write_in.size);
  ++writes_by_thread_[current_pid_];
  if (auto armed = hold_armed_.find(current_pid_); armed != hold_armed_.end()) {
    parked_[unique] =
        Parked{HeldWrite{unique, armed->second, *name, write_in.offset, data.size()}, std::move(data)};
    hold_armed_.erase(armed);
    changed_.notify_all();
    return {0, {}, false};
  }
  std::uint32_t written = 0;
  if (const int e = parts_.files->write(*name, write_in.offset, data, written); e != 0)
    return {e, {}, true};
  return {0, bytes_of(p::fuse_write_out{written, 0}), true};
}

FuseServer::Answer FuseServer::on_release(const char *in, std::size_t insize) {
  p::fuse_release_in release{};
  if (!read_struct(in, insize, release))
    return {EINVAL, {}, true};
  released_.insert(release.fh);
  auto it = unreleased_.find(release.fh);
  if (it == unreleased_.end()) {
    problems_.push_back("RELEASE of fh " + std::to_string(release.fh) + ", which the server never gave out");
    return {};
  }
  const OpenEvent &event = opens_.at(it->second);
  unreleased_.erase(it);
  const policy::Inode inode = event.request.inode;
  if (event.request.kind != policy::OpenKind::Opendir && --state_.open_handles.at(inode) == 0)
    state_.open_handles.erase(inode);
  observer_.released(event);
  if (event.request.kind != policy::OpenKind::Opendir)
    for (policy::Holder holder : parts_.policy->close_after_release(event.request, state_))
      close_backing(holder);
  changed_.notify_all();
  return {};
}

FuseServer::Answer FuseServer::on_readdir(std::uint64_t nodeid, const char *in, std::size_t insize) {
  p::fuse_read_in read_in{};
  if (!read_struct(in, insize, read_in))
    return {EINVAL, {}, true};
  if (nodeid != p::kRootId)
    return {ENOTDIR, {}, true};
  // The directory offset is simply the index of the next entry.
  std::vector<std::pair<std::uint64_t, std::string>> entries{{p::kRootId, "."}, {p::kRootId, ".."}};
  for (const auto &[name, id] : state_.files)
    entries.emplace_back(id, name);
  std::string out;
  for (std::size_t i = read_in.offset; i < entries.size(); ++i) {
    const auto &[ino, name] = entries[i];
    p::fuse_dirent dirent{ino, i + 1, static_cast<std::uint32_t>(name.size()),
                          ino == p::kRootId ? DT_DIR : DT_REG};
    std::size_t entry_size = (sizeof(dirent) + name.size() + 7) & ~std::size_t{7};
    if (out.size() + entry_size > read_in.size)
      break;
    std::string entry = bytes_of(dirent) + name;
    entry.resize(entry_size, '\0');
    out += entry;
  }
  return {0, out, true};
}

FuseServer::Answer FuseServer::on_statfs() {
  p::fuse_statfs_out out{};
  out.st.blocks = 1 << 20;
  out.st.bfree = 1 << 19;
  out.st.bavail = 1 << 19;
  out.st.files = 1 << 16;
  out.st.ffree = (1 << 16) - names_.size();
  out.st.bsize = 4096;
  out.st.namelen = 255;
  out.st.frsize = 4096;
  return {0, bytes_of(out), true};
}

} // namespace fpsim::harness
