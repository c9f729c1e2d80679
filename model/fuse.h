// The FUSE passthrough state machine: fuse_conn, fuse_inode, fuse_file, fuse_backing and the
// per-file backing_file, with the transitions of docs/kernel-semantics.md §2 as functions named after
// the kernel functions they model. Pure: no I/O, no clocks; every result is a value.
#pragma once

#include "model/decision.h"
#include "model/profile.h"
#include "model/refcount.h"
#include "model/table.h"

#include <boost/container/flat_map.hpp>
#include <boost/container/small_vector.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fpsim::model {

// Indices into the Model's object tables. Objects are never erased, only marked dead, so a
// stale index is detected as a use after free instead of reading reused memory, and an object
// nobody touches again costs the checker nothing.
enum class InodeId : std::uint32_t {};
enum class FileId : std::uint32_t {};
enum class FbId : std::uint32_t {};
enum class BackingFileId : std::uint32_t {};
enum class CredId : std::uint32_t {};
enum class VmaId : std::uint32_t {};
enum class WriteId : std::uint32_t {};
enum class TaskId : std::uint32_t {};

template <typename Id> constexpr std::uint32_t idx(Id id) { return static_cast<std::uint32_t>(id); }

// A kernel WARN_ON, a refcount_t misuse or a use after free seen inside a transition.
struct Warning {
  std::string where; // the kernel function that would have warned
  std::string what;
};

// ---- the server's answers --------------------------------------------------------------------

struct InitReply {
  bool passthrough = false; // FUSE_PASSTHROUGH in flags2
  int max_stack_depth = 0;
  bool writeback_cache = false;
  bool direct_io_allow_mmap = false;
  bool init_ext = true; // FUSE_INIT_EXT in flags; without it flags2 is ignored
};

struct OpenReply {
  enum class Kind : std::uint8_t { Flags, Error, Enosys };
  Kind kind = Kind::Flags;
  int error = 0;               // Kind::Error: positive errno the server returns
  std::uint32_t open_flags = 0; // Kind::Flags: fuse_open_out.open_flags, already in wire bits
  std::int32_t backing_id = 0;  // fuse_open_out.backing_id
};

// ---- the fd handed to FUSE_DEV_IOC_BACKING_OPEN ----------------------------------------------

enum class BackingFdKind : std::uint8_t { Regular, OPath, Dir, Pipe, Socket, DevNull, BadFd };

struct BackingMapArg {
  BackingFdKind kind = BackingFdKind::Regular;
  std::uint32_t source = 0; // which backing file (Regular/OPath): an index the caller owns
  int source_stack_depth = 0; // s_stack_depth of the filesystem the fd lives on
  std::uint32_t flags = 0;
  std::uint64_t padding = 0;
  bool capable = true; // capable(CAP_SYS_ADMIN) in the initial user namespace
};

// ---- open(2) flags as the VFS hands them to fuse_open -----------------------------------------

enum class AccessMode : std::uint8_t { ReadOnly, WriteOnly, ReadWrite };

struct OpenFlags {
  AccessMode access = AccessMode::ReadOnly;
  bool o_direct = false;
  bool o_trunc = false;
  bool o_creat_excl = false;
};

// ---- kernel objects --------------------------------------------------------------------------

struct Cred {
  RefCount usage;
};

// struct fuse_backing (§1.4).
struct FuseBacking {
  std::int32_t id = 0; // the idr id it was registered under
  BackingFdKind kind = BackingFdKind::Regular;
  std::uint32_t source = 0;
  int source_stack_depth = 0; // s_stack_depth of fb->file's superblock
  CredId cred{};
  RefCount count;
  bool freed = false; // fuse_backing_free ran
};

// The per-file backing_file of fs/backing-file.c (§1.5): one per passthrough open, pinned by
// ff->passthrough and by every VMA of a passthrough mmap.
struct BackingFile {
  FileId user_file{}; // the FUSE file it was opened for
  std::uint32_t source = 0;
  AccessMode access = AccessMode::ReadOnly;
  RefCount f_count;
};

// i_rwsem as the write paths use it.
struct InodeLock {
  int readers = 0;
  bool writer = false;
};

// The FuseInode name of the mount's root directory: beyond every file index a caller owns.
inline constexpr std::uint32_t kRootInodeName = UINT32_MAX;

