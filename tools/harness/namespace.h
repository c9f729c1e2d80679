// Isolation for real-kernel runs: each run lives in a forked child inside a private mount namespace, so
// a FUSE mount can never outlive the run in the host namespace; and every blocking kernel call the caller
// makes can be given a deadline, because a wrong server reply can leave a syscall stuck in the kernel.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace fpsim::harness {

// ---- running a syscall with a deadline ----------------------------------------------------------

// The outcome of one syscall: its return value and, when it failed, errno.
struct SysResult {
  long ret = 0;
  int err = 0; // 0 on success

  bool ok() const { return err == 0; }
};

// Captures errno right after a syscall that signals failure with -1.
inline SysResult sys_result(long ret) { return ret == -1 ? SysResult{ret, errno} : SysResult{ret, 0}; }

// A callable running on its own worker thread. The caller waits with a deadline; a call that misses it
// stays in flight (it is typically blocked inside the kernel on a FUSE request) and can be waited for
// again later, e.g. after the server answered or the connection was aborted.
template <class T>
class PendingCall {
public:
  template <class F>
  static PendingCall start(F &&fn) {
    PendingCall call;
    call.state_ = std::make_shared<State>();
    // The worker owns a reference to the state, so a call abandoned by its PendingCall can still finish.
    call.worker_ = std::thread([state = call.state_, fn = std::forward<F>(fn)]() mutable {
      std::optional<T> value;
      std::exception_ptr error;
      try {
        value.emplace(fn());
      } catch (...) {
        error = std::current_exception(); // handed to the waiting thread instead of escaping this one
      }
      std::lock_guard lock(state->mutex);
      state->value = std::move(value);
      state->error = error;
      state->done = true;
      state->cv.notify_all();
    });
    return call;
  }

  PendingCall() = default;
  PendingCall(PendingCall &&) noexcept = default;
  PendingCall &operator=(PendingCall &&other) noexcept {
    release_worker();
    state_ = std::move(other.state_);
    worker_ = std::move(other.worker_);
    return *this;
  }
  PendingCall(const PendingCall &) = delete;
  PendingCall &operator=(const PendingCall &) = delete;
  ~PendingCall() { release_worker(); }

  bool valid() const { return state_ != nullptr; }

  // The callable's result if it finished within `timeout`, nullopt if it is still running.
  // Rethrows what the callable threw. May be called again after a timeout.
  std::optional<T> wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(state_->mutex);
    if (!state_->cv.wait_for(lock, timeout, [&] { return state_->done; }))
      return std::nullopt;
    if (state_->error)
      std::rethrow_exception(state_->error);
    return state_->value;
  }

  bool finished() const {
    std::lock_guard lock(state_->mutex);
    return state_->done;
  }

private:
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::optional<T> value;
    std::exception_ptr error;
  };

  // A finished worker is joined. One still stuck in the kernel is detached: joining would hang the
  // caller, and the process exiting (or a fusectl abort) is what eventually ends that syscall.
  void release_worker() {
    if (!worker_.joinable())
      return;
    if (finished())
      worker_.join();
    else
      worker_.detach();
  }

  std::shared_ptr<State> state_;
  std::thread worker_;
};

// ---- fusectl: the emergency exit for stuck FUSE calls -------------------------------------------

// Returns the directory of a mounted fusectl filesystem: /sys/fs/fuse/connections if fusectl is
// mounted there, otherwise `fallback_dir` after mounting fusectl on it (meant for a private namespace,
// where that mount disappears with the namespace). Empty string and `err` set on failure.
std::string ensure_fusectl(const std::string &fallback_dir, std::string &err);

// Aborts the FUSE connection whose superblock has device number `dev` (st_dev of the mount root, taken
// while it is still mounted) by writing "1" to <fusectl>/<minor(dev)>/abort. Every request in flight
// then fails (ECONNABORTED) and new ones get ENOTCONN. Returns 0 or -errno; `err` says what failed.
int abort_fuse_connection(dev_t dev, const std::string &fusectl_fallback_dir, std::string &err);

// ---- a stacked filesystem ------------------------------------------------------------------------

