#include "recorder.h"

#include "fuse_proto.h"
#include "namespace.h"
#include "wire.h"

#include "sim/parser.h"
#include "sim/printer.h"
#include "sim/replay.h"
#include "sim/sim_executor.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

extern char **environ;

namespace fpsim::harness {
namespace {

namespace p = proto;
using namespace std::chrono_literals;

// ---- exit codes ---------------------------------------------------------------------------------

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// The isolated child's verdicts (it prints the one-line reason itself).
constexpr int kBodyOk = 0;
constexpr int kBodySetupFailed = 10;
constexpr int kBodyTimedOut = 11;
constexpr int kBodyExecFailed = 12;
constexpr int kBodyInexpressible = 13;
constexpr int kBodyWriteFailed = 14;

// How long the files of a finished command are given to be released (RELEASE is asynchronous).
constexpr auto kReleaseGrace = 5s;

// fuse_setattr_in.valid bits beyond the two fuse_proto.h names.
namespace fattr {
constexpr std::uint32_t MODE = 1u << 0;
constexpr std::uint32_t UID = 1u << 1;
constexpr std::uint32_t GID = 1u << 2;
constexpr std::uint32_t SIZE = 1u << 3;
constexpr std::uint32_t ATIME = 1u << 4;
constexpr std::uint32_t MTIME = 1u << 5;
constexpr std::uint32_t FH = 1u << 6;
constexpr std::uint32_t ATIME_NOW = 1u << 7;
constexpr std::uint32_t MTIME_NOW = 1u << 8;
} // namespace fattr

// __FMODE_EXEC in fuse_open_in.flags: the kernel's open of an executable for execve(2).
constexpr std::uint32_t kFmodeExec = 0x20;

constexpr std::uint32_t kMaxWrite = 1u << 20;
constexpr std::size_t kReadBufferSize = kMaxWrite + 4096;

// ---- small helpers ------------------------------------------------------------------------------

using wire::errno_text;

const char *policy_name(RecordPolicy policy) {
  switch (policy) {
  case RecordPolicy::Hp:
    return "hp";
  case RecordPolicy::Passthrough:
    return "passthrough";
  case RecordPolicy::Cached:
    return "cached";
  case RecordPolicy::DirectIo:
    return "direct_io";
  }
  return "?";
}

// Comment lines (each starting with "# ") on how the policy answers opens.
const char *policy_description(RecordPolicy policy) {
  switch (policy) {
  case RecordPolicy::Hp:
    return "# policy hp: one backing id per inode: BACKING_OPEN at the inode's first open,\n"
           "# FOPEN_PASSTHROUGH with that id while any of its files is open, BACKING_CLOSE at its last RELEASE\n";
  case RecordPolicy::Passthrough:
    return "# policy passthrough: every file registered right after the mount, every open FOPEN_PASSTHROUGH\n"
           "# with the file's id, the ids closed after the command once every file was released\n";
  case RecordPolicy::Cached:
    return "# policy cached: every open answered with open_flags 0\n";
  case RecordPolicy::DirectIo:
    return "# policy direct_io: every open answered with FOPEN_DIRECT_IO\n";
  }
  return "";
}

using sim::valid_name;

// A backing file that `backing_open B FILE` can name: not one of the special sources.
bool valid_backing_file(const std::string &name) {
  static const std::set<std::string> special = {"dir", "pipe", "socket", "devnull", "badfd"};
  return valid_name(name) && special.count(name) == 0;
}

const char *opcode_name(std::uint32_t op) {
  static const std::map<std::uint32_t, const char *> names = {
      {1, "LOOKUP"},        {2, "FORGET"},         {3, "GETATTR"},       {4, "SETATTR"},
      {5, "READLINK"},      {6, "SYMLINK"},        {8, "MKNOD"},         {9, "MKDIR"},
      {10, "UNLINK"},       {11, "RMDIR"},         {12, "RENAME"},       {13, "LINK"},
      {14, "OPEN"},         {15, "READ"},          {16, "WRITE"},        {17, "STATFS"},
      {18, "RELEASE"},      {20, "FSYNC"},         {21, "SETXATTR"},     {22, "GETXATTR"},
      {23, "LISTXATTR"},    {24, "REMOVEXATTR"},   {25, "FLUSH"},        {26, "INIT"},
      {27, "OPENDIR"},      {28, "READDIR"},       {29, "RELEASEDIR"},   {30, "FSYNCDIR"},
      {31, "GETLK"},        {32, "SETLK"},         {33, "SETLKW"},       {34, "ACCESS"},
      {35, "CREATE"},       {36, "INTERRUPT"},     {37, "BMAP"},         {38, "DESTROY"},
      {39, "IOCTL"},        {40, "POLL"},          {41, "NOTIFY_REPLY"}, {42, "BATCH_FORGET"},
      {43, "FALLOCATE"},    {44, "READDIRPLUS"},   {45, "RENAME2"},      {46, "LSEEK"},
      {47, "COPY_FILE_RANGE"}, {48, "SETUPMAPPING"}, {49, "REMOVEMAPPING"}, {50, "SYNCFS"},
      {51, "TMPFILE"},      {52, "STATX"},         {53, "COPY_FILE_RANGE_64"},
  };
  auto it = names.find(op);
  return it == names.end() ? nullptr : it->second;
}

std::string opcode_text(std::uint32_t op) {
  const char *name = opcode_name(op);
  return name ? std::string(name) : fmt::format("opcode{}", op);
}

// Text for a comment or the title: valid UTF-8 is kept, control characters and invalid bytes are
// escaped, so the line stays one line of valid UTF-8 whatever the command's arguments hold.
std::string printable(const std::string &s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
      ++i;
      continue;
    }
    if (c == '\t') {
      out += "\\t";
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    std::size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    std::uint32_t cp = len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    const std::uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    out.append(s, i, len);
    i += len;
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

std::string access_text(std::uint32_t flags) {
  switch (flags & O_ACCMODE) {
  case O_WRONLY:
    return "wronly";
  case O_RDWR:
    return "rdwr";
  default:
    return "rdonly";
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

using wire::bytes_of;
using wire::install_wake_handler;
using wire::read_name;
using wire::read_struct;
using wire::wake_signal;

bool write_all(int fd, const std::string &text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// ---- the recording server -------------------------------------------------------------------------

// A flat directory served from real files (the private copies of DIR), answering OPEN/CREATE by
// policy and logging what the trace needs.
class RecordServer {
public:
  RecordServer(RecordPolicy policy, std::string workdir, std::string ctl_dir, bool verbose)
      : policy_(policy), workdir_(std::move(workdir)), ctl_dir_(std::move(ctl_dir)), verbose_(verbose) {}
  ~RecordServer() { teardown(); }
  RecordServer(const RecordServer &) = delete;
  RecordServer &operator=(const RecordServer &) = delete;

  // A file already in the work directory.
  bool add_file(const std::string &name, std::string &err) {
    const std::string path = workdir_ + "/" + name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      err = errno_text("open " + path, errno);
      return false;
    }
    std::lock_guard lock(mutex_);
    const std::uint64_t nodeid = next_nodeid_++;
    files_[nodeid] = File{name, fd};
    by_name_[name] = nodeid;
    return true;
  }

  int mount(const std::string &mnt, std::string &err) {
    devfd_ = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (devfd_ < 0) {
      err = errno_text("open /dev/fuse", errno);
      return -1;
    }
    if (ioctl(devfd_, p::kDevIocSyncInit) != 0) {
      err = errno_text("ioctl(FUSE_DEV_IOC_SYNC_INIT)", errno);
      return -1;
    }
    install_wake_handler();
    thread_ = std::thread([this] { serve(); });
    const std::string opts =
        "fd=" + std::to_string(devfd_) + ",rootmode=40000,user_id=0,group_id=0,allow_other";
    if (::mount("fpsim-record", mnt.c_str(), "fuse.fpsim", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      err = errno_text("mount fuse.fpsim on " + mnt, errno);
      stop_thread();
      return -1;
    }
    mnt_ = mnt;
    mounted_ = true;
    struct stat st {};
    if (stat(mnt.c_str(), &st) != 0) {
      err = errno_text("stat " + mnt, errno);
      return -1;
    }
    dev_ = st.st_dev;
    register_fuse_connection(dev_);
    return 0;
  }

  // The passthrough policy: every file registered right after the mount, in name order.
  void register_all() {
    std::lock_guard lock(mutex_);
    for (auto &[name, nodeid] : by_name_)
      register_backing(files_.at(nodeid));
  }

  // Waits until every handle the server gave out was released; false after `timeout`.
  bool wait_all_released(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return unreleased_locked().empty(); });
  }

  // The passthrough policy: closes every id still registered (after the last RELEASE).
  void close_registered() {
    std::lock_guard lock(mutex_);
    for (auto &[name, nodeid] : by_name_) {
      File &f = files_.at(nodeid);
      if (f.backing >= 0)
        close_backing(f);
    }
  }

  // Unmounts (lazily if busy), lets the thread see ENODEV (aborting through fusectl if it does not),
  // closes the device. Idempotent.
  void teardown() {
    if (mounted_) {
      if (umount2(mnt_.c_str(), 0) != 0) {
        const int e = errno;
        note_problem(errno_text("umount " + mnt_ + " (detaching instead)", e));
        umount2(mnt_.c_str(), MNT_DETACH);
      }
      mounted_ = false;
    }
    if (thread_.joinable()) {
      if (!wait_stopped(2s) && dev_ != 0) {
        std::string err;
        if (abort_fuse_connection(dev_, ctl_dir_, err) != 0)
          note_problem("abort: " + err);
        wait_stopped(2s);
      }
      stop_thread();
    }
    if (devfd_ >= 0) {
      ::close(devfd_);
      devfd_ = -1;
      if (dev_ != 0)
        unregister_fuse_connection(dev_);
    }
    std::lock_guard lock(mutex_);
    for (auto &[id, f] : files_) {
      if (f.fd >= 0)
        ::close(f.fd);
      f.fd = -1;
    }
  }

  std::vector<std::string> problems() const {
    std::lock_guard lock(mutex_);
    return problems_;
  }

  // Names the command created that the trace grammar cannot hold.
  std::vector<std::string> inexpressible_names() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> bad;
    for (const Handle &h : handles_)
      if (h.opcode != p::OPENDIR && !valid_name(h.file))
        bad.push_back(h.file);
    for (const Backing &b : backings_)
      if (!valid_backing_file(b.file))
        bad.push_back(b.file);
    std::sort(bad.begin(), bad.end());
    bad.erase(std::unique(bad.begin(), bad.end()), bad.end());
    return bad;
  }

  // The trace's statements, in the order the server saw them, and the trailing comments.
  std::string statements(std::vector<std::string> *warnings) const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const Event &e : events_) {
      switch (e.kind) {
      case Event::Kind::BackingOpen: {
        const Backing &b = backings_.at(static_cast<std::size_t>(e.index));
        out += fmt::format("backing_open B{} {} => {}\n", e.index + 1, b.file,
                           b.id > 0 ? fmt::format("id={}", b.id) : sim::errno_name(-b.id));
        break;
      }
      case Event::Kind::BackingClose:
        out += fmt::format("backing_close B{} => {}\n", e.index + 1,
                           e.result == 0 ? std::string("ok") : sim::errno_name(-e.result));
        break;
      case Event::Kind::Open:
        out += open_statement(e.index, warnings);
        break;
      case Event::Kind::Release: {
        const Handle &h = handles_.at(static_cast<std::size_t>(e.index));
        if (!h.refused) // a refused open's synchronous RELEASE is its "+release"
          out += fmt::format("close H{} => ok\n", e.index + 1);
        break;
      }
      }
    }
    for (std::size_t i = 0; i < handles_.size(); ++i) {
      const Handle &h = handles_[i];
      if (h.fh && !h.released)
        out += fmt::format("# H{} was not released before the unmount (the replay's teardown closes it)\n",
                           i + 1);
    }
    return out;
  }