// struct fuse_inode, regular files (§1.2).
struct FuseInode {
  std::uint32_t name = 0; // which mount file: an index the caller owns, or kRootInodeName
  std::int32_t iocachectr = 0;
  bool cache_io_mode = false; // FUSE_I_CACHE_IO_MODE
  std::optional<FbId> fb;
  InodeLock i_rwsem;
  std::uint64_t fb_attached_at = 0; // step at which fb was last attached (invariant 13)
  bool evicted = false;
  // The page-cache folio at offset 0, the only one a trace's 1-byte reads and writes touch:
  // a write-through WRITE keeps it locked only when it was not uptodate (fuse_fill_write_pages),
  // so whether a read or an invalidating open waits depends on it.
  bool folio_uptodate = false;
  // A LOOKUP answered it: the dentry stays valid (the harness server's entry timeout outlasts
  // any trace), so later path walks need no request, even after an abort.
  bool dentry_cached = false;
};

enum class IoMode : std::uint8_t { None, Cached, Uncached };
// "none", "cached", "uncached": as traces and reports write it.
std::string_view iomode_name(IoMode m);

// struct file + struct fuse_file. f_count counts every pin of the struct file: fds, VMAs of
// non-passthrough mappings, and syscalls in progress (writes in flight).
struct FuseFile {
  InodeId inode{};
  bool is_dir = false;
  std::uint64_t fh = 0;
  OpenFlags f_flags;
  std::uint32_t open_flags = 0; // after the kernel's own edits
  bool has_args = true;         // ff->args != NULL: false when the server does not implement OPEN
  std::int32_t backing_id = 0;  // ff->args->open_outarg.backing_id, read by the passthrough open
  IoMode iomode = IoMode::None;
  std::optional<BackingFileId> passthrough; // ff->passthrough
  std::optional<CredId> cred;               // ff->cred
  RefCount f_count;
  bool released = false; // fuse_release ran
  // Model-only: the fb this file was opened with, for invariant 3/7; the kernel keeps no such
  // pointer (ff->passthrough pins the path, not the fb).
  std::optional<FbId> opened_with_fb;
};

enum class VmaTarget : std::uint8_t { FuseFile, BackingFile };

struct Vma {
  VmaTarget target = VmaTarget::FuseFile;
  FileId file{};                 // the FUSE file mmap was called on
  BackingFileId backing_file{};  // VmaTarget::BackingFile: what vm_file was replaced with
  bool shared = false;
  bool mapped = true;
  std::uint64_t created_at = 0;
};

// A write(2) that the server holds in flight, or that waits for the inode lock.
struct Write {
  FileId file{};
  InodeId inode{};
  bool held = false; // the server parks the request until fuse_write_reply
  bool exclusive = false;
  bool counted = false; // holds an uncached io reference (ctr -= 1) while in flight
  bool locked = false;
  bool in_flight = false;
  bool done = false;
  int result = 0;                // errno the write returned (0: success)
  std::uint64_t queued = 0;      // its place in the inode lock's queue (FIFO, as rwsem waiters)
  bool folio_locked = false;     // a write-through WRITE sent with its folio still locked
  bool folio_in_mapping = false; // its folio is still the inode's (no invalidation since)
};

// backing_files_map: idr id -> fb, in id order as idr_for_each walks it. Every entry added or
// removed is logged with a sequence number, so the checker can follow the map without scanning
// it after every step. A multimap, so that a broken allocator's duplicate id stays visible; a
// tree, so that closing ids in any order costs O(log n) each (a flat map's erase shifted every
// later id: quadratic over a teardown of many ids).
class BackingIdMap {
public:
  using Map = std::multimap<std::int32_t, FbId>;
  using Entry = std::pair<std::int32_t, FbId>;
  struct Change {
    std::uint64_t seq = 0;
    Entry entry;
    bool added = false;
  };
  using const_iterator = Map::const_iterator;

  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }
  std::optional<FbId> find(std::int32_t id) const;
  void add(std::int32_t id, FbId fb);
  void erase(std::int32_t id); // the first entry with this id
  void clear();

  // Changes since the last clear_changes(); seq keeps counting across clears.
  const std::vector<Change> &changes() const { return changes_; }
  std::uint64_t last_seq() const { return seq_; }
  void clear_changes() { changes_.clear(); }

