// A raw /dev/fuse server (no libfuse) for driving the real kernel's passthrough state machine:
// a flat directory of regular files whose OPEN/CREATE/OPENDIR replies the caller scripts one by one.
//
// Content convention: files served by this server start with "FUSE:", so a read through the server is
// distinguishable from a passthrough read of a backing file (which the caller fills with "BACKING:").
//
// Threading: one server thread reads /dev/fuse and answers requests. Every public method may be called
// from any other thread; the kernel calls that exercise the mount (open, read, write...) belong on the
// caller's threads, with a deadline (see PendingCall in namespace.h).
#pragma once

#include "fault.h"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fpsim::harness {

// The server's INIT reply (trace statement `init`).
struct InitConfig {
  bool passthrough = false;          // FUSE_PASSTHROUGH in flags2
  std::uint32_t max_stack_depth = 0; // only 1 and 2 enable passthrough
  bool writeback_cache = false;      // FUSE_WRITEBACK_CACHE; excludes passthrough on 6.11+
  bool direct_io_allow_mmap = false; // FUSE_DIRECT_IO_ALLOW_MMAP in flags2
  bool no_init_ext = false;          // leave out FUSE_INIT_EXT, so the kernel ignores flags2
};

// What the kernel offered in its INIT request.
struct KernelInit {
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
  std::uint32_t flags = 0;
  std::uint32_t flags2 = 0;
};

// The server's answer to one OPEN, CREATE or OPENDIR.
struct OpenReply {
  enum class Kind { Open, Error, Enosys };
  Kind kind = Kind::Open;
  int error = 0;                // Kind::Error: a positive errno
  std::uint32_t open_flags = 0; // Kind::Open: FOPEN_* bits
  std::int32_t backing_id = 0;  // Kind::Open: fuse_open_out.backing_id

  static OpenReply open(std::uint32_t open_flags, std::int32_t backing_id = 0) {
    return {Kind::Open, 0, open_flags, backing_id};
  }
  static OpenReply fail(int error) { return {Kind::Error, error, 0, 0}; }
  // The server "does not implement OPEN": the kernel then stops sending OPEN on this connection.
  static OpenReply enosys() { return {Kind::Enosys, 0, 0, 0}; }
};

// One OPEN/CREATE/OPENDIR as the server received and answered it.
struct OpenEvent {
  std::uint32_t opcode = 0;
  std::string name; // the file's name; "" for OPENDIR of the root
  std::uint64_t nodeid = 0;
  std::uint32_t flags = 0; // the client's O_* flags as the kernel forwarded them
  bool scripted = false;   // false: nothing was scripted and the default (cached) reply was sent
  OpenReply reply;
  std::optional<std::uint64_t> fh; // set when the reply handed out a handle
  std::uint32_t pid = 0;            // fuse_in_header.pid: the id of the calling thread
};

// A WRITE the server is holding back (see hold_next_write_of_this_thread).
struct HeldWrite {
  std::uint64_t unique = 0; // identifies it for finish_held_write
  std::uint64_t token = 0;  // the hold it consumed
  std::string name;
  std::uint64_t offset = 0;
  std::size_t size = 0;
};

class FuseServer {
public:
  // Opens /dev/fuse. `fusectl_fallback_dir` is where abort() may mount fusectl if it is not mounted
  // (see ensure_fusectl). Returns nullptr and sets `err` on failure.
  static std::unique_ptr<FuseServer> open(std::string fusectl_fallback_dir, std::string &err);

  // Tears down in the order of docs/real-kernel-notes.md EXP10: unmount (lazily if busy), let the server thread
  // see ENODEV, abort through fusectl if it does not, then close the device.
  ~FuseServer();
  FuseServer(const FuseServer &) = delete;
  FuseServer &operator=(const FuseServer &) = delete;

  // ---- served files -------------------------------------------------------------------------------
  // Adds (or replaces) a regular file in the root directory.
  void add_file(const std::string &name, std::string content);
  std::optional<std::string> file_content(const std::string &name) const;
  // When set, SETATTR(size) (O_TRUNC, ftruncate) is answered but leaves the content as it is, so the
  // files never shrink and an in-place write never goes past EOF.
  void keep_size_on_truncate(bool keep);
  // What a file made by CREATE holds (default "FUSE:<name>\n"): never empty, so reads of it are
  // recognisable as served.
  void created_file_content(std::string content);
  std::optional<std::uint64_t> nodeid_of(const std::string &name) const;