  std::string request_counts() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> counts;
    for (const auto &[op, n] : counts_)
      counts.push_back(fmt::format("{} {}", opcode_text(op), n));
    std::vector<std::string> enosys;
    for (std::uint32_t op : enosys_)
      enosys.push_back(opcode_text(op));
    std::string out = comment_list("requests the server received:", counts);
    if (!enosys.empty())
      out += comment_list("answered ENOSYS (not implemented):", enosys);
    return out;
  }

private:
  struct File {
    std::string name;
    int fd = -1;
    int open_count = 0;  // hp: handles given out and not yet released
    int backing = -1;    // registered backing slot, -1 if none
    std::int32_t id = 0; // its id
  };
  struct Backing {
    std::string file;
    int id = 0; // > 0, or -errno of a failed BACKING_OPEN
  };
  struct Handle {
    std::uint32_t opcode = 0; // OPEN, CREATE, OPENDIR
    std::string file;
    std::uint64_t nodeid = 0;
    std::uint32_t flags = 0;
    int error = 0; // the server failed the request with this errno
    std::uint32_t open_flags = 0;
    int backing = -1; // slot whose id the reply carried
    std::optional<std::uint64_t> fh;
    bool refused = false; // a synchronous RELEASE followed: open(2) failed with EIO
    bool o_trunc = false; // a SETATTR(size 0, no fh) followed: O_TRUNC (no ATOMIC_O_TRUNC)
    bool released = false;
    std::uint32_t opener = 0;     // fuse_in_header.pid of the OPEN/CREATE: the opening thread
    bool opener_moved_on = false; // the opening thread sent another request since
    bool flushed = false;         // a FLUSH of its fh arrived (a close(2))
  };
  struct Event {
    enum class Kind { BackingOpen, BackingClose, Open, Release };
    Kind kind;
    int index;      // backing slot or handle
    int result = 0; // BackingClose: 0 or -errno
  };
  struct Answer {
    int error = 0;
    std::string payload;
    bool send = true;
  };