private:
  void log(const Entry &e, bool added) { changes_.push_back(Change{++seq_, e, added}); }
  Map entries_;
  std::vector<Change> changes_;
  std::uint64_t seq_ = 0;
};

// struct fuse_conn (§1.1), with the state of its superblock and its /dev/fuse fd.
struct FuseConn {
  bool initialized = false; // INIT reply processed (the dev fd is installed and mounted)
  bool passthrough = false;
  int max_stack_depth = 0;
  bool writeback_cache = false;
  bool direct_io_allow_mmap = false;
  bool no_open = false;
  bool no_opendir = false;
  bool connected = true;
  bool mounted = false;  // the mount is visible in the namespace
  bool sb_alive = false; // the superblock exists (outlives a lazy detach while files are open)
  bool dev_open = true;  // the server's /dev/fuse fd
  bool freed = false;    // fuse_conn_put dropped the last reference
  BackingIdMap backing_files_map;
  std::int32_t idr_next = 1; // idr_alloc_cyclic's cursor
};

// ---- results ---------------------------------------------------------------------------------

enum class Route : std::uint8_t { None, Backing, Fuse };

// What one user-visible call returned. Errors are positive errno values.
struct SysResult {
  bool blocked = false; // the call sleeps; `task` completes it later
  int err = 0;
  std::int64_t value = 0; // ioctl return value (a backing id)
  Route route = Route::None;
  bool sync_release = false; // a synchronous RELEASE of the new fh reached the server
  bool created = false;      // path_openat: the server made the file (CREATE answered)
  int internal_err = 0;      // the errno the failing io-mode rule produced (EIO hides it)
  std::optional<FileId> file;
  std::optional<VmaId> vma;
  std::optional<WriteId> write;
  std::optional<TaskId> task;
};

// A call that went to sleep: a cached open or shared mmap waiting on direct_io_waitq, or a
// write waiting for i_rwsem.
// OpenInvalidateWait: an open without FOPEN_KEEP_CACHE invalidates the page cache, which waits
// for the page a write-through WRITE in flight keeps locked (observed on 6.18).
enum class TaskKind : std::uint8_t {
  OpenCachedIoWait,
  MmapCachedIoWait,
  WriteLockWait,
  OpenInvalidateWait,
  ReadPageWait, // a page-cache read of the page a held write-through WRITE keeps locked
  MmapInvalidateWait, // mmap of a direct_io file invalidates the page cache: waits likewise
  TruncateLockWait,   // an O_TRUNC open's do_truncate waits for the inode lock a write holds
  DirectReadLockWait, // a direct read of a locked folio's range waits for the inode lock
  FlushLockWait,      // close(2)'s fuse_flush waits for the inode lock (flush_takes_inode_lock)
};

struct Task {
  TaskKind kind = TaskKind::OpenCachedIoWait;
  InodeId inode{};
  FileId file{};
  WriteId write{};
  bool shared = false; // MmapCachedIoWait: the mapping asked for
  std::uint64_t queued = 0; // TruncateLockWait: its place in the inode lock's queue
  bool woken = false;
  bool done = false;
  SysResult result;
};

// Seeded bugs: each breaks one transition the way a real or plausible kernel mistake would, so
// tests, fuzzing and exploration can show that the checker catches it. None is the kernel.
enum class Mutant : std::uint8_t {
  None,
  ParallelWriteSetsIomode,  // 6.9-rc1: the parallel-write path changed ff->iomode
  NullFbConflict,           // the seed's rule on 6.9+: a NULL fb conflicts with an attached one
  MissingPutSameFb,         // no fuse_backing_put when the same fb is already attached
  MissingPutOnRefusal,      // no put of the lookup reference when EBUSY/ETXTBSY refuse the open
  NoFbDetachAtZero,         // fi->fb kept (and its reference) when the counter returns to 0
  BackingCloseKeepsRef,     // BACKING_CLOSE removes the id but does not drop its reference
  BackingFileNotReleased,   // release forgets to fput the per-file backing_file
  IdsReusedImmediately,     // idr_alloc instead of idr_alloc_cyclic: a freed id comes back
  CachedReleaseSkipsDec,    // the last cached release leaves iocachectr raised
  NoEbusyCheck,             // a second fb on an inode is not refused
  IdrKeptOnClose,           // BACKING_CLOSE drops the reference but leaves the id mapped
};