  // ---- mount and INIT -----------------------------------------------------------------------------
  // Arms FUSE_DEV_IOC_SYNC_INIT, starts the server thread and mounts on `mnt`; mount(2) returns only
  // once the thread has answered INIT with `config`. Returns 0 or -errno, `err` explains.
  int mount(const std::string &mnt, const InitConfig &config, std::string &err);
  std::optional<KernelInit> kernel_init() const;
  // st_dev of the mounted root, taken right after mount (needed for fusectl after an unmount).
  dev_t dev() const { return dev_; }
  // -1 once crash()ed: the ioctls a trace sends through it must fail as on a closed fd.
  int dev_fd() const { return crashed_ ? -1 : devfd_; }

  // ---- /dev/fuse ioctls (valid before mount too) --------------------------------------------------
  // FUSE_DEV_IOC_BACKING_OPEN: the backing id, or -errno.
  int backing_open(int fd, std::uint32_t flags = 0, std::uint64_t padding = 0);
  // FUSE_DEV_IOC_BACKING_CLOSE: 0 or -errno.
  int backing_close(std::uint32_t id);

  // ---- scripted open replies ----------------------------------------------------------------------
  // Sets the reply to the next OPEN of `name` / CREATE of `name` / OPENDIR of the root. A reply is
  // used once; an unscripted request gets a cached reply (flags 0) and is flagged in its OpenEvent.
  void script_open(const std::string &name, const OpenReply &reply);
  void script_create(const std::string &name, const OpenReply &reply);
  void script_opendir(const OpenReply &reply);

  // The most recent OPEN or CREATE (OPENDIR excluded), if any.
  std::optional<OpenEvent> last_open() const;
  std::vector<OpenEvent> open_events() const;
  // Whether a RELEASE or RELEASEDIR for `fh` arrived.
  bool released(std::uint64_t fh) const;
  // Whether the handle of the most recent OPEN/CREATE was released. The synchronous RELEASE the kernel
  // sends after a refused open is recorded before it is answered, so it is visible when open(2) returns.
  bool last_open_released() const;
  // Requests received with this opcode so far (INIT included).
  std::uint64_t count(std::uint32_t opcode) const;
  // WRITE requests received from this thread (fuse_in_header.pid) so far.
  std::uint64_t writes_from_thread(std::uint32_t tid) const;

  // ---- held writes --------------------------------------------------------------------------------
  // The next WRITE the calling thread sends is parked under `token` instead of answered; the
  // writer stays blocked in write(2). Requests are told apart by fuse_in_header.pid, the thread id:
  // writes waiting for the inode lock may reach the server in any order, and a WRITE from
  // writeback or a launder is never taken for the held one.
  void hold_next_write_of_this_thread(std::uint64_t token);
  // Waits until the WRITE held under `token` is parked; nullopt if it does not come within `timeout`.
  std::optional<HeldWrite> wait_held_write(std::uint64_t token, std::chrono::milliseconds timeout);
  // Disarms a hold that no WRITE consumed (the write went to the backing file or failed).
  void cancel_hold(std::uint64_t token);
  // Answers a parked WRITE: with `error` (positive errno) if nonzero, else applies the data and reports it
  // written in full. Returns 0, -ENOENT if no such write is parked, or -errno of the reply (the kernel
  // answers ENOENT when it has already given up on the request, e.g. after an abort).
  int finish_held_write(std::uint64_t unique, int error = 0);

  // ---- teardown -----------------------------------------------------------------------------------
  // Aborts the connection through fusectl: requests in flight fail, new ones get ENOTCONN.
  int abort(std::string &err);
  // umount2(mnt, 0 or MNT_DETACH): 0 or -errno.
  int umount(bool detach);
  // Stops the server thread and closes /dev/fuse (like a server exiting): 0 or -errno.
  int dev_close();
  // Whether the server thread has ended (it does on ENODEV/ECONNABORTED), waiting up to `timeout`.
  bool wait_stopped(std::chrono::milliseconds timeout);

  // Anomalies the server thread met (failed reply writes other than ENOENT, malformed requests,
  // unexpected read errors). Empty in a healthy run.
  std::vector<std::string> problems() const;