  std::string reply_text(const Handle &h) const {
    if (h.error != 0)
      return "error:" + sim::errno_name(h.error);
    std::string flags;
    if (h.open_flags & p::fopen::PASSTHROUGH)
      flags = "passthrough";
    if (h.open_flags & p::fopen::DIRECT_IO)
      flags += flags.empty() ? "direct_io" : "|direct_io";
    if (flags.empty())
      flags = "cached";
    if (h.backing >= 0)
      flags += fmt::format("@B{}", h.backing + 1);
    return flags;
  }

  std::string open_statement(int index, std::vector<std::string> *warnings) const {
    const Handle &h = handles_.at(static_cast<std::size_t>(index));
    std::string outcome = "ok";
    if (h.error != 0)
      outcome = sim::errno_name(h.error);
    else if (h.refused)
      outcome = "EIO +release";
    const std::string name = fmt::format("H{}", index + 1);
    if (h.opcode == p::OPENDIR)
      return fmt::format("opendir {} reply={} => {}\n", name, reply_text(h), outcome);
    if (h.opcode == p::CREATE) {
      std::string note;
      const std::uint32_t exact = O_CREAT | O_EXCL | O_RDWR;
      if ((h.flags & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL)) {
        note = fmt::format("# {}: CREATE of {} without O_EXCL ({}); written as create\n"
                           "# (O_CREAT|O_EXCL|O_RDWR): the server saw CREATE, so the file did not exist, and the\n"
                           "# open transitions are the same\n",
                           name, h.file, open_flags_text(h.flags));
        warnings->push_back(fmt::format("{} (CREATE of {}) had no O_EXCL ({}); written as create", name,
                                        h.file, open_flags_text(h.flags)));
      } else if ((h.flags & (O_ACCMODE | O_CREAT | O_EXCL | O_DIRECT)) != exact) {
        note = fmt::format("# {}: CREATE of {} with {}; a trace's create is O_CREAT|O_EXCL|O_RDWR\n"
                           "# (the access mode changes no open or close transition)\n",
                           name, h.file, open_flags_text(h.flags));
      }
      return note + fmt::format("create {} {} reply={} => {}\n", name, h.file, reply_text(h), outcome);
    }
    std::string note;
    if (h.flags & kFmodeExec)
      note = fmt::format("# {}: the kernel's open of {} as an executable (execve); no close(2) of its own "
                         "releases it\n", name, h.file);
    std::string opts = access_text(h.flags);
    if (h.flags & O_DIRECT)
      opts += " o_direct";
    if (h.o_trunc || (h.flags & O_TRUNC))
      opts += " o_trunc";
    return note + fmt::format("open {} {} {} reply={} => {}\n", name, h.file, opts, reply_text(h), outcome);
  }

