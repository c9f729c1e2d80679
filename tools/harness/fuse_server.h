// The harness's one FUSE server session: a raw /dev/fuse server (no libfuse) serving a flat
// directory of regular files, made of parts the caller picks:
// - the files (file_store.h): the trace's files for the cross-check, a copied directory's for record;
// - the policy (server_policy.h): the replies to OPEN/CREATE/OPENDIR and the backing ids to register
//   and close, scripted per statement for the cross-check, hp/passthrough/cached/direct_io for
//   record. The policy decides; the session performs the ioctls and sends the replies;
// - an observer (SessionObserver), told of every request and of what the session did: the recorder
//   writes its trace from it;
// and the fault injection of fault.h.
//
// Threading: one server thread reads /dev/fuse and answers requests. Every public method may be called
// from any other thread; the kernel calls that exercise the mount (open, read, write...) belong on the
// caller's threads, with a deadline (see PendingCall in namespace.h).
#pragma once

#include "fault.h"
#include "file_store.h"
#include "fuse_proto.h"
#include "sim/search/server_policy.h"

#include "model/fuse.h"

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

// What the kernel offered in its INIT request.
struct KernelInit {
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
  std::uint32_t flags = 0;
  std::uint32_t flags2 = 0;
};

// One OPEN/CREATE/OPENDIR as the server received and answered it.
struct OpenEvent {
  policy::OpenRequest request;
  model::OpenReply reply;
  std::optional<std::uint64_t> fh; // set when the reply handed out a handle
  std::uint32_t pid = 0;           // fuse_in_header.pid: the id of the calling thread
};

// A WRITE the server is holding back (see hold_next_write_of_this_thread).
struct HeldWrite {
  std::uint64_t unique = 0; // identifies it for finish_held_write
  std::uint64_t token = 0;  // the hold it consumed
  std::string name;
  std::uint64_t offset = 0;
  std::size_t size = 0;
};

// Called with the server's lock held, on the server thread (and on the caller's for the ids a
// policy registers at the mount or closes at the end of a run): it must not call the server back.
// Each method does nothing unless overridden.
class SessionObserver {
public:
  virtual ~SessionObserver() = default;
  // Every request, before it is handled; `in` is what follows the header.
  virtual void request(const proto::fuse_in_header &, const char *, std::size_t) {}
  // A BACKING_OPEN the policy asked for: the id, or -errno.
  virtual void backing_opened(const std::string &, int) {}
  // A BACKING_CLOSE the policy asked for: 0 or -errno.
  virtual void backing_closed(const std::string &, std::int32_t, int) {}
  virtual void opened(const OpenEvent &) {}
  // A RELEASE or RELEASEDIR of the handle the event handed out.
  virtual void released(const OpenEvent &) {}
};

struct ServerParts {
  std::unique_ptr<FileStore> files;
  std::shared_ptr<policy::ServerPolicy> policy;
  SessionObserver *observer = nullptr; // null: nobody watches
  // entry_valid of LOOKUP replies, in seconds. The cross-check's day keeps every dentry for the
  // whole trace (no LOOKUP per open, so a path walk after an abort succeeds for every name looked
  // up before it, as the model says, never depending on how long the trace took).
  std::uint64_t entry_timeout = 86400;
};

class FuseServer {
public:
  // Opens /dev/fuse. `fusectl_fallback_dir` is where abort() may mount fusectl if it is not mounted
  // (see ensure_fusectl). Returns nullptr and sets `err` on failure.
  static std::unique_ptr<FuseServer> open(ServerParts parts, std::string fusectl_fallback_dir,
                                          std::string &err);

  // shutdown(), then closes the files.
  ~FuseServer();
  FuseServer(const FuseServer &) = delete;
  FuseServer &operator=(const FuseServer &) = delete;

  std::optional<std::string> file_content(const std::string &name) const;

  // ---- mount and INIT -----------------------------------------------------------------------------
  // Arms FUSE_DEV_IOC_SYNC_INIT, starts the server thread and mounts on `mnt`; mount(2) returns only
  // once the thread has answered INIT with `init`. Then registers what the policy registers at the
  // mount. Returns 0 or -errno, `err` explains.
  int mount(const std::string &mnt, const model::InitReply &init, std::string &err);
  std::optional<KernelInit> kernel_init() const;
  // Whether the last mount armed FUSE_DEV_IOC_SYNC_INIT (the kernel has it: 6.18+).
  bool sync_init() const { return sync_init_; }
  // -1 once crash()ed: the ioctls a trace sends through it must fail as on a closed fd.
  int dev_fd() const { return crashed_ ? -1 : devfd_; }

  // ---- /dev/fuse ioctls (valid before mount too) --------------------------------------------------
  // FUSE_DEV_IOC_BACKING_OPEN: the backing id, or -errno.
  int backing_open(int fd, std::uint32_t flags = 0, std::uint64_t padding = 0);
  // FUSE_DEV_IOC_BACKING_CLOSE: 0 or -errno.
  int backing_close(std::uint32_t id);