std::string_view mutant_name(Mutant m);
std::optional<Mutant> parse_mutant(std::string_view name);
// Every mutant except None, in declaration order.
std::vector<Mutant> all_mutants();

// A step that records more decisions than this (far more than every sleeping call and write
// finishing at once) drops the rest and counts them, so a driver that never ends its steps
// cannot grow the list without bound.
inline constexpr std::size_t kMaxDecisionsPerStep = 1u << 16;

// One FUSE connection, its superblock and every kernel object hanging off them.
struct Model {
  KernelProfile profile = kDefaultProfile;
  Mutant mutant = Mutant::None;
  FuseConn fc;
  Table<FuseInode> inodes;
  Table<FuseFile> files;
  Table<FuseBacking> backings;
  Table<BackingFile> backing_files;
  Table<Cred> creds;
  Table<Vma> vmas;
  Table<Write> writes;
  Table<Task> tasks;
  std::vector<Warning> warnings;
  std::uint64_t step = 0; // advanced by the driver; timestamps for invariant 13
  std::uint64_t next_fh = 1;
  std::uint64_t lock_queue = 0; // last place handed out in an inode lock's queue
  std::uint64_t releases_sent = 0;      // FUSE_RELEASE requests that reached the server
  std::uint64_t sync_releases_sent = 0; // of those, synchronous ones from refused opens
  // The writes and sleeping calls that had not returned at the last detail::skip_finished, in
  // table order. The tables only grow, by one entry per call, so the loops looking for calls in
  // progress walk these instead of every call of the trace after each step.
  std::vector<std::uint32_t> unfinished_writes;
  std::vector<std::uint32_t> unfinished_tasks;
  // Mount file (the caller's index) -> its inode, for fuse_iget's lookup.
  boost::container::flat_map<std::uint32_t, InodeId> inode_by_name;
  // The decisions of this step, in the order they were made; clear_touched ends the step. Kept
  // inline: most steps make one to three, and explore copies the model for every transition.
  boost::container::small_vector<Decision, 4> decisions;
  std::size_t decisions_dropped = 0;
  // While a woken call completes, the decisions made for it name it.
  std::optional<TaskId> deciding_task;

  explicit Model(KernelProfile p = kDefaultProfile) : profile(p) {}

  FuseInode &inode(InodeId i) { return inodes.mut(idx(i)); }
  FuseFile &file(FileId f) { return files.mut(idx(f)); }
  FuseBacking &backing(FbId b) { return backings.mut(idx(b)); }
  const FuseInode &inode(InodeId i) const { return inodes.at(idx(i)); }
  const FuseFile &file(FileId f) const { return files.at(idx(f)); }
  const FuseBacking &backing(FbId b) const { return backings.at(idx(b)); }
  // The inode of a mount file, if it was ever looked up.
  std::optional<InodeId> find_inode(std::uint32_t name) const;

  void warn(std::string where, std::string what);
  void decide(Decision d) {
    if (!d.task)
      d.task = deciding_task;
    if (decisions.size() < kMaxDecisionsPerStep)
      decisions.push_back(d);
    else
      decisions_dropped++;
  }
  // Forgets which objects were touched: the driver calls it once the checker has looked.
  void clear_touched();
};

// The same inode behind two backing objects: a file registered twice (as a regular or an O_PATH
// fd), a directory, /dev/null, each from a filesystem of the same stack depth. Every pipe and
// socket is its own inode.
bool same_backing_inode(const Model &m, FbId a, FbId b);
// Whether a passthrough file opened with `fb` may live on an inode whose attached fb is
// `attached`: the same object, or (backing_compared_by_inode) an object of the same backing inode.
bool backing_joins_inode(const Model &m, std::optional<FbId> attached, std::optional<FbId> fb);

// ---- transitions -----------------------------------------------------------------------------
// Each models the named kernel function; the comment states the rule it enforces.

