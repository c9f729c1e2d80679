// The invariant checker (docs/kernel-semantics.md §3.2): reads model state after every step and never
// changes it. Validation lives here, not in the model.
#pragma once

#include "model/fuse.h"
#include "sim/exec/executor.h"

#include <boost/container/flat_map.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <set>
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

// What a trace calls an inode: its mount file's name, or "(root)".
std::string inode_name(const model::FuseInode &fi, const Names &names);

// References: fbs, io-mode counters, backing_files and creds (`check drained` mid-trace).
// Everything: also files, sleeping calls and the connection itself (after teardown).
enum class DrainScope : std::uint8_t { References, Everything };

// Incremental: look at what the model's tables say the step touched, at what depends on it, and
// at every object that failed at the last check. Full: look at everything. Both report the same
// violations (tests/exec/checker_test.cpp replays the corpus, fuzzed traces and every mutant both
// ways); incremental costs the objects a step touched, full every object ever made.
enum class CheckMode : std::uint8_t { Incremental, Full };

// What the checker remembers of the past: invariant 9's ids and fbs seen, WARNs reported,
// writes retired. Everything else it keeps can be counted again from the model.
struct CheckerHistory {
  std::size_t warnings_seen_ = 0;
  std::int32_t max_id_allocated_ = 0;
  std::vector<bool> fb_seen_in_idr_;
  // A write that has returned is checked once more and then retired: it changes no more.
  std::vector<bool> write_retired_;
  std::vector<std::uint32_t> retire_next_;
};

class InvariantChecker : private CheckerHistory {
public:
  InvariantChecker() = default;
  // A copy keeps the history and drops the tallies, so it counts everything again at its next
  // check: fpsim explore copies a simulator per transition, and copying a tally per object cost
  // more than recounting a small model.
  InvariantChecker(const InvariantChecker &o) : CheckerHistory(o) {}
  InvariantChecker &operator=(const InvariantChecker &o) {
    if (this != &o)
      *this = InvariantChecker(o);
    return *this;
  }
  InvariantChecker(InvariantChecker &&) = default;
  InvariantChecker &operator=(InvariantChecker &&) = default;

  // Every invariant of §3.2 that holds between steps, plus each WARN the model raised since the
  // last call. Incremental checking needs every change since the last check in the model's
  // touched sets: the driver clears them (Model::clear_touched) only after a check, or calls
  // lose_track().
  std::vector<Violation> check(const model::Model &m, const ObjectNames &n,
                               CheckMode mode = CheckMode::Incremental);
  // The model changed unchecked and its touched sets were cleared: the next check is full.
  void lose_track() { synced_ = false; }
  // Invariant 12: a refused open sent exactly one synchronous RELEASE (none when the server
  // does not implement OPEN: the release ends locally), any other open none.
  static std::vector<Violation> check_open_release(const model::Model &m,
                                                   const model::SysResult &r,
                                                   std::uint64_t sync_releases_delta);
  // Invariant 11 after teardown: names every object that did not drain and who holds it.
  static std::vector<Violation> check_drained(const model::Model &m, const ObjectNames &n,
                                              DrainScope scope);

private:
  // What each object last added to the tallies below. A touched object's old contribution is
  // taken out and its new one put in, so the tallies always equal a count over every object.
  struct FileSnap {
    bool known = false;
    bool live = false; // not released: counts toward its inode's io modes
    model::IoMode iomode = model::IoMode::None;
    std::uint32_t inode = 0;
    std::int64_t cred = -1;
    std::int64_t passthrough = -1;
    std::int64_t opened_fb = -1;
  };
  struct WriteSnap {
    bool known = false;
    std::uint32_t inode = 0;
    std::uint32_t file = 0;
    bool counted = false;
    bool locked = false;
    bool exclusive = false;
    bool folio_locked = false;
  };
  struct TaskSnap {
    bool known = false;
    bool asleep = false; // not done: only sleeping calls count
    std::uint32_t inode = 0;
    std::uint32_t file = 0;
    bool cache_waiter = false;
    bool folio_sleeper = false;
    bool file_waiting = false;
  };
  struct VmaSnap {
    bool known = false;
    bool mapped = false;
    model::VmaTarget target = model::VmaTarget::FuseFile;
    std::uint32_t backing_file = 0;
    std::uint32_t inode = 0;
  };
  struct InodeSnap {
    bool known = false;
    std::int64_t attached = -1; // fi->fb of a live inode: holds a reference the fb counts
    std::int64_t fb = -1;       // fi->fb whatever the inode's state: what its files compare with
  };
  struct PerInode {
    int cached = 0;
    int uncached = 0;
    int counted_writes = 0;
    int readers = 0;
    int writers = 0;
    int cache_waiters = 0;
    int folio_sleepers = 0;
  };
  // What few inodes have, kept apart so a PerInode stays a few counters.
  struct InodeLists {
    std::vector<std::uint32_t> folio_lockers;                // writes
    std::vector<std::uint32_t> fuse_vmas;                    // mapped through a FUSE file
    std::vector<std::pair<std::int64_t, int>> uncached_by_fb; // opened_with_fb -> live files
  };
  // Objects to check, by table index; sorted and deduplicated before checking.
  struct Targets {
    std::vector<std::uint32_t> inodes, files, fbs, backing_files, writes, creds;
    void clear();
  };