  // ---- the end of a run ---------------------------------------------------------------------------
  // Waits until every handle the server gave out was released; false after `timeout`.
  bool wait_all_released(std::chrono::milliseconds timeout);
  // Closes the backing ids the policy closes at the end of a run.
  void end_run();

  // ---- observation --------------------------------------------------------------------------------
  std::vector<OpenEvent> open_events() const;
  // Whether a RELEASE or RELEASEDIR for `fh` arrived. The synchronous RELEASE the kernel sends after a
  // refused open is recorded before it is answered, so it is visible when open(2) returns.
  bool released(std::uint64_t fh) const;
  // Requests received with this opcode so far (INIT included).
  std::uint64_t count(std::uint32_t opcode) const;
  // The opcodes answered ENOSYS because the server does not implement them.
  std::set<std::uint32_t> unimplemented() const;
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
  // Tears down in the order of docs/real-kernel-notes.md EXP10: unmount (lazily if busy), let the
  // server thread see ENODEV, abort through fusectl if it does not, then close the device.
  // Idempotent; problems() still answers after it.
  void shutdown();

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
  // What the armed request fault did once it hit (empty until then). Waits up to `settle` for a
  // fault being fired to be recorded: a garbage reply wakes the caller before the server thread
  // learns what the kernel made of it, and the report belongs to the caller's statement.
  std::vector<std::string> fault_events(std::chrono::milliseconds settle = std::chrono::milliseconds(0)) const;
  // Whether the fault left a request the kernel still waits on: withheld, or garbled in a way the
  // kernel refuses before it takes the reply for that request (wrong unique, bad error, cut header).
  bool fault_left_request_pending() const { return fault_request_pending_; }

private:
  struct Parked {
    HeldWrite info;
    std::string data;
  };

  FuseServer(int devfd, ServerParts parts, std::string fusectl_fallback_dir);

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
  Answer dispatch(const proto::fuse_in_header &hdr, const char *in, std::size_t insize);
  Answer on_init(const char *in, std::size_t insize);
  Answer on_lookup(std::uint64_t parent, const char *in, std::size_t insize);
  Answer on_getattr(std::uint64_t nodeid);
  Answer on_setattr(std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_open(std::uint32_t opcode, std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_create(std::uint64_t parent, const char *in, std::size_t insize);
  Answer on_read(std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_write(std::uint64_t unique, std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_release(const char *in, std::size_t insize);
  Answer on_readdir(std::uint64_t nodeid, const char *in, std::size_t insize);
  Answer on_statfs();

  // mutex_ held, as everything below.
  const std::string *name_of(std::uint64_t nodeid) const;
  std::uint64_t add_name(const std::string &name);
  void drop_name(std::uint64_t nodeid);
  int attr_of(std::uint64_t nodeid, proto::fuse_attr &attr) const;
  std::optional<std::string> entry_of(std::uint64_t nodeid) const;
  // The policy's reply, after the registrations it asks for first.
  model::OpenReply decide(policy::OpenRequest &request);
  Answer finish_open(const policy::OpenRequest &request, model::OpenReply reply, bool with_entry);
  void register_backing(policy::Holder holder);
  void close_backing(policy::Holder holder);
  // The armed fault hit this request: withholds, garbles or ends things as it says.
  void inject(const Fault &fault, std::uint64_t unique, const Answer &answer);
  // Writes a reply the kernel must refuse; says what was sent and what the kernel answered.
  std::string send_garbage(Fault::Garbage how, std::uint64_t unique, const Answer &answer,
                           const std::string &request);
  void fault_fired(const std::string &what);

  int devfd_;
  ServerParts parts_;
  SessionObserver &observer_; // parts_.observer, or one that does nothing
  const std::string fusectl_fallback_dir_;
  const std::uint64_t start_time_; // the root directory's times
  std::string mnt_;
  bool mounted_ = false; // mounted by us and not yet unmounted by us
  bool shut_down_ = false;
  dev_t dev_ = 0; // st_dev of the mounted root, taken right after mount (fusectl's name for it)
  model::InitReply init_;

  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> thread_done_{false};

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_; // signalled on parked writes, releases, recorded faults, thread exit
  std::optional<KernelInit> kernel_init_;
  bool sync_init_ = false;
  bool init_answered_ = false; // the INIT reply's write(2) returned: the kernel has processed it
  std::map<std::uint64_t, std::string> names_; // nodeid -> name; state_.files the other way
  std::uint64_t next_nodeid_ = 2;
  std::uint64_t next_fh_ = 1000; // far from nodeids, so a mixed-up fh and nodeid is easy to spot
  policy::ServerState state_;
  std::vector<policy::Holder> close_after_reply_; // the policy's BACKING_CLOSEs once the reply is written
  std::vector<OpenEvent> opens_;
  std::map<std::uint64_t, std::size_t> unreleased_; // fh -> its open in opens_
  std::set<std::uint64_t> released_;
  std::map<std::uint32_t, std::uint64_t> counts_;
  std::set<std::uint32_t> unimplemented_;
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