  std::vector<std::size_t> unreleased_locked() const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < handles_.size(); ++i)
      if (handles_[i].fh && !handles_[i].released)
        out.push_back(i);
    return out;
  }

  void note_problem(std::string what) {
    std::lock_guard lock(mutex_);
    problems_.push_back(std::move(what));
  }

  bool wait_stopped(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return thread_done_.load(); });
  }

  void stop_thread() {
    if (!thread_.joinable())
      return;
    stopping_ = true;
    while (!wait_stopped(10ms))
      pthread_kill(thread_.native_handle(), wake_signal());
    thread_.join();
  }

  // mutex_ held.
  void register_backing(File &f) {
    fpsim::harness::proto::fuse_backing_map map{f.fd, 0, 0};
    const int rc = ioctl(devfd_, p::kDevIocBackingOpen, &map);
    const int id = rc < 0 ? -errno : rc;
    backings_.push_back(Backing{f.name, id});
    const int slot = static_cast<int>(backings_.size() - 1);
    events_.push_back(Event{Event::Kind::BackingOpen, slot, 0});
    if (verbose_)
      fmt::print(stderr, "[record] BACKING_OPEN {} => {}\n", f.name,
                 id > 0 ? fmt::format("id={}", id) : sim::errno_name(-id));
    if (id > 0) {
      f.backing = slot;
      f.id = id;
    }
  }

  // mutex_ held.
  void close_backing(File &f) {
    std::uint32_t id = static_cast<std::uint32_t>(f.id);
    const int rc = ioctl(devfd_, p::kDevIocBackingClose, &id) < 0 ? -errno : 0;
    events_.push_back(Event{Event::Kind::BackingClose, f.backing, rc});
    if (verbose_)
      fmt::print(stderr, "[record] BACKING_CLOSE {} (id {}) => {}\n", f.name, f.id,
                 rc == 0 ? std::string("ok") : sim::errno_name(-rc));
    f.backing = -1;
    f.id = 0;
  }

  void serve() {
    try {
      std::vector<char> buf(kReadBufferSize);
      while (!stopping_) {
        const ssize_t n = ::read(devfd_, buf.data(), buf.size());
        if (n < 0) {
          const int e = errno;
          if (e == EINTR)
            continue;
          if (e != ENODEV && e != ECONNABORTED)
            note_problem(errno_text("read /dev/fuse", e));
          break;
        }
        handle(buf.data(), static_cast<std::size_t>(n));
      }
    } catch (const std::exception &e) {
      note_problem(std::string("server thread: ") + e.what());
    }
    std::lock_guard lock(mutex_);
    thread_done_ = true;
    changed_.notify_all();
  }

  void reply(std::uint64_t unique, const Answer &a) {
    p::fuse_out_header out{};
    out.len = static_cast<std::uint32_t>(sizeof(out) + (a.error == 0 ? a.payload.size() : 0));
    out.error = -a.error;
    out.unique = unique;
    iovec iov[2] = {{&out, sizeof(out)}, {const_cast<char *>(a.payload.data()), a.payload.size()}};
    const int iovcnt = (a.error == 0 && !a.payload.empty()) ? 2 : 1;
    if (writev(devfd_, iov, iovcnt) < 0 && errno != ENOENT)
      note_problem(errno_text("reply to request " + std::to_string(unique), errno));
  }

  void handle(const char *req, std::size_t len) {
    p::fuse_in_header hdr{};
    if (!read_struct(req, len, hdr) || hdr.len != len) {
      note_problem("malformed request of " + std::to_string(len) + " bytes");
      return;
    }
    const char *in = req + sizeof(hdr);
    const std::size_t insize = len - sizeof(hdr);
    Answer a;
    {
      std::lock_guard lock(mutex_);
      ++counts_[hdr.opcode];
      if (verbose_)
        fmt::print(stderr, "[record] pid {} {} nodeid {}\n", hdr.pid, opcode_text(hdr.opcode), hdr.nodeid);
      observe_follow_up(hdr, in, insize);
      switch (hdr.opcode) {
      case p::INIT: a = on_init(in, insize); break;
      case p::LOOKUP: a = on_lookup(hdr.nodeid, in, insize); break;
      case p::GETATTR: a = on_getattr(hdr.nodeid); break;
      case p::SETATTR: a = on_setattr(hdr.nodeid, in, insize); break;
      case p::OPEN: a = on_open(hdr, in, insize); break;
      case p::CREATE: a = on_create(hdr, in, insize); break;
      case p::OPENDIR: a = on_opendir(hdr, in, insize); break;
      case p::READ: a = on_read(hdr.nodeid, in, insize); break;
      case p::WRITE: a = on_write(hdr.nodeid, in, insize); break;
      case p::RELEASE:
      case p::RELEASEDIR: a = on_release(in, insize); break;
      case p::READDIR: a = on_readdir(hdr.nodeid, in, insize); break;
      case p::STATFS: a = on_statfs(); break;
      case p::FLUSH:
      case p::FSYNC:
      case 30: // FSYNCDIR
      case p::DESTROY: break;
      case p::FORGET:
      case p::BATCH_FORGET:
      case p::INTERRUPT: a.send = false; break;
      default:
        enosys_.insert(hdr.opcode);
        a.error = ENOSYS;
        break;
      }
    }
    if (a.send)
      reply(hdr.unique, a);
  }

  // Whether the thread that opened `h` is blocked in the syscall that opened it (see below).
  static bool blocked_in_open(const Handle &h) {
    if (h.opener == 0)
      return false;
    std::FILE *f = std::fopen(fmt::format("/proc/{}/syscall", h.opener).c_str(), "r");
    if (f == nullptr)
      return false; // gone: it is not waiting for anything
    long nr = -1;
    const int got = std::fscanf(f, "%ld", &nr); // "running" or a negative number do not count
    std::fclose(f);
    if (got != 1 || nr < 0)
      return false;
    if (h.flags & kFmodeExec)
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
  // mutex_ held.
  void observe_follow_up(const p::fuse_in_header &hdr, const char *in, std::size_t insize) {
    if (hdr.opcode == p::FLUSH) {
      p::fuse_flush_in flush{};
      if (read_struct(in, insize, flush))
        if (auto it = by_fh_.find(flush.fh); it != by_fh_.end())
          handles_.at(static_cast<std::size_t>(it->second)).flushed = true;
    }
    if (hdr.opcode == p::RELEASE) {
      p::fuse_release_in rel{};
      if (read_struct(in, insize, rel))
        if (auto it = by_fh_.find(rel.fh); it != by_fh_.end()) {
          Handle &h = handles_.at(static_cast<std::size_t>(it->second));
          h.refused = !h.opener_moved_on && !h.flushed && blocked_in_open(h);
        }
    }
    if (hdr.pid == 0)
      return;
    auto it = just_opened_.find(hdr.pid);
    if (it == just_opened_.end())
      return;
    Handle &h = handles_.at(static_cast<std::size_t>(it->second));
    h.opener_moved_on = true;
    if ((hdr.opcode == p::GETATTR || hdr.opcode == p::GETXATTR) && hdr.nodeid == h.nodeid)
      return; // still inside open(2): the truncation may follow
    just_opened_.erase(it);
    if (hdr.opcode == p::SETATTR && h.opcode == p::OPEN && hdr.nodeid == h.nodeid) {
      p::fuse_setattr_in set{};
      if (read_struct(in, insize, set) && (set.valid & fattr::SIZE) && set.size == 0 &&
          !(set.valid & fattr::FH))
        h.o_trunc = true;
    }
  }

  Answer on_init(const char *in, std::size_t insize) {
    p::fuse_init_in init{};
    if (!read_struct(in, insize, init))
      return {EINVAL, {}, true};
    const std::uint64_t flags = p::init_flag::ASYNC_READ | p::init_flag::BIG_WRITES |
                                p::init_flag::MAX_PAGES | p::init_flag::INIT_EXT | p::init_flag::PASSTHROUGH;
    p::fuse_init_out out{};
    out.major = p::kKernelVersion;
    out.minor = std::min(init.minor, p::kKernelMinorVersion);
    out.max_readahead = init.max_readahead;
    out.flags = static_cast<std::uint32_t>(flags);
    out.flags2 = static_cast<std::uint32_t>(flags >> 32);
    out.max_background = 16;
    out.congestion_threshold = 12;
    out.max_write = kMaxWrite;
    out.time_gran = 1;
    out.max_pages = 256;
    out.max_stack_depth = 1;
    return {0, bytes_of(out), true};
  }

  File *file_by_nodeid(std::uint64_t nodeid) {
    auto it = files_.find(nodeid);
    return it == files_.end() ? nullptr : &it->second;
  }

  std::optional<p::fuse_attr> attr_of(std::uint64_t nodeid) {
    p::fuse_attr attr{};
    attr.ino = nodeid;
    attr.blksize = 4096;
    if (nodeid == p::kRootId) {
      attr.mode = S_IFDIR | 0755;
      attr.nlink = 2;
      attr.atime = attr.mtime = attr.ctime = static_cast<std::uint64_t>(root_time_);
      return attr;
    }
    File *f = file_by_nodeid(nodeid);
    struct stat st {};
    if (f == nullptr || fstat(f->fd, &st) != 0)
      return std::nullopt;
    attr.size = static_cast<std::uint64_t>(st.st_size);
    attr.blocks = static_cast<std::uint64_t>(st.st_blocks);
    attr.atime = static_cast<std::uint64_t>(st.st_atim.tv_sec);
    attr.mtime = static_cast<std::uint64_t>(st.st_mtim.tv_sec);
    attr.ctime = static_cast<std::uint64_t>(st.st_ctim.tv_sec);
    attr.atimensec = static_cast<std::uint32_t>(st.st_atim.tv_nsec);
    attr.mtimensec = static_cast<std::uint32_t>(st.st_mtim.tv_nsec);
    attr.ctimensec = static_cast<std::uint32_t>(st.st_ctim.tv_nsec);
    attr.mode = S_IFREG | (st.st_mode & 07777);
    attr.nlink = 1;
    attr.uid = st.st_uid;
    attr.gid = st.st_gid;
    return attr;
  }

  std::optional<std::string> entry_of(std::uint64_t nodeid) {
    std::optional<p::fuse_attr> attr = attr_of(nodeid);
    if (!attr)
      return std::nullopt;
    p::fuse_entry_out entry{};
    entry.nodeid = nodeid;
    entry.entry_valid = 1; // keeps the dentry for a second; attributes are always asked for
    entry.attr = *attr;
    return bytes_of(entry);
  }

  Answer on_lookup(std::uint64_t parent, const char *in, std::size_t insize) {
    std::optional<std::string> name = read_name(in, insize);
    if (!name)
      return {EINVAL, {}, true};
    if (parent != p::kRootId)
      return {ENOENT, {}, true};
    auto it = by_name_.find(*name);
    if (it == by_name_.end())
      return {ENOENT, {}, true};
    std::optional<std::string> entry = entry_of(it->second);
    if (!entry)
      return {EIO, {}, true};
    return {0, *entry, true};
  }

  Answer on_getattr(std::uint64_t nodeid) {
    std::optional<p::fuse_attr> attr = attr_of(nodeid);
    if (!attr)
      return {ENOENT, {}, true};
    p::fuse_attr_out out{};
    out.attr = *attr;
    return {0, bytes_of(out), true};
  }

  Answer on_setattr(std::uint64_t nodeid, const char *in, std::size_t insize) {
    p::fuse_setattr_in set{};
    if (!read_struct(in, insize, set))
      return {EINVAL, {}, true};
    if (nodeid != p::kRootId) {
      File *f = file_by_nodeid(nodeid);
      if (f == nullptr)
        return {ENOENT, {}, true};
      if ((set.valid & fattr::SIZE) && ftruncate(f->fd, static_cast<off_t>(set.size)) != 0)
        return {errno, {}, true};
      if ((set.valid & fattr::MODE) && fchmod(f->fd, set.mode & 07777) != 0)
        return {errno, {}, true};
      if (set.valid & (fattr::UID | fattr::GID)) {
        const uid_t uid = (set.valid & fattr::UID) ? set.uid : static_cast<uid_t>(-1);
        const gid_t gid = (set.valid & fattr::GID) ? set.gid : static_cast<gid_t>(-1);
        if (fchown(f->fd, uid, gid) != 0)
          return {errno, {}, true};
      }
      if (set.valid & (fattr::ATIME | fattr::MTIME | fattr::ATIME_NOW | fattr::MTIME_NOW)) {
        timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
        if (set.valid & fattr::ATIME_NOW)
          ts[0].tv_nsec = UTIME_NOW;
        else if (set.valid & fattr::ATIME)
          ts[0] = {static_cast<time_t>(set.atime), static_cast<long>(set.atimensec)};
        if (set.valid & fattr::MTIME_NOW)
          ts[1].tv_nsec = UTIME_NOW;
        else if (set.valid & fattr::MTIME)
          ts[1] = {static_cast<time_t>(set.mtime), static_cast<long>(set.mtimensec)};
        if (futimens(f->fd, ts) != 0)
          return {errno, {}, true};
      }
    }
    return on_getattr(nodeid);
  }

  // The policy's reply for an open of `f` (hp: registers at the inode's first open). mutex_ held.
  void decide(File &f, Handle &h) {
    switch (policy_) {
    case RecordPolicy::Cached:
      return;
    case RecordPolicy::DirectIo:
      h.open_flags = p::fopen::DIRECT_IO;
      return;
    case RecordPolicy::Hp:
      if (f.backing < 0)
        register_backing(f);
      break;
    case RecordPolicy::Passthrough:
      break;
    }
    if (f.backing < 0) {
      h.error = EIO; // no id to hand out (BACKING_OPEN failed)
      return;
    }
    h.open_flags = p::fopen::PASSTHROUGH;
    h.backing = f.backing;
  }

  // Gives out the handle (or the error) and logs the open. mutex_ held.
  Answer finish_open(Handle h, std::uint32_t pid, bool with_entry) {
    Answer a;
    h.opener = pid;
    if (h.error != 0) {
      a.error = h.error;
    } else {
      h.fh = next_fh_++;
      if (with_entry) {
        std::optional<std::string> entry = entry_of(h.nodeid);
        if (entry)
          a.payload = *entry;
        else
          a.error = EIO;
      }
      p::fuse_open_out out{*h.fh, h.open_flags, h.backing >= 0 ? backings_.at(static_cast<std::size_t>(h.backing)).id : 0};
      a.payload += bytes_of(out);
      if (File *f = file_by_nodeid(h.nodeid))
        ++f->open_count;
    }
    handles_.push_back(std::move(h));
    const int index = static_cast<int>(handles_.size() - 1);
    if (handles_.back().fh) {
      by_fh_[*handles_.back().fh] = index;
      just_opened_[pid] = index;
    }
    events_.push_back(Event{Event::Kind::Open, index, 0});
    if (verbose_)
      fmt::print(stderr, "[record]   => H{} {} flags {} ({:#x}) reply {}\n", index + 1, handles_.back().file,
                 open_flags_text(handles_.back().flags), handles_.back().flags, reply_text(handles_.back()));
    return a;
  }

  Answer on_open(const p::fuse_in_header &hdr, const char *in, std::size_t insize) {
    p::fuse_open_in open_in{};
    if (!read_struct(in, insize, open_in))
      return {EINVAL, {}, true};
    File *f = file_by_nodeid(hdr.nodeid);
    if (f == nullptr)
      return {ENOENT, {}, true};
    Handle h;
    h.opcode = p::OPEN;
    h.file = f->name;
    h.nodeid = hdr.nodeid;
    h.flags = open_in.flags;
    decide(*f, h);
    return finish_open(std::move(h), hdr.pid, false);
  }

  Answer on_create(const p::fuse_in_header &hdr, const char *in, std::size_t insize) {
    p::fuse_create_in create{};
    if (!read_struct(in, insize, create))
      return {EINVAL, {}, true};
    std::optional<std::string> name = read_name(in + sizeof(create), insize - sizeof(create));
    if (!name || hdr.nodeid != p::kRootId)
      return {EINVAL, {}, true};
    if (by_name_.count(*name))
      return {EEXIST, {}, true};
    if (name->empty() || name->find('/') != std::string::npos)
      return {EINVAL, {}, true};
    const std::string path = workdir_ + "/" + *name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                          create.mode & ~create.umask & 07777);
    if (fd < 0)
      return {errno, {}, true};
    const std::uint64_t nodeid = next_nodeid_++;
    files_[nodeid] = File{*name, fd};
    by_name_[*name] = nodeid;
    File &f = files_.at(nodeid);
    // The passthrough policy registers every file: one that did not exist at the mount, now.
    if (policy_ == RecordPolicy::Passthrough)
      register_backing(f);
    Handle h;
    h.opcode = p::CREATE;
    h.file = *name;
    h.nodeid = nodeid;
    h.flags = create.flags;
    decide(f, h);
    return finish_open(std::move(h), hdr.pid, true);
  }

  Answer on_opendir(const p::fuse_in_header &hdr, const char *in, std::size_t insize) {
    p::fuse_open_in open_in{};
    if (!read_struct(in, insize, open_in))
      return {EINVAL, {}, true};
    if (hdr.nodeid != p::kRootId)
      return {ENOTDIR, {}, true};
    Handle h;
    h.opcode = p::OPENDIR;
    h.nodeid = p::kRootId;
    h.flags = open_in.flags;
    return finish_open(std::move(h), hdr.pid, false);
  }

  Answer on_read(std::uint64_t nodeid, const char *in, std::size_t insize) {
    p::fuse_read_in read_in{};
    if (!read_struct(in, insize, read_in))
      return {EINVAL, {}, true};
    File *f = file_by_nodeid(nodeid);
    if (f == nullptr)
      return {ENOENT, {}, true};
    std::string data(std::min<std::uint32_t>(read_in.size, kMaxWrite), '\0');
    const ssize_t n = pread(f->fd, data.data(), data.size(), static_cast<off_t>(read_in.offset));
    if (n < 0)
      return {errno, {}, true};
    data.resize(static_cast<std::size_t>(n));
    return {0, std::move(data), true};
  }

  Answer on_write(std::uint64_t nodeid, const char *in, std::size_t insize) {
    p::fuse_write_in write_in{};
    if (!read_struct(in, insize, write_in) || insize - sizeof(write_in) < write_in.size)
      return {EINVAL, {}, true};
    File *f = file_by_nodeid(nodeid);
    if (f == nullptr)
      return {ENOENT, {}, true};
    const ssize_t n = pwrite(f->fd, in + sizeof(write_in), write_in.size, static_cast<off_t>(write_in.offset));
    if (n < 0)
      return {errno, {}, true};
    p::fuse_write_out out{static_cast<std::uint32_t>(n), 0};
    return {0, bytes_of(out), true};
  }

  Answer on_release(const char *in, std::size_t insize) {
    p::fuse_release_in rel{};
    if (!read_struct(in, insize, rel))
      return {EINVAL, {}, true};
    auto it = by_fh_.find(rel.fh);
    if (it == by_fh_.end()) {
      problems_.push_back(fmt::format("RELEASE of an unknown fh {}", rel.fh));
      return {};
    }
    const int index = it->second;
    by_fh_.erase(it);
    Handle &h = handles_.at(static_cast<std::size_t>(index));
    h.released = true;
    events_.push_back(Event{Event::Kind::Release, index, 0});
    if (verbose_)
      fmt::print(stderr, "[record]   => release H{}{}\n", index + 1, h.refused ? " (refused open)" : "");
    if (h.opcode != p::OPENDIR) {
      if (File *f = file_by_nodeid(h.nodeid)) {
        --f->open_count;
        if (policy_ == RecordPolicy::Hp && f->open_count == 0 && f->backing >= 0)
          close_backing(*f);
      }
    }
    changed_.notify_all();
    return {};
  }

  Answer on_readdir(std::uint64_t nodeid, const char *in, std::size_t insize) {
    p::fuse_read_in read_in{};
    if (!read_struct(in, insize, read_in))
      return {EINVAL, {}, true};
    if (nodeid != p::kRootId)
      return {ENOTDIR, {}, true};
    std::vector<std::pair<std::uint64_t, std::string>> entries{{p::kRootId, "."}, {p::kRootId, ".."}};
    for (const auto &[name, id] : by_name_)
      entries.emplace_back(id, name);
    std::string out;
    for (std::size_t i = read_in.offset; i < entries.size(); ++i) {
      const auto &[ino, name] = entries[i];
      p::fuse_dirent dirent{ino, i + 1, static_cast<std::uint32_t>(name.size()),
                            ino == p::kRootId ? DT_DIR : DT_REG};
      const std::size_t entry_size = (sizeof(dirent) + name.size() + 7) & ~std::size_t{7};
      if (out.size() + entry_size > read_in.size)
        break;
      std::string entry = bytes_of(dirent) + name;
      entry.resize(entry_size, '\0');
      out += entry;
    }
    return {0, out, true};
  }

  Answer on_statfs() {
    p::fuse_statfs_out out{};
    out.st.blocks = 1 << 20;
    out.st.bfree = 1 << 19;
    out.st.bavail = 1 << 19;
    out.st.files = 1 << 16;
    out.st.ffree = (1 << 16) - files_.size();
    out.st.bsize = 4096;
    out.st.namelen = 255;
    out.st.frsize = 4096;
    return {0, bytes_of(out), true};
  }

  const RecordPolicy policy_;
  const std::string workdir_;
  const std::string ctl_dir_;
  const bool verbose_;
  const time_t root_time_ = time(nullptr);

  int devfd_ = -1;
  std::string mnt_;
  bool mounted_ = false;
  dev_t dev_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> thread_done_{false};

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::uint64_t, File> files_;           // by nodeid
  std::map<std::string, std::uint64_t> by_name_;  // name -> nodeid
  std::uint64_t next_nodeid_ = 2;
  std::uint64_t next_fh_ = 1000;
  std::vector<Backing> backings_;
  std::vector<Handle> handles_;
  std::map<std::uint64_t, int> by_fh_;            // fh -> handle, until released
  std::map<std::uint32_t, int> just_opened_;      // thread -> the handle its last request opened
  std::vector<Event> events_;
  std::map<std::uint32_t, std::uint64_t> counts_; // by opcode
  std::set<std::uint32_t> enosys_;
  std::vector<std::string> problems_;
};

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

