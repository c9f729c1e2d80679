// The real-kernel executor: every trace statement runs against the running kernel through a raw
// /dev/fuse server (FuseServer) mounted in the current process. The caller must already be inside an
// isolated child (run_isolated): the executor mounts, aborts and unmounts for real.
//
// Conventions (see README "Trace format"):
// - every mount file of the trace exists on the server (unless a `create` makes it), its content is
//   "FUSE:<name>\n" padded to 64 KiB; every backing file is "BACKING:<name>\n" padded to 64 KiB in a
//   fresh 0700 directory, so a 1-byte in-place write at offset 0 is never past EOF; an `on=overlay`
//   source is opened through an overlayfs whose upper layer is that directory, so what passthrough
//   writes through it lands in the same files;
// - `read` is a 1-byte pread at offset 0: 'B' is `backing`, 'F' is `fuse` (the server keeps its files'
//   size on O_TRUNC, so a read never hits EOF);
// - `write` is a 1-byte pwrite of 'F' at offset 0: if a backing file's first byte became 'F' the write
//   went to the backing file (`backing`, and the byte is put back), otherwise through FUSE (`fuse`);
//   the server's READ/WRITE counters must agree, or the step reports a "route" violation;
// - a call that does not return within the deadline is `blocks` and stays pending for `await`.
#pragma once

#include "fault.h"
#include "fuse_server.h"
#include "namespace.h"
#include "sim/exec/executor.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fpsim::harness {

struct KernelExecutorOptions {
  // How long a call is given before it counts as blocked.
  std::chrono::milliseconds deadline{300};
  // A call still running after `deadline` counts as blocked only once every other thread of the
  // process is asleep (a slow machine must not turn a slow call into `blocks`); past deadline +
  // settle_limit it counts as blocked regardless.
  std::chrono::milliseconds settle_limit{10000};
  // How long calls that must return (close, munmap, a write after its server reply) are given.
  std::chrono::milliseconds long_deadline{3000};
  // An injected fault (fault.h). Once it fired, every step reports what it did as a "fault"
  // violation, and the first step that blocks while a request it withheld may still be pending gets
  // the connection aborted through fusectl (nothing else would ever answer that request).
  std::optional<Fault> fault;
  // Called when the fault fires, on whatever thread fired it (a kill-child fault: right before the
  // SIGKILL), with what happened. The executor has already said so on stderr.
  std::function<void(const std::string &)> on_fault;
};

// Whether a trace opens a backing source through an overlayfs (`on=overlay`): its run mounts one.
bool needs_overlayfs(const sim::Trace &t);

class KernelExecutor final : public sim::Executor {
public:
  explicit KernelExecutor(IsolatedDirs dirs, KernelExecutorOptions options = {});
  ~KernelExecutor() override;
  KernelExecutor(const KernelExecutor &) = delete;
  KernelExecutor &operator=(const KernelExecutor &) = delete;

  void begin(const sim::Trace &t, sim::KernelProfile p) override;
  sim::Outcome step(const sim::Statement &s, const sim::Bindings &bindings) override;
  sim::CheckResult check(const sim::Statement &s, const sim::Bindings &bindings) override;
  std::vector<sim::Violation> after_step() override;
  std::vector<sim::Violation> drain() override;
  void end() override;

  // How many times the injected fault fired in this trace (0 or 1).
  std::size_t faults_fired() const { return faults_fired_; }

  // What one syscall on a worker thread produced.
  struct CallResult {
    long ret = 0;
    int err = 0;
    std::string data;          // read: the bytes read
    bool release = false;      // open: the server saw a RELEASE of this open's fh before it returned
    bool to_backing = false;   // write: a backing file's first byte changed
    std::uint64_t srv_before = 0; // read/write: the server's READ/WRITE count before the call
    std::uint64_t srv_after = 0;  // ... and right after it returned
  };

private:
  struct Call; // a syscall running on a worker thread
  struct Pending {
    sim::Op op = sim::Op::Open;
    int handle = -1;
    std::string file; // mount file name (write_begin: the file the write is held for)
    std::shared_ptr<Call> call;
    std::uint64_t hold_token = 0; // write_begin: the hold its WRITE is parked under
  };
  struct Held {
    std::shared_ptr<Call> call;
    std::string file;
    std::uint64_t unique = 0; // the parked WRITE
  };