// Mounts an overlayfs at `at` (made here) with `upper` as its upper layer, so that every file of
// `upper` shows through it unchanged and opening one for writing copies nothing up; the empty lower
// layer and the work directory are made beside `upper`, on its filesystem, as overlayfs requires.
// Its superblock has s_stack_depth 1 when `upper` is on a plain filesystem. Meant for a private
// namespace (an isolated run's tmpfs). 0, or an errno with `err` saying what failed.
int mount_overlay(const std::string &upper, const std::string &at, std::string &err);

// ---- private mount namespace per run ------------------------------------------------------------

// A process that serves its own FUSE mount cannot finish dying while one of its files on that mount
// is open: exit closes the file, FLUSH waits for a server thread that is already gone, and the process
// hangs in the kernel forever (observed on 6.18). So inside run_isolated every served connection is
// registered, and a run that overruns its deadline gets its connections aborted before and after the
// SIGKILL. FuseServer registers on mount and unregisters once its /dev/fuse fd is closed (which ends the
// connection). Both are no-ops outside run_isolated.
void register_fuse_connection(dev_t dev);
void unregister_fuse_connection(dev_t dev);

// Fresh directories of one isolated run. All are 0700 and empty in the host namespace. Inside the
// child, `backing` is a private tmpfs (so backing files vanish with the namespace), `mnt` is where the
// FUSE filesystem is meant to be mounted, `ctl` is a spare mount point for fusectl.
struct IsolatedDirs {
  std::string root; // parent of the three below
  std::string mnt;
  std::string backing;
  std::string ctl;
};

struct IsolatedRun {
  std::string root;       // IsolatedDirs::root of the run (already removed when cleaned_up)
  bool started = false;   // false: the run could not be set up, see `error`
  bool timed_out = false; // the child was SIGKILLed after the deadline
  bool exited = false;    // the child and its janitor were reaped (false: stuck in the kernel, see `error`)
  bool dying_stuck = false; // the child began to exit, but a thread of it stayed stuck in the kernel
  int exit_code = -1;     // the body's return value when it exited normally
  int signal = 0;         // the signal that ended the child, if any
  int emergency_aborts = 0; // connections aborted because the run overran its deadline
  bool cleaned_up = false; // every temporary directory was removed in the host namespace
  bool cancelled = false;  // cancel_isolated_runs() was called while the child ran: it was killed
  std::string error;
};

// Runs `body` in a forked child that first enters a private mount namespace (unshare(CLONE_NEWNS) and
// a recursive MS_PRIVATE remount of /) and mounts a tmpfs on dirs.backing. The child exits with the
// body's return value (70 if it threw). Past `timeout` the parent aborts the child's registered FUSE
// connections (from a helper process with its own private fusectl mount), gives the child a moment to
// finish, then SIGKILLs it. A child that starts to exit (killed, or crashed) while one of its threads
// waits in a FUSE request its own, now dead, server thread would have answered cannot finish on its
// own: its connections are aborted as soon as that is seen, not at the timeout. A janitor process
// shares the child's fd table and closes it once the child is dying, for the waits no abort ends (a
// cached open waiting for a passthrough file of the child's own table to close). Finally it reaps
// the janitor and removes the temporary directories. Call it while the caller has no other threads:
// only the forking thread survives in the child.
// Async-signal-safe: makes the run_isolated in progress (and every later one) stop waiting for its
// child, abort the child's FUSE connections and SIGKILL it at once. Meant for SIGINT/SIGTERM handlers.
void cancel_isolated_runs() noexcept;
bool isolated_runs_cancelled() noexcept;

// `on_overrun`, when given, is called in the parent the moment the run overruns, is cancelled or is
// seen dying, before anything is aborted or killed (the child may still run on for a moment after an
// abort): the place to note where the child was.
IsolatedRun run_isolated(const std::function<int(const IsolatedDirs &)> &body,
                         std::chrono::milliseconds timeout, const std::function<void()> &on_overrun = {});

// What an isolated child hands back goes through an unlinked temporary file opened before the
// fork: its content survives the child however it ends. -1, errno set, when it cannot be made.
int child_result_file();
// Everything written to the file; closes it.
std::string read_child_result(int fd);
// Writes all of `text`: false, errno set, when it cannot.
bool write_all(int fd, std::string_view text);

} // namespace fpsim::harness
