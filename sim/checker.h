// The invariant checker (kernel-semantics.md §3.2): reads model state after every step and never
// changes it. Validation lives here, not in the model.
#pragma once

#include "model/fuse.h"
#include "sim/executor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace fpsim::sim {

// How reports name model objects: trace names where the simulator knows them.
struct ObjectNames {
  std::vector<std::string> inodes; // by InodeId
  std::vector<std::string> files;  // by FileId
  std::vector<std::string> fbs;    // by FbId
  std::vector<std::string> vmas;   // by VmaId
  std::vector<std::string> writes; // by WriteId

  std::string inode(model::InodeId i) const;
  std::string file(model::FileId f) const;
  std::string fb(const model::Model &m, model::FbId b) const;
  std::string vma(model::VmaId v) const;
  std::string write(model::WriteId w) const;
};

// References: fbs, io-mode counters, backing_files and creds (`check drained` mid-trace).
// Everything: also files, sleeping calls and the connection itself (after teardown).
enum class DrainScope : std::uint8_t { References, Everything };

class InvariantChecker {
public:
  // Every invariant of §3.2 that holds between steps, plus each WARN the model raised since the
  // last call.
  std::vector<Violation> check(const model::Model &m, const ObjectNames &n);
  // Invariant 12: a refused open sent exactly one synchronous RELEASE (none when the server
  // does not implement OPEN: the release ends locally), any other open none.
  static std::vector<Violation> check_open_release(const model::Model &m,
                                                   const model::SysResult &r,
                                                   std::uint64_t sync_releases_delta);
  // Invariant 11 after teardown: names every object that did not drain and who holds it.
  static std::vector<Violation> check_drained(const model::Model &m, const ObjectNames &n,
                                              DrainScope scope);

private:
  // Writes and sleeping calls that had not finished at the last check, in table order. The
  // model never erases a finished one, and a trace can finish one per statement: scanning them
  // all after every step made a replay quadratic in its statements. A write is dropped once it
  // has finished holding nothing, which is checked then.
  void refresh_live(const model::Model &m);
  std::vector<std::uint32_t> live_writes_;
  std::vector<std::uint32_t> live_tasks_;
  std::size_t writes_seen_ = 0;
  std::size_t tasks_seen_ = 0;
  std::size_t warnings_seen_ = 0;
  std::int32_t max_id_allocated_ = 0;
  std::vector<bool> fb_seen_in_idr_;
};

} // namespace fpsim::sim
