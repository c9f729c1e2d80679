// Child processes for `fpsim-harness vm`: fork/exec with an explicit argv (never a shell string),
// output into anonymous memory files, a deadline, and a kill that always reaps. Every child gets
// PR_SET_PDEATHSIG(SIGKILL) and its own process group, so it dies with the harness even when the
// harness is SIGKILLed, and a terminal's ^C reaches only the harness, which then decides.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fpsim::harness::proc {

// A memfd (close-on-exec in this process; a child gets it through Spawn::inherit). -1 on failure.
int memory_file(const char *name);

// Everything written to `fd` so far, from `offset` on.
std::string read_from(int fd, off_t offset = 0);

struct Spawn {
  std::vector<std::string> argv; // argv[0] is looked up in PATH
  std::string cwd;               // the child's working directory; empty: the harness's
  int stdin_fd = -1;             // -1: /dev/null
  int stdout_fd = -1;            // -1: /dev/null
  int stderr_fd = -1;            // -1: /dev/null
  std::vector<int> inherit;      // further fds the child keeps, at the same numbers
};

// The pid, or nullopt with *why (one line).
std::optional<pid_t> spawn(const Spawn &s, std::string *why);

struct Exit {
  bool exited = false; // normally, with `code`
  int code = -1;
  int signal = 0;      // the signal that ended it (ours, when killed)
  bool timed_out = false;
  bool cancelled = false; // `stop` asked for it (a signal to the harness)
  bool killed_by_tick = false;
  std::string describe() const; // "exit 3", "signal 9", "timed out", ...
};

// Waits for `pid` until it ends, `deadline` passes, `stop()` is true, or `tick()` returns true;
// in the last three cases kills the child's process group with SIGKILL. Always reaps. `tick` runs
// about every 50 ms (streaming output, watching for markers).
Exit wait(pid_t pid, std::chrono::steady_clock::time_point deadline, const std::function<bool()> &stop,
          const std::function<bool()> &tick = {});

// Runs argv to the end with stdout and stderr captured together in *output.
Exit run(const std::vector<std::string> &argv, std::string *output, std::chrono::seconds timeout,
         const std::function<bool()> &stop, const std::string &cwd = "");

// The full path of `name` found in PATH (or `name` itself when it has a '/' and is executable).
std::optional<std::string> find_program(const std::string &name);

// The last non-empty line of `text` (for one-line errors from tools).
std::string last_line(const std::string &text);

} // namespace fpsim::harness::proc