  // ---- fault injection (fault.h) ------------------------------------------------------------------
  // Arms a fault on the Nth request of an opcode (every kind but KillServerAtStep). `fired` runs on
  // the server thread when it hits, with what the server did, before a kill-child's SIGKILL.
  void inject_fault(const Fault &fault, std::function<void(const std::string &)> fired);
  // What a SIGKILLed server process leaves behind: the server thread is gone and the /dev/fuse file
  // is released, so the kernel ends the requests the server had read (ECONNABORTED) and aborts the
  // connection. Every later device operation fails with EBADF: the server's fd is gone too.
  void crash();
  bool crashed() const { return crashed_; }
  // What the armed request fault did once it hit (empty until then). Waits up to `settle` for a
  // fault being fired to be recorded: a garbage reply wakes the caller before the server thread
  // learns what the kernel made of it, and the report belongs to the caller's statement.
  std::vector<std::string> fault_events(std::chrono::milliseconds settle = std::chrono::milliseconds(0)) const;
  // Whether the fault left a request the kernel still waits on: withheld, or garbled in a way the
  // kernel refuses before it takes the reply for that request (wrong unique, bad error, cut header).
  bool fault_left_request_pending() const { return fault_request_pending_; }

private:
  struct File {
    std::string name;
    std::string content;
  };
  std::optional<std::string> created_content_;
  struct Parked {
    HeldWrite info;
    std::string data;
  };

  explicit FuseServer(int devfd, std::string fusectl_fallback_dir);

  void serve();
  void handle(const char *req, std::size_t len);
  int reply(std::uint64_t unique, int error, const void *payload, std::size_t size);
  void note_problem(std::string what);
  void stop_thread();
  // Drops this process's reference to the /dev/fuse file (see crash()); the server thread must not be
  // inside read(2), whose reference would keep the file alive.
  void release_device();

  // Request handlers, called with mutex_ held; `in` points just past the in-header and has `insize`
  // bytes. They return the reply instead of sending it, so it goes out after the lock is dropped.
  struct Answer {
    int error = 0;
    std::string payload;
    bool send = true; // false: no reply (FORGET, INTERRUPT) or parked (held WRITE)
  };
  Answer on_init(const char *in, std::size_t insize);
  Answer on_lookup(const char *in, std::size_t insize);
  Answer on_getattr(std::uint64_t nodeid);
  Answer on_setattr(std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_open(std::uint32_t opcode, std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_create(const char *in, std::size_t insize);
  Answer on_read(std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_write(std::uint64_t unique, std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_release(const char *in, std::size_t insize);
  Answer on_readdir(const char *in, std::size_t insize);
  Answer on_statfs();

  OpenReply take_reply(std::uint32_t opcode, const std::string &name, bool &scripted);
  Answer finish_open(OpenEvent event, bool with_entry, std::uint64_t nodeid);
  std::string attr_bytes_of(std::uint64_t nodeid) const;
  File *file_by_nodeid(std::uint64_t nodeid);
  // The armed fault hit this request: withholds, garbles or ends things as it says.
  void inject(const Fault &fault, std::uint64_t unique, const Answer &answer);
  // Writes a reply the kernel must refuse; says what was sent and what the kernel answered.
  std::string send_garbage(Fault::Garbage how, std::uint64_t unique, const Answer &answer,
                           const std::string &request);
  void fault_fired(const std::string &what);

  int devfd_;
  const std::string fusectl_fallback_dir_;
  std::string mnt_;
  bool mounted_ = false; // mounted by us and not yet unmounted by us
  dev_t dev_ = 0;
  InitConfig init_config_;
  bool keep_size_ = false;

  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> thread_done_{false};

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_; // signalled on parked writes, recorded faults, thread exit
  std::optional<KernelInit> kernel_init_;
  std::map<std::uint64_t, File> files_; // by nodeid
  std::uint64_t next_nodeid_ = 2;
  std::uint64_t next_fh_ = 1000; // far from nodeids, so a mixed-up fh and nodeid is easy to spot
  std::map<std::pair<std::uint32_t, std::string>, OpenReply> scripted_;
  std::vector<OpenEvent> opens_;
  std::set<std::uint64_t> released_;
  std::map<std::uint32_t, std::uint64_t> counts_;
  std::map<std::uint32_t, std::uint64_t> hold_armed_; // thread id -> token
  std::map<std::uint32_t, std::uint64_t> writes_by_thread_;
  std::map<std::uint64_t, Parked> parked_; // by unique
  std::vector<std::string> problems_;
  std::uint32_t current_pid_ = 0; // of the request being handled

  std::optional<Fault> fault_;
  bool fault_hit_ = false;
  bool fault_firing_ = false; // hit, and not yet recorded in fault_events_
  std::function<void(const std::string &)> fault_fired_hook_;
  std::vector<std::string> fault_events_;
  std::atomic<bool> crash_requested_{false}; // by a kill-server fault, for the server thread
  std::atomic<bool> crashed_{false};
  std::atomic<bool> fault_request_pending_{false};
};

} // namespace fpsim::harness