bool copy_file(const std::string &from, const std::string &to, std::string &err) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    err = errno_text("open " + from, errno);
    return false;
  }
  struct stat st {};
  fstat(in, &st);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
  if (out < 0) {
    err = errno_text("create " + to, errno);
    ::close(in);
    return false;
  }
  std::vector<char> buf(1 << 16);
  bool ok = true;
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n == 0)
      break;
    if (n < 0 || !write_all(out, std::string(buf.data(), static_cast<std::size_t>(n)))) {
      err = errno_text("copy " + from, errno);
      ok = false;
      break;
    }
  }
  ::close(in);
  ::close(out);
  return ok;
}

int record_body(const IsolatedDirs &dirs, const Plan &plan, int result_fd) {
  // Only the parent decides about signals: it cancels the run and kills this child.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  const RecordOptions &opt = plan.options;
  const std::string work = dirs.backing + "/files";
  if (mkdir(work.c_str(), 0755) != 0) {
    fmt::print(stderr, "fpsim-harness record: {}\n", errno_text("mkdir " + work, errno));
    return kBodySetupFailed;
  }
  RecordServer server(opt.policy, work, dirs.ctl, opt.verbose);
  std::string err;
  for (const std::string &name : plan.files) {
    if (!copy_file(opt.source_dir + "/" + name, work + "/" + name, err) || !server.add_file(name, err)) {
      fmt::print(stderr, "fpsim-harness record: {}\n", err);
      return kBodySetupFailed;
    }
  }
  if (server.mount(dirs.mnt, err) != 0) {
    fmt::print(stderr, "fpsim-harness record: {}\n", err);
    return kBodySetupFailed;
  }
  if (opt.policy == RecordPolicy::Passthrough)
    server.register_all();

  const CommandResult cmd = run_command(plan.exec_path, opt.command, dirs.mnt, opt.timeout, opt.run_as);
  const bool all_released = server.wait_all_released(kReleaseGrace);
  if (opt.policy == RecordPolicy::Passthrough)
    server.close_registered();
  server.teardown();

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
  if (const std::vector<std::string> bad = server.inexpressible_names(); !bad.empty()) {
    std::string list;
    for (const std::string &b : bad)
      list += (list.empty() ? "" : ", ") + ("'" + printable(b) + "'");
    fmt::print(stderr, "fpsim-harness record: the command opened or created files whose names a trace cannot "
                       "hold ([A-Za-z][A-Za-z0-9_.-]{{0,63}}, and not dir, pipe, socket, devnull or badfd "
                       "in a backing_open): {}; nothing recorded\n", list);
    return kBodyInexpressible;
  }
  if (cmd.exit_code != 0)
    fmt::print(stderr, "fpsim-harness record: note: the command exited with status {}\n", cmd.exit_code);

  // The trace.
  const std::string command = printable(shell_quote(opt.command));
  std::string title = command;
  std::replace(title.begin(), title.end(), '"', '\'');
  std::vector<std::string> warnings;
  const std::string body = server.statements(&warnings);
  std::string text = "fpsim-trace 1\nkernel 6.18\n";
  text += fmt::format("title \"recorded: {}\"\n", title);
  text += fmt::format("# recorded by fpsim-harness record --policy {} from the command\n#   {}\n",
                      policy_name(opt.policy), command);
  text += fmt::format("# run in a mount of {} regular file(s) copied from {}; exit status {}\n",
                      plan.files.size(), printable(opt.source_dir), cmd.exit_code);
  text += policy_description(opt.policy);
  for (const std::string &s : plan.skipped)
    text += fmt::format("# not served (not a regular file): {}\n", printable(s));
  text += opt.policy == RecordPolicy::Hp || opt.policy == RecordPolicy::Passthrough
              ? "# statements: the server's BACKING_OPEN/BACKING_CLOSE ioctls, and every OPEN, CREATE, OPENDIR and\n"
                "# RELEASE it received, in the order it received them\n"
              : "# statements: every OPEN, CREATE, OPENDIR and RELEASE the server received, in that order\n";
  text += "init passthrough max_stack_depth=1 => ok\n";
  text += body;
  text += opt.policy == RecordPolicy::Hp || opt.policy == RecordPolicy::Passthrough
              ? "# reads and writes are not statements: passthrough I/O goes to the backing files, unseen\n"
              : "# reads and writes are not statements (the server answered them: READ/WRITE below)\n";
  text += server.request_counts();
  for (const std::string &w : warnings)
    fmt::print(stderr, "fpsim-harness record: note: {}\n", w);
  if (!write_all(result_fd, text)) {
    fmt::print(stderr, "fpsim-harness record: {}\n", errno_text("writing the result", errno));
    return kBodyWriteFailed;
  }
  return kBodyOk;
}