  void resync(const model::Model &m);
  void size_for(const model::Model &m);
  void retire_writes();
  void update_file(const model::Model &m, std::uint32_t f);
  void update_write(const model::Model &m, std::uint32_t w);
  void update_task(const model::Model &m, std::uint32_t t);
  void update_vma(const model::Model &m, std::uint32_t v);
  void update_inode(const model::Model &m, std::uint32_t i);
  void apply_file(const FileSnap &s, int d);
  void apply_write(std::uint32_t w, const WriteSnap &s, int d);
  void apply_task(const TaskSnap &s, int d);
  void apply_vma(std::uint32_t v, const VmaSnap &s, int d);
  void idr_apply(const model::BackingIdMap::Entry &e, int d);
  void follow_fb_changes(const model::Model &m);
  PerInode &tally(std::uint32_t inode);
  InodeLists &lists(std::uint32_t inode) { return inode_lists_[inode]; }
  const InodeLists &lists_of(std::uint32_t inode) const;

  bool check_inode(const model::Model &m, const ObjectNames &n, std::uint32_t ii,
                   std::vector<Violation> &out);
  bool check_file(const model::Model &m, const ObjectNames &n, std::uint32_t fi,
                  std::vector<Violation> &out);
  bool check_fb(const model::Model &m, const ObjectNames &n, std::uint32_t bi,
                std::vector<Violation> &out);
  bool check_backing_file(const model::Model &m, const ObjectNames &n, std::uint32_t bf,
                          std::vector<Violation> &out);
  bool check_write(const model::Model &m, const ObjectNames &n, std::uint32_t wi,
                   std::vector<Violation> &out);
  void check_idr(const model::Model &m, std::vector<Violation> &out);

  bool synced_ = false;
  std::array<std::size_t, 8> sized_for_{}; // table sizes at the last size_for

  std::vector<FileSnap> file_snap_;
  std::vector<WriteSnap> write_snap_;
  std::vector<TaskSnap> task_snap_;
  std::vector<VmaSnap> vma_snap_;
  std::vector<InodeSnap> inode_snap_;

  std::vector<PerInode> inode_tally_;
  boost::container::flat_map<std::uint32_t, InodeLists> inode_lists_;
  std::vector<int> file_waiting_;       // sleeping cached opens of each file
  std::vector<int> file_active_writes_; // writes of each file not yet retired
  std::vector<std::uint32_t> active_writes_;
  std::vector<int> fb_in_idr_;
  std::vector<int> fb_attached_;
  std::vector<int> cred_file_holders_;
  std::vector<std::int64_t> fb_of_cred_;
  std::vector<int> backing_file_holders_;
  // The id map as the checker follows it: entries per id, the ids invariant 9 refuses
  // (outside [1, INT_MAX] or mapped twice), the entries added since the last check.
  std::map<std::int32_t, int> idr_count_; // a tree: ids leave in any order
  std::set<std::int32_t> idr_bad_;
  std::vector<model::BackingIdMap::Entry> idr_new_;
  std::uint64_t idr_seq_ = 0;

  std::vector<std::uint32_t> fb_changed_; // inodes whose fi->fb changed in this check
  Targets dirty_;
  Targets failing_; // objects with a violation at the last check: checked again
};

} // namespace fpsim::sim
