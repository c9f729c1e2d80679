// fpsim-harness record: runs an ordinary command on a FUSE passthrough mount served by a small raw
// /dev/fuse server and writes what the server saw as a trace (format v1) that `fpsim replay` and
// `fpsim-harness crosscheck` accept.
//
//   fpsim-harness record --source DIR [--policy hp|cached|direct_io|passthrough] -o OUT.trace
//                        [--timeout S] [--verbose] -- CMD [ARGS...]
//
// The mount serves DIR's regular files (a flat directory; every name must match the trace grammar
// [A-Za-z][A-Za-z0-9_.-]{0,63}, or the recorder refuses with exit 2). Everything happens in a forked
// child inside a private mount namespace: DIR is first copied into a private tmpfs, so the command
// (and passthrough writes, which land in the backing files) never modify DIR. The copies are the
// server's content and the backing files at once: READ/WRITE/SETATTR of the server act on them too.
//
// The server is the harness's one FUSE session (fuse_server.h) serving the copies (directory_files)
// and answering OPEN/CREATE by a stock policy (server_policy.h). Its observer builds the trace's
// statements, which the printer writes and the simulator replays as built.
//
// The command runs as the only process of a new PID namespace under a tiny init, with the mount as
// its working directory; when it exits (or is killed after --timeout) whatever it left running dies
// with the namespace, so every file it opened is released before the trace is written.
//
// Exit codes: 0 the trace was written and the simulator agrees with it; 1 the trace was written but
// the simulator disagrees (the failures are printed), or the recording failed (the command timed
// out, the mount failed, the command created a file whose name the trace grammar cannot hold);
// 2 usage (bad DIR, a file name outside the grammar, CMD not found, OUT not writable); 77 the machine
// cannot run it. Nothing is written to OUT unless the recording succeeded (temp file + rename).
#pragma once

#include "sim/search/server_policy.h"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace fpsim::harness {

struct RecordOptions {
  std::string source_dir;
  policy::Stock policy = policy::Stock::Hp;
  std::string output;
  std::vector<std::string> command; // CMD ARGS...
  std::chrono::seconds timeout{120}; // for the command
  bool verbose = false;              // log every request the server receives on stderr
  // Who CMD runs as. The harness needs root for the mount, the command does not: main sets this
  // to the user who invoked sudo (SUDO_UID/SUDO_GID) unless --as-root. Unset: this process's user.
  struct RunAs {
    uid_t uid = 0;
    gid_t gid = 0;
  };
  std::optional<RunAs> run_as;
};

// The exit code returned when SIGINT/SIGTERM cancelled the recording (the caller reports it).
inline constexpr int kRecordInterrupted = -1;

// Records. `preconditions` runs after the arguments were checked: it returns 0 when this machine can
// mount FUSE passthrough, else the exit code to return (it prints why).
int record(const RecordOptions &options, const std::function<int()> &preconditions);

} // namespace fpsim::harness