// ---- the parent's checks ----------------------------------------------------------------------------------

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

void print_failure(const sim::ReplayFailure &f, const std::string &path) {
  const std::string where = f.line ? fmt::format("{}:{}", path, f.line) : path;
  if (f.kind == sim::ReplayFailure::Kind::Mismatch)
    fmt::print(stderr, "  {}: {}: expected {}, got {}{}\n", where, f.statement,
               f.expected.empty() ? "success" : f.expected, f.actual,
               f.message.empty() ? "" : " (" + f.message + ")");
  else
    fmt::print(stderr, "  {}: {}: {}: {}\n", where, f.statement, sim::failure_kind_name(f.kind), f.message);
}

} // namespace

int record(const RecordOptions &options, const std::function<int()> &preconditions) {
  Plan plan;
  plan.options = options;
  RecordOptions &opt = plan.options;
  if (opt.command.empty()) {
    fmt::print(stderr, "fpsim-harness record: no command given (record ... -- CMD [ARGS...])\n");
    return kExitUsage;
  }
  // The source directory: a flat directory of regular files with names a trace can hold.
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
    if (!valid_name(name) || (opt.policy == RecordPolicy::Passthrough && !valid_backing_file(name)))
      bad.push_back(name);
    else
      plan.files.push_back(name);
  }
  closedir(dir);
  std::sort(plan.files.begin(), plan.files.end());
  std::sort(plan.skipped.begin(), plan.skipped.end());
  if (!bad.empty()) {
    std::sort(bad.begin(), bad.end());
    std::string list;
    for (const std::string &b : bad)
      list += (list.empty() ? "" : ", ") + ("'" + printable(b) + "'");
    fmt::print(stderr, "fpsim-harness record: --source {}: file names a trace cannot hold "
                       "([A-Za-z][A-Za-z0-9_.-]{{0,63}}{}): {}\n", printable(opt.source_dir),
               opt.policy == RecordPolicy::Passthrough ? ", and not dir, pipe, socket, devnull or badfd" : "",
               list);
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

  // The output: a temporary file beside it now (so an unwritable OUT fails before anything runs),
  // renamed into place only once the recording is complete.
  if (opt.output.empty() || opt.output.back() == '/' ||
      (stat(opt.output.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
    fmt::print(stderr, "fpsim-harness record: -o {}: is a directory\n", printable(opt.output));
    return kExitUsage;
  }
  const std::string out_template = dirname_of(opt.output) + "/." + basename_of(opt.output) + ".XXXXXX";
  {
    // A probe only: the real temporary file is made at the end, so that a harness killed mid-run
    // (even with SIGKILL) leaves nothing beside OUT.
    TempFile probe;
    probe.path = out_template;
    probe.fd = mkostemp(probe.path.data(), O_CLOEXEC);
    if (probe.fd < 0) {
      probe.path.clear();
      fmt::print(stderr, "fpsim-harness record: -o {}: cannot write: {}\n", printable(opt.output),
                 std::strerror(errno));
      return kExitUsage;
    }
  }

  if (const int rc = preconditions(); rc != 0)
    return rc;

  // An unlinked file shared with the child: the trace survives the child however it ends.
  char result_tmpl[] = "/tmp/fpsim-harness-record.XXXXXX";
  const int result_fd = mkostemp(result_tmpl, O_CLOEXEC);
  if (result_fd < 0) {
    fmt::print(stderr, "fpsim-harness record: mkstemp: {}\n", std::strerror(errno));
    return kExitFailed;
  }
  unlink(result_tmpl);
  const IsolatedRun run = run_isolated(
      [&](const IsolatedDirs &dirs) { return record_body(dirs, plan, result_fd); }, opt.timeout + 60s);
  std::string text;
  {
    char buf[65536];
    off_t off = 0;
    for (;;) {
      const ssize_t n = ::pread(result_fd, buf, sizeof buf, off);
      if (n <= 0)
        break;
      text.append(buf, static_cast<std::size_t>(n));
      off += n;
    }
    ::close(result_fd);
  }
  if (isolated_runs_cancelled())
    return kRecordInterrupted;
  if (!run.started) {
    fmt::print(stderr, "fpsim-harness record: the isolated run did not start: {}\n", run.error);
    return kExitFailed;
  }
  if (!run.cleaned_up)
    fmt::print(stderr, "fpsim-harness record: warning: {}\n", run.error);
  if (run.timed_out || run.signal != 0 || run.exit_code != kBodyOk) {
    if (run.exit_code == kBodyExecFailed)
      return kExitUsage; // already explained
    if (run.timed_out || run.signal != 0)
      fmt::print(stderr, "fpsim-harness record: the recording {}{}\n",
                 run.timed_out ? "timed out" : fmt::format("died of signal {}", run.signal),
                 run.error.empty() ? "" : " (" + run.error + ")");
    return kExitFailed;
  }

  // The trace must parse, and the simulator must agree with it.
  sim::ParseResult parsed = sim::parse_trace(text, opt.output);
  if (auto *e = std::get_if<sim::ParseError>(&parsed)) {
    fmt::print(stderr, "fpsim-harness record: internal error: the recorded trace does not parse: {}\n", e->str());
    fmt::print(stderr, "{}", text);
    return kExitFailed;
  }
  const sim::Trace &trace = std::get<sim::Trace>(parsed);
  sim::SimExecutor sim_ex;
  const sim::ReplayResult replayed = sim::replay(trace, sim_ex, trace.profile);

  TempFile out;
  out.path = out_template;
  out.fd = mkostemp(out.path.data(), O_CLOEXEC);
  if (out.fd < 0) {
    out.path.clear();
    fmt::print(stderr, "fpsim-harness record: -o {}: cannot write: {}\n", printable(opt.output),
               std::strerror(errno));
    return kExitUsage;
  }
  const mode_t mask = umask(0);
  umask(mask);
  if (!write_all(out.fd, text) || fsync(out.fd) != 0 || fchmod(out.fd, 0666 & ~mask) != 0 ||
      ::close(out.fd) != 0) {
    out.fd = -1;
    fmt::print(stderr, "fpsim-harness record: -o {}: cannot write: {}\n", printable(opt.output),
               std::strerror(errno));
    return kExitUsage;
  }
  out.fd = -1;
  if (rename(out.path.c_str(), opt.output.c_str()) != 0) {
    fmt::print(stderr, "fpsim-harness record: -o {}: cannot write: {}\n", printable(opt.output),
               std::strerror(errno));
    return kExitUsage;
  }
  out.path.clear();

  std::size_t statements = 0;
  for (const sim::Statement &s : trace.statements)
    statements += s.op != sim::Op::Check;
  fmt::print(stderr, "fpsim-harness record: wrote {} ({} statements, policy {})\n", printable(opt.output),
             statements, policy_name(opt.policy));
  if (replayed.passed()) {
    fmt::print(stderr, "fpsim-harness record: the simulator agrees: PASS {} [6.18] {} steps\n",
               printable(opt.output), replayed.steps);
    return kExitOk;
  }
  fmt::print(stderr, "fpsim-harness record: the simulator DISAGREES with the recorded trace: FAIL {} [6.18]\n",
             printable(opt.output));
  for (const sim::ReplayFailure &f : replayed.failures)
    print_failure(f, opt.output);
  return kExitFailed;
}

} // namespace fpsim::harness