  std::shared_ptr<Call> start(std::function<CallResult()> fn);
  sim::Outcome run_step(const sim::Statement &s, const sim::Bindings &bindings);
  // Fault injection around each step: kill-server-at-step before it, reports and the abort after it.
  void fault_before_step();
  void fault_after_step(const sim::Outcome &o);
  std::function<void(const std::string &)> fault_hook() const;
  sim::Outcome init(const sim::Statement &s);
  sim::Outcome munmap_mapping(const sim::Statement &s);
  sim::Outcome close_handle(const sim::Statement &s);
  sim::Outcome abort_connection();
  sim::Outcome unmount(const sim::Statement &s);
  sim::Outcome dev_close();
  sim::Outcome open_like(const sim::Statement &s, const sim::Bindings &bindings);
  sim::Outcome backing_open(const sim::Statement &s);
  // The directory a backing source on `fs` is opened in.
  const std::string &source_dir(sim::SourceFs fs) const;
  sim::Outcome backing_close(const sim::Statement &s, const sim::Bindings &bindings);
  sim::Outcome read(const sim::Statement &s);
  sim::Outcome write(const sim::Statement &s);
  sim::Outcome mmap(const sim::Statement &s);
  sim::Outcome write_begin(const sim::Statement &s);
  sim::Outcome write_end(const sim::Statement &s);
  sim::Outcome await(const sim::Statement &s);
  // write_begin and its await: waits until the write is parked by the server or returns.
  sim::Outcome settle_write_begin(int w, const std::string &file, std::uint64_t token,
                                  const std::shared_ptr<Call> &call);
  // The call's outcome, or `blocks` with the call kept pending under (kind, slot) for `await`.
  sim::Outcome settle(const sim::Statement &s, std::string file, const std::shared_ptr<Call> &call);
  // Waits for a call that may block: its result, or nullopt once it is blocked (see settle_limit).
  std::optional<CallResult> wait_blocking(const std::shared_ptr<Call> &call);
  // Whether a call started at `start` and still running now counts as blocked.
  bool settled(const std::chrono::steady_clock::time_point &start);
  // The outcome of a finished call, by the statement that started it.
  sim::Outcome finish(sim::Op op, int handle, int slot, const CallResult &r);
  sim::Outcome route_of_read(const CallResult &r);
  sim::Outcome route_of_write(const CallResult &r);
  int unprivileged_ioctl(unsigned long request, void *arg);
  void note(std::string rule, std::string message);
  std::string file_of_handle(int h) const;
  // After a write returns: lets write_begins woken by its inode unlock get their WRITE parked.
  void settle_woken_writes();
  // The offset of the next write: distinct per write of a trace, inside the first page.
  off_t next_write_offset();
  void cleanup();

  IsolatedDirs dirs_;
  KernelExecutorOptions options_;
  const sim::Trace *trace_ = nullptr;
  sim::KernelProfile profile_ = sim::KernelProfile::V6_18;
  std::string backing_dir_;
  // An overlayfs whose upper layer is backing_dir_, for the trace's `on=overlay` sources: the same
  // files, on a superblock of s_stack_depth 1. Empty when the trace has none.
  std::string overlay_dir_;
  std::vector<int> backing_fds_; // per backing file: O_RDWR fd used for route checks and restores
  std::shared_ptr<FuseServer> server_; // shared with the worker threads
  std::shared_ptr<policy::ScriptedPolicy> script_; // the server's policy: each open's statement scripts it
  bool mounted_once_ = false;
  bool writeback_cache_ = false;
  std::vector<int> fds_;             // per handle: the open fd, -1 if none
  std::vector<std::string> handle_file_; // per handle: the mount file it was opened on ("" for the root)
  std::vector<bool> handle_positional_;  // per handle: pwrite works (not nonseekable or stream)
  std::size_t writes_started_ = 0;
  // A mapping lives in a helper process of its own: mmap(2) of a FUSE file can sleep in the kernel
  // with the caller's mmap_lock held for writing (a shared mmap waiting for parallel direct writes),
  // which would freeze every page fault and allocation of this process. The helper shares the fd table
  // (CLONE_FILES) but has its own mm.
  struct Mapper {
    pid_t pid = -1;
    int cmd_w = -1, cmd_r = -1; // parent -> helper: "munmap now"
    int res_w = -1, res_r = -1; // helper -> parent: {ret, errno} of mmap, then of munmap
    bool mapped = false;
  };
  std::shared_ptr<Mapper> spawn_mapper(int fd, bool shared, int *err);
  // munmap through the helper and reap it: 0 or an errno; `deadline` bounds the wait.
  int unmap(Mapper &m, std::chrono::milliseconds deadline);
  // Reaps a helper that has exited (or SIGKILLs it when `kill`) and closes its pipes.
  void reap(Mapper &m, bool kill);
  std::vector<std::shared_ptr<Mapper>> maps_; // per mapping slot: its helper, once mmap started
  std::vector<std::optional<Held>> held_; // per write: parked by the server
  std::uint64_t hold_tokens_ = 0;    // the last token handed to a write_begin's hold
  std::map<sim::NameRef, Pending> pending_; // by the name an await gives
  std::vector<std::shared_ptr<Call>> abandoned_; // calls no statement waits for any more
  std::vector<sim::Violation> violations_;
  std::size_t problems_seen_ = 0;
  std::uint64_t steps_ = 0;
  std::size_t fault_events_seen_ = 0;
  std::size_t faults_fired_ = 0;
  bool fault_aborted_ = false; // the connection was aborted for a call blocked on the fault
};

} // namespace fpsim::harness