// mount(2) after FUSE_DEV_IOC_SYNC_INIT: fuse_fill_super installs the dev fd, then
// process_init_reply enables passthrough only with INIT_EXT, 1 <= max_stack_depth <= 2 and
// (6.11+) without writeback cache; a bad combination silently leaves it off.
void fuse_mount(Model &m, const InitReply &reply);

// fuse_dev_ioctl_backing_open -> fuse_backing_open: the ioctl's checks in kernel order; the
// new fb starts with the id's reference. Returns the id in value.
SysResult fuse_dev_ioctl_backing_open(Model &m, const BackingMapArg &arg);

// fuse_dev_ioctl_backing_close -> fuse_backing_close: removes the id and drops its reference,
// even while inodes still hold the fb.
SysResult fuse_dev_ioctl_backing_close(Model &m, std::uint32_t id, bool capable);

// fuse_iget: the inode of a mount file, instantiated on first lookup.
InodeId fuse_iget(Model &m, std::uint32_t name);

// path_openat on mount file `name` (an index the caller owns), which exists on the server or
// not: the mount must exist; a name whose dentry is not cached needs a LOOKUP (fuse_lookup),
// which fails once the connection is gone; O_CREAT|O_EXCL (flags.o_creat_excl) always
// revalidates and fails on an existing name (open_last_lookups), else sends CREATE. Then
// fuse_open or fuse_create_open. SysResult::created: the server made the file.
SysResult path_openat(Model &m, std::uint32_t name, bool exists, const OpenFlags &flags,
                      const OpenReply &reply);

// vfs open -> fuse_open -> fuse_do_open -> fuse_finish_open -> fuse_file_io_open, after the
// path walk; a refused io mode sends a synchronous RELEASE (fuse_sync_release) and open(2)
// returns EIO.
SysResult fuse_open(Model &m, InodeId inode, const OpenFlags &flags, const OpenReply &reply);

// fuse_create_open: CREATE, then the same fuse_finish_open as OPEN.
SysResult fuse_create_open(Model &m, InodeId inode, const OpenReply &reply);

// fuse_dir_open: the walk to the root (never revalidated: only the mount must exist), then
// OPENDIR, which never enters io modes; passthrough bits are ignored.
SysResult fuse_dir_open(Model &m, const OpenReply &reply);

// fuse_file_read_iter: DIRECT_IO to the server, else passthrough to the backing file (6.9+),
// else the page cache.
SysResult fuse_file_read_iter(Model &m, FileId f);

// fuse_file_write_iter: as read, with the inode lock of each path and fuse_dio_lock's parallel
// write accounting. A held write stays in flight until fuse_write_reply.
SysResult fuse_file_write_iter(Model &m, FileId f, bool held);

// The server answers a held WRITE: fuse_dio_unlock / inode_unlock, then the syscall returns.
SysResult fuse_write_reply(Model &m, WriteId w);

// fuse_file_mmap: passthrough files map the backing file; others are refused while the inode
// has an fb; shared mmap of a DIRECT_IO file enters cached io mode.
SysResult fuse_file_mmap(Model &m, FileId f, bool shared);

// munmap: the VMA drops its pin on vm_file (the FUSE file or the backing_file).
void vma_close(Model &m, VmaId v);

// close(2): fuse_flush sends FLUSH (unless FOPEN_NOFLUSH), which fails with ENOTCONN on a dead
// connection; the fd is gone either way, and the fput's last reference runs fuse_release. With
// flush_takes_inode_lock the flush first takes the inode lock, and sleeps while a write holds it.
SysResult fuse_close_fd(Model &m, FileId f);

// fuse_abort_conn: disconnects; in-flight requests end with ECONNABORTED.
void fuse_abort_conn(Model &m);

// fuse_conn_abort_write: "1" written to fusectl's abort file, which exists only while the
// superblock does.
SysResult fuse_conn_abort_write(Model &m);

// umount2: EBUSY while files are open unless detached; the superblock dies with its last file.
SysResult fuse_umount(Model &m, bool detach);

// fuse_dev_release: the last /dev/fuse fd aborts the connection and drops its reference.
SysResult fuse_dev_release(Model &m);

// Wakes every sleeping call whose wait queue was woken and whose condition now holds; returns
// the tasks that completed, in completion order.
std::vector<TaskId> fuse_run_woken_tasks(Model &m);

} // namespace fpsim::model
