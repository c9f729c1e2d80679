// fs/fuse/file.c and dir.c: open, create, release, read/write dispatch, parallel direct
// writes and mmap (docs/kernel-semantics.md §2.4-§2.10).
#include "model/internal.h"

#include <cerrno>

namespace fpsim::model {
namespace detail {
namespace {

// Calls other than writes that sleep in the inode lock's queue (exclusively).
bool inode_lock_sleeper(TaskKind k) {
  switch (k) {
  case TaskKind::TruncateLockWait:
  case TaskKind::DirectReadLockWait:
  case TaskKind::FlushLockWait:
    return true;
  case TaskKind::OpenCachedIoWait:
  case TaskKind::MmapCachedIoWait:
  case TaskKind::WriteLockWait:
  case TaskKind::OpenInvalidateWait:
  case TaskKind::ReadPageWait:
  case TaskKind::MmapInvalidateWait:
    return false;
  }
  return false;
}

// rwsem waiters are served in order: a caller queued later, even a reader next to readers,
// waits behind them (fpsim-harness fuzz: a parallel write queues behind an O_TRUNC open).
bool has_lock_waiters_before(const Model &m, InodeId i, std::uint64_t before) {
  for (std::uint32_t k : m.unfinished_writes) {
    const Write &w = m.writes[k];
    if (w.inode == i && !w.locked && !w.done && w.queued < before)
      return true;
  }
  for (std::uint32_t k : m.unfinished_tasks) {
    const Task &t = m.tasks[k];
    if (t.inode == i && !t.done && inode_lock_sleeper(t.kind) && t.queued < before)
      return true;
  }
  return false;
}

// Whether an exclusive locker queued at `place` must still wait: the lock is held, or someone
// queued before it has not had it yet.
bool inode_lock_must_wait(const Model &m, InodeId i, std::uint64_t place) {
  const InodeLock &lock = m.inode(i).i_rwsem;
  return lock.writer || lock.readers > 0 || has_lock_waiters_before(m, i, place);
}

bool inode_trylock(Model &m, WriteId id) {
  Write &w = m.writes.mut(idx(id));
  FuseInode &fi = m.inode(w.inode);
  if (has_lock_waiters_before(m, w.inode, w.queued))
    return false;
  if (w.exclusive ? (fi.i_rwsem.writer || fi.i_rwsem.readers > 0) : fi.i_rwsem.writer)
    return false;
  if (w.exclusive)
    fi.i_rwsem.writer = true;
  else
    fi.i_rwsem.readers++;
  w.locked = true;
  return true;
}

Route write_route(Model &m, const FuseFile &ff, const Decision &d) {
  if (ff.open_flags & fopen::DIRECT_IO)
    return Route::Fuse;
  if (ff.passthrough) {
    Decision x = d;
    x.fb = ff.opened_with_fb;
    x.rule = m.profile.has(Feature::PassthroughReadWrite) ? Rule::PassthroughWrite
                                                          : Rule::WriteSeedPassthrough;
    m.decide(x);
    if (x.rule == Rule::PassthroughWrite)
      return Route::Backing;
  }
  return Route::Fuse;
}

// fuse_fill_write_pages on the folio: a partial copy into a folio that is not uptodate keeps it
// locked until the WRITE is answered; an uptodate folio is unlocked before the WRITE goes out.
void fuse_fill_write_pages(Model &m, Write &w) {
  w.folio_in_mapping = true;
  w.folio_locked = !m.inode(w.inode).folio_uptodate;
}

// fuse_write_begin (writeback cache): a partial write into a folio that is not uptodate reads
// the folio first.
void fuse_write_begin(Model &m, InodeId i) { m.inode(i).folio_uptodate = true; }

// Reads and writes of this file go through the page cache: neither FOPEN_DIRECT_IO nor O_DIRECT
// (which generic_file_read_iter / generic_file_direct_write send to fuse_direct_IO).
bool uses_page_cache(const FuseFile &ff) {
  return !(ff.open_flags & fopen::DIRECT_IO) && !ff.f_flags.o_direct;
}

// The write syscall returns: fuse_dio_unlock / inode_unlock, then fdput.
void write_finish(Model &m, WriteId id, int result) {
  Write &w = m.writes.mut(idx(id));
  w.in_flight = false;
  w.done = true;
  w.result = result;
  fuse_send_write_pages_end(m, w);
  if (w.counted) {
    w.counted = false;
    if (m.mutant == Mutant::ParallelWriteSetsIomode)
      m.file(w.file).iomode = IoMode::None;
    fuse_inode_uncached_io_end(m, w.inode);
  }
  if (w.locked) {
    w.locked = false;
    inode_unlock(m, w.inode, w.exclusive);
  }
  wake_up_page(m, w.inode);
  fuse_file_fput(m, w.file, "write");
}

// Drives a write as far as it can go: lock, parallel-write accounting, then the request.
// Returns false while it waits for the inode lock.
bool write_progress(Model &m, WriteId id, SysResult *r) {
  for (;;) {
    Write &w = m.writes.mut(idx(id));
    if (!w.locked && !inode_trylock(m, id))
      return false;
    if (!w.exclusive && !w.counted) {
      // fuse_dio_lock: a shared-lock writer takes an uncached reference with no fb; refused,
      // it retakes the lock exclusively and is not counted.
      if (fuse_inode_uncached_io_start(m, w.inode, std::nullopt, w.file, id) != 0) {
        w.locked = false;
        inode_unlock(m, w.inode, false);
        w.exclusive = true;
        continue;
      }
      w.counted = true;
      if (m.mutant == Mutant::ParallelWriteSetsIomode) {
        FuseFile &wf = m.file(w.file);
        if (wf.iomode != IoMode::None)
          m.warn("fuse_file_uncached_io_start", "ff->iomode != IOM_NONE");
        wf.iomode = IoMode::Uncached;
      }
    }
    const FuseFile &ff = m.file(w.file);
    Decision d = Decision().with_inode(w.inode).with_file(w.file).with_write(id);
    auto decide = [&m, &d](Rule rule, int err = 0) {
      d.rule = rule;
      d.err = err;
      m.decide(d);
    };
    r->route = write_route(m, ff, d);
    if (r->route == Route::Backing) {
      write_finish(m, id, 0);
      return true;
    }
    const bool page_cache = uses_page_cache(ff);
    decide(!page_cache
               ? ((ff.open_flags & fopen::DIRECT_IO) ? Rule::DirectWrite : Rule::CacheWriteODirect)
           : m.fc.writeback_cache ? Rule::CacheWriteWriteback
                                  : Rule::CacheWriteThrough);
    if (!page_cache)
      invalidate_folio(m, w.inode); // fuse_direct_io / kiocb_invalidate_pages, before sending
    else if (!m.fc.writeback_cache)
      fuse_fill_write_pages(m, w);
    if (!m.fc.connected) {
      r->route = Route::None;
      r->err = ENOTCONN;
      decide(Rule::WriteDisconnected, r->err);
      write_finish(m, id, ENOTCONN);
      return true;
    }
    // With writeback cache a buffered write only dirties the page cache: no WRITE reaches the
    // server while the syscall runs, so there is nothing to hold (observed on 6.18).
    if (page_cache && m.fc.writeback_cache) {
      fuse_write_begin(m, w.inode);
      write_finish(m, id, 0);
      return true;
    }
    if (w.held) {
      w.in_flight = true;
      r->route = Route::None;
      decide(Rule::WriteHeld);
      return true;
    }
    write_finish(m, id, 0);
    return true;
  }
}

// fuse_dio_wr_exclusive_lock for an in-place write (never O_APPEND, never past EOF here).
Rule fuse_dio_wr_exclusive_lock(const Model &m, const FuseFile &ff) {
  if (!(ff.open_flags & fopen::PARALLEL_DIRECT_WRITES))
    return Rule::DioWrExclusive;
  if (!m.inode(ff.inode).cache_io_mode)
    return Rule::DioWrShared;
  // Without the feature the cache-io-mode test returned false by mistake and fell through to
  // the counting path, where ETXTBSY caught it.
  return m.profile.has(Feature::CacheIoModeExclusiveDioLock) ? Rule::DioWrExclusiveCacheIoMode
                                                             : Rule::DioWrSharedCacheIoModeMissed;
}

VmaId new_vma(Model &m, FileId f, bool shared) {
  FuseFile &ff = m.file(f);
  Vma v;
  v.file = f;
  v.shared = shared;
  v.created_at = m.step;
  if (ff.passthrough) {
    // backing_file_mmap swaps vm_file: the VMA pins the backing_file, not the FUSE file.
    v.target = VmaTarget::BackingFile;
    v.backing_file = *ff.passthrough;
    BackingFile &bf = m.backing_files.mut(idx(*ff.passthrough));
    if (bf.f_count.inc() != RefcountMisuse::None)
      m.warn("backing_file_mmap", "get_file on a released backing_file");
  } else {
    v.target = VmaTarget::FuseFile;
    if (ff.f_count.inc() != RefcountMisuse::None)
      m.warn("mmap_region", "get_file on a released FUSE file");
  }
  m.vmas.push_back(v);
  return VmaId{static_cast<std::uint32_t>(m.vmas.size() - 1)};
}

TaskId new_task(Model &m, Task t) {
  m.tasks.push_back(t);
  m.unfinished_tasks.push_back(static_cast<std::uint32_t>(m.tasks.size() - 1));
  return TaskId{static_cast<std::uint32_t>(m.tasks.size() - 1)};
}

// A syscall on file f goes to sleep: it pins the file (fdget) until it returns.
TaskId sleeping_call(Model &m, TaskKind kind, FileId f, const char *what) {
  if (m.file(f).f_count.inc() != RefcountMisuse::None)
    m.warn(what, std::string(what) + " on a released FUSE file");
  Task t;
  t.kind = kind;
  t.inode = m.file(f).inode;
  t.file = f;
  return new_task(m, t);
}

FileId new_file(Model &m, InodeId inode, const OpenFlags &flags) {
  FuseFile ff;
  ff.inode = inode;
  ff.f_flags = flags;
  ff.f_count = RefCount(1);
  m.files.push_back(ff);
  return FileId{static_cast<std::uint32_t>(m.files.size() - 1)};
}

// fuse_sync_release: the refused file's fh goes back to the server before open(2) returns.
// Returns whether the RELEASE reached the server: without OPEN it ends locally.
bool fuse_sync_release(Model &m, FileId f) {
  FuseFile &ff = m.file(f);
  fuse_passthrough_release(m, f, "fuse_sync_release");
  fuse_file_io_release(m, f);
  bool zero = false;
  if (ff.f_count.dec_and_test(&zero) != RefcountMisuse::None || !zero)
    m.warn("fuse_sync_release", "refused file still referenced");
  ff.released = true;
  if (m.fc.no_open)
    return false;
  m.releases_sent++;
  m.sync_releases_sent++;
  return true;
}

// fuse_finish_open -> fuse_file_io_open, and fuse_sync_release on failure.
SysResult fuse_finish_open(Model &m, FileId f) {
  SysResult r;
  int internal = 0;
  std::optional<Rule> wait;
  const int err = fuse_file_io_open(m, f, &internal, &wait);
  if (wait) {
    Task t;
    t.kind = TaskKind::OpenCachedIoWait;
    t.inode = m.file(f).inode;
    t.file = f;
    r.blocked = true;
    r.task = new_task(m, t);
    m.decide(Decision(*wait).with_inode(t.inode).with_file(f).with_task(r.task));
    return r;
  }
  if (err) {
    r.sync_release = fuse_sync_release(m, f);
    r.err = err;
    r.internal_err = internal;
    return r;
  }
  r.file = f;
  return r;
}

// The server's OPEN/CREATE answer turns into a fuse_file; an error answer frees it unsent.
SysResult fuse_file_open(Model &m, InodeId inode, const OpenFlags &flags,
                         const OpenReply &reply, bool create) {
  SysResult r;
  bool has_args = true;
  std::uint32_t open_flags = 0;
  std::int32_t backing_id = 0;
  // A server without OPEN: without the feature ff->args is freed, so io modes are skipped.
  // With it a regular file keeps ff->args, so such a file is an ordinary cached open:
  // fpsim-harness shows EIO on a passthrough inode and a wait behind parallel writes (6.18.44).
  const bool no_open_keeps_args = m.profile.has(Feature::NoOpenKeepsArgs);
  // With a cached dentry the walk survives an abort; the OPEN/CREATE request does not, and a
  // server without OPEN gets none (fpsim-harness fuzz, 6.18: such an open succeeds).
  if (!m.fc.connected && !(m.fc.no_open && !create)) {
    r.err = ENOTCONN;
    m.decide(Decision(Rule::OpenDisconnected).with_err(r.err).with_inode(inode));
    return r;
  }
  if (m.fc.no_open && !create) {
    has_args = no_open_keeps_args;
    open_flags = fopen::KEEP_CACHE;
    m.decide(Decision(Rule::OpenNoOpen).with_inode(inode));
  } else {
    switch (reply.kind) {
    case OpenReply::Kind::Error:
      r.err = reply.error;
      m.decide(Decision(Rule::OpenReplyError).with_err(r.err).with_inode(inode));
      return r;
    case OpenReply::Kind::Enosys:
      if (create) {
        m.warn("fuse_create_open", "CREATE answered ENOSYS: the MKNOD+OPEN fallback is not modelled");
        r.err = ENOSYS;
        m.decide(Decision(Rule::CreateEnosys).with_err(r.err).with_inode(inode));
        return r;
      }
      m.decide(Decision(Rule::OpenEnosys).with_inode(inode));
      m.fc.no_open = true;
      has_args = no_open_keeps_args;
      open_flags = fopen::KEEP_CACHE;
      break;
    case OpenReply::Kind::Flags:
      open_flags = reply.open_flags;
      backing_id = reply.backing_id;
      break;
    }
  }
  const FileId f = new_file(m, inode, flags);
  FuseFile &ff = m.file(f);
  ff.has_args = has_args;
  ff.open_flags = open_flags;
  ff.backing_id = backing_id;
  ff.fh = m.next_fh++;
  return fuse_finish_open(m, f);
}

void open_truncate_or_done(Model &m, FileId f, SysResult *r, std::optional<TaskId> task);

// fuse_open, after the io mode is settled: without FOPEN_KEEP_CACHE the page cache is
// invalidated, which sleeps on a locked folio. fpsim-harness showed this on 6.18: the refused
// opens fail at once, the admitted ones wait for a held write that keeps the folio locked.
void invalidate_or_done(Model &m, FileId f, SysResult *r, std::optional<TaskId> task) {
  const FuseFile &ff = m.file(f);
  const bool invalidates = ff.has_args && !(ff.open_flags & fopen::KEEP_CACHE);
  if (invalidates && folio_locked_by_write(m, ff.inode)) {
    if (task) {
      Task &t = m.tasks.mut(idx(*task));
      if (t.kind != TaskKind::OpenInvalidateWait)
        m.decide(
            Decision(Rule::OpenInvalidateWait).with_inode(ff.inode).with_file(f).with_task(task));
      t.kind = TaskKind::OpenInvalidateWait;
      return;
    }
    Task t;
    t.kind = TaskKind::OpenInvalidateWait;
    t.inode = ff.inode;
    t.file = f;
    r->blocked = true;
    r->task = new_task(m, t);
    m.decide(
        Decision(Rule::OpenInvalidateWait).with_inode(ff.inode).with_file(f).with_task(r->task));
    return;
  }
  if (invalidates) {
    invalidate_folio(m, ff.inode);
    m.decide(Decision(Rule::OpenInvalidate).with_inode(ff.inode).with_file(f).with_task(task));
  }
  open_truncate_or_done(m, f, r, task);
}

// do_truncate after an O_TRUNC open (the server has no atomic_o_trunc): notify_change runs under
// the inode lock, so it waits for a write holding it (fpsim-harness fuzz, 6.18); the SETATTR is
// answered at once, and fails after an abort, failing open(2) and dropping the new file.
void open_truncate_or_done(Model &m, FileId f, SysResult *r, std::optional<TaskId> task) {
  const FuseFile &ff = m.file(f);
  if (ff.f_flags.o_trunc && !ff.is_dir) {
    const bool queued = task && m.tasks.at(idx(*task)).kind == TaskKind::TruncateLockWait;
    const std::uint64_t place = queued ? m.tasks.at(idx(*task)).queued : UINT64_MAX;
    if (inode_lock_must_wait(m, ff.inode, place)) {
      if (task) {
        Task &t = m.tasks.mut(idx(*task));
        if (!queued) {
          t.queued = ++m.lock_queue;
          m.decide(
              Decision(Rule::TruncateLockWait).with_inode(ff.inode).with_file(f).with_task(task));
        }
        t.kind = TaskKind::TruncateLockWait;
        return;
      }
      Task t;
      t.kind = TaskKind::TruncateLockWait;
      t.queued = ++m.lock_queue;
      t.inode = ff.inode;
      t.file = f;
      r->blocked = true;
      r->task = new_task(m, t);
      m.decide(
          Decision(Rule::TruncateLockWait).with_inode(ff.inode).with_file(f).with_task(r->task));
      return;
    }
    // do_truncate took the inode lock and dropped it: the next in the queue may go.
    wake_inode_lock_waiters(m, ff.inode);
    if (!m.fc.connected) {
      r->err = ENOTCONN;
      m.decide(Decision(Rule::DoTruncateDisconnected)
                   .with_err(r->err)
                   .with_inode(ff.inode)
                   .with_file(f));
      fuse_file_fput(m, f, "do_truncate");
      if (task)
        m.tasks.mut(idx(*task)).done = true;
      return;
    }
    m.decide(Decision(Rule::DoTruncate).with_inode(ff.inode).with_file(f));
  }
  r->file = f;
  if (task)
    m.tasks.mut(idx(*task)).done = true;
}

// The cached io reference a sleeping shared mapping of a direct_io file needs. new_wait: the
// call comes from the page lock, so a wait here is one it had not slept in yet.
void mmap_cached_io(Model &m, TaskId id, bool new_wait) {
  Task &t = m.tasks.mut(idx(id));
  std::optional<Rule> wait;
  const int err = fuse_file_cached_io_open(m, t.file, &wait);
  if (wait) {
    if (new_wait)
      m.decide(Decision(*wait).with_inode(t.inode).with_file(t.file).with_task(id));
    return;
  }
  t.done = true;
  if (err) {
    t.result.err = err;
  } else {
    m.decide(Decision(Rule::MmapDirectIoShared).with_inode(t.inode).with_file(t.file));
    t.result.vma = new_vma(m, t.file, t.shared);
  }
  // The sleeping mmap pinned the file for the duration of the call.
  fuse_file_fput(m, t.file, "mmap");
}

// A READ on a dead connection fails with ENOTCONN; a buffered read read through iomap reports it
// as EIO (buffered_read_error_eio).
Decision read_disconnected(const Model &m, bool page_cache) {
  if (page_cache && m.profile.has(Feature::BufferedReadErrorEio))
    return Decision(Rule::ReadDisconnectedBufferedEio).with_err(EIO);
  return Decision(Rule::ReadDisconnected).with_err(ENOTCONN);
}

// A read that slept returns: its READ fails once the connection is gone. Returns whether it
// reached the server.
bool sleeping_read_done(Model &m, TaskId id) {
  Task &t = m.tasks.mut(idx(id));
  t.done = true;
  if (m.fc.connected)
    return true;
  t.result.route = Route::None;
  const Decision d = read_disconnected(m, t.kind == TaskKind::ReadPageWait);
  t.result.err = d.err;
  m.decide(Decision(d).with_inode(t.inode).with_file(t.file));
  return false;
}

void complete_task(Model &m, TaskId id) {
  Task &t = m.tasks.mut(idx(id));
  switch (t.kind) {
  case TaskKind::OpenCachedIoWait: {
    std::optional<Rule> wait;
    const int err = fuse_file_cached_io_open(m, t.file, &wait);
    if (wait)
      return;
    if (err) {
      t.done = true;
      t.result.sync_release = fuse_sync_release(m, t.file);
      t.result.err = EIO;
      t.result.internal_err = err;
      return;
    }
    invalidate_or_done(m, t.file, &t.result, id);
    return;
  }
  case TaskKind::OpenInvalidateWait:
    invalidate_or_done(m, t.file, &t.result, id);
    return;
  case TaskKind::TruncateLockWait:
    open_truncate_or_done(m, t.file, &t.result, id);
    return;
  case TaskKind::DirectReadLockWait:
    if (inode_lock_must_wait(m, t.inode, t.queued))
      return;
    sleeping_read_done(m, id);
    // It took the inode lock and dropped it: the next in the queue may go.
    wake_inode_lock_waiters(m, t.inode);
    fuse_file_fput(m, t.file, "read");
    return;
  case TaskKind::ReadPageWait:
    if (folio_locked_by_write(m, t.inode))
      return;
    // The unlocked folio is not uptodate (a partial write, or one an abort failed): the read
    // reads it now.
    if (sleeping_read_done(m, id))
      m.inode(t.inode).folio_uptodate = true;
    // The sleeping read pinned the file for the duration of the call.
    fuse_file_fput(m, t.file, "read");
    return;
  case TaskKind::MmapInvalidateWait:
    if (folio_locked_by_write(m, t.inode))
      return;
    invalidate_folio(m, t.inode);
    if (t.shared) {
      t.kind = TaskKind::MmapCachedIoWait;
      mmap_cached_io(m, id, true);
      return;
    }
    t.done = true;
    m.decide(Decision(Rule::MmapDirectIoPrivate).with_inode(t.inode).with_file(t.file));
    t.result.vma = new_vma(m, t.file, t.shared);
    fuse_file_fput(m, t.file, "mmap");
    return;
  case TaskKind::MmapCachedIoWait:
    mmap_cached_io(m, id, false);
    return;
  case TaskKind::WriteLockWait:
    if (!write_progress(m, t.write, &t.result))
      return;
    t.done = true;
    t.result.write = t.write;
    return;
  case TaskKind::FlushLockWait:
    if (inode_lock_must_wait(m, t.inode, t.queued))
      return;
    // fuse_flush takes the lock, syncs writes and drops it again: the next in the queue may go.
    wake_inode_lock_waiters(m, t.inode);
    t.done = true;
    t.result.err = fuse_flush_request(m, t.file);
    fuse_file_fput(m, t.file, "close");
    return;
  }
}

} // namespace

bool file_readable(const FuseFile &ff) { return ff.f_flags.access != AccessMode::WriteOnly; }
bool file_writable(const FuseFile &ff) { return ff.f_flags.access != AccessMode::ReadOnly; }

void skip_finished(Model &m) {
  std::erase_if(m.unfinished_writes, [&m](std::uint32_t k) { return m.writes[k].done; });
  std::erase_if(m.unfinished_tasks, [&m](std::uint32_t k) { return m.tasks[k].done; });
}

namespace {

// Marks task k woken by `rule`.
void wake(Model &m, std::uint32_t k, Rule rule) {
  Task &t = m.tasks.mut(k);
  t.woken = true;
  m.decide(Decision(rule).with_inode(t.inode).with_file(t.file).with_task(TaskId{k}));
}

} // namespace

void wake_up_direct_io_waitq(Model &m, InodeId i) {
  for (std::uint32_t k : m.unfinished_tasks)
    if (const Task &t = m.tasks[k]; !t.done && t.inode == i &&
        (t.kind == TaskKind::OpenCachedIoWait || t.kind == TaskKind::MmapCachedIoWait))
      wake(m, k, Rule::WakeDirectIoWaitq);
}

// A write that returned has let its folio go (fuse_send_write_pages_end), so the loops over
// folios skip returned writes too.
bool folio_locked_by_write(const Model &m, InodeId i) {
  for (std::uint32_t k : m.unfinished_writes)
    if (m.writes[k].inode == i && m.writes[k].folio_locked)
      return true;
  return false;
}

void invalidate_folio(Model &m, InodeId i) {
  m.inode(i).folio_uptodate = false;
  for (std::uint32_t k : m.unfinished_writes)
    if (const Write &w = m.writes[k]; w.inode == i && w.folio_in_mapping) {
      if (w.folio_locked)
        m.warn("invalidate_inode_pages2", "dropping a folio a WRITE keeps locked");
      m.writes.mut(k).folio_in_mapping = false;
    }
}

void fuse_send_write_pages_end(Model &m, Write &w) {
  if (w.result != 0 && w.folio_in_mapping)
    m.inode(w.inode).folio_uptodate = false;
  w.folio_locked = false;
  w.folio_in_mapping = false;
}

void wake_up_page(Model &m, InodeId i) {
  for (std::uint32_t k : m.unfinished_tasks)
    if (const Task &t = m.tasks[k]; !t.done && t.inode == i &&
        (t.kind == TaskKind::OpenInvalidateWait || t.kind == TaskKind::ReadPageWait ||
         t.kind == TaskKind::MmapInvalidateWait))
      wake(m, k, Rule::WakePage);
}

void inode_unlock(Model &m, InodeId i, bool exclusive) {
  FuseInode &fi = m.inode(i);
  if (exclusive) {
    if (!fi.i_rwsem.writer)
      m.warn("inode_unlock", "unlocking an inode lock that is not held exclusively");
    fi.i_rwsem.writer = false;
  } else {
    if (fi.i_rwsem.readers <= 0)
      m.warn("inode_unlock_shared", "unlocking an inode lock that is not held shared");
    fi.i_rwsem.readers--;
  }
  wake_inode_lock_waiters(m, i);
}

void wake_inode_lock_waiters(Model &m, InodeId i) {
  for (std::uint32_t k : m.unfinished_tasks)
    if (const Task &t = m.tasks[k]; !t.done && t.inode == i &&
        (t.kind == TaskKind::WriteLockWait || inode_lock_sleeper(t.kind)))
      wake(m, k, Rule::WakeInodeLock);
}

void fuse_file_fput(Model &m, FileId f, const char *where) {
  FuseFile &ff = m.file(f);
  bool zero = false;
  const RefcountMisuse misuse = ff.f_count.dec_and_test(&zero);
  if (misuse != RefcountMisuse::None) {
    m.warn(where, "fput on a FUSE file that was already released");
    return;
  }
  if (zero)
    fuse_release(m, f);
}

void fuse_release(Model &m, FileId f) {
  FuseFile &ff = m.file(f);
  ff.released = true;
  if (!ff.is_dir) {
    // fuse_prepare_release puts the per-file backing_file and cred first, then fuse_file_put
    // leaves the io mode before RELEASE goes out: a server that never answers RELEASE cannot
    // keep the inode in passthrough mode.
    fuse_passthrough_release(m, f, "fuse_prepare_release");
    fuse_file_io_release(m, f);
  }
  const bool sent = ff.has_args && !m.fc.no_open && m.fc.connected;
  if (sent)
    m.releases_sent++;
  m.decide(Decision(!ff.has_args || m.fc.no_open ? Rule::ReleaseNoOpen
                    : !m.fc.connected            ? Rule::ReleaseDisconnected
                                                 : Rule::ReleaseSent)
               .with_inode(ff.inode)
               .with_file(f));
  if (m.fc.sb_alive && !m.fc.mounted && !sb_pinned(m)) {
    m.decide(Decision(Rule::KillSbLastFile).with_file(f));
    fuse_kill_sb(m);
  }
}

bool sb_pinned(const Model &m) {
  for (const FuseFile &ff : m.files)
    if (!ff.released)
      return true;
  // A backing_file keeps the path it was opened through (backing_file_user_path), and with it
  // the FUSE mount: a passthrough mapping outliving its file keeps umount busy (fpsim-harness
  // fuzz, 6.18).
  for (const BackingFile &bf : m.backing_files)
    if (bf.f_count.value() > 0)
      return true;
  return false;
}

} // namespace detail

using namespace detail;

InodeId fuse_iget(Model &m, std::uint32_t name) {
  if (const std::optional<InodeId> found = m.find_inode(name))
    return *found;
  FuseInode fi;
  fi.name = name;
  m.inodes.push_back(fi);
  const InodeId id{static_cast<std::uint32_t>(m.inodes.size() - 1)};
  m.inode_by_name.emplace(name, id);
  return id;
}

SysResult fuse_open(Model &m, InodeId inode, const OpenFlags &flags, const OpenReply &reply) {
  SysResult r = fuse_file_open(m, inode, flags, reply, false);
  if (r.file && !r.blocked && !r.err) {
    const FileId f = *r.file;
    r.file.reset();
    invalidate_or_done(m, f, &r, std::nullopt);
  }
  return r;
}

SysResult fuse_create_open(Model &m, InodeId inode, const OpenReply &reply) {
  OpenFlags flags;
  flags.access = AccessMode::ReadWrite;
  flags.o_creat_excl = true;
  return fuse_file_open(m, inode, flags, reply, true);
}

SysResult path_openat(Model &m, std::uint32_t name, bool exists, const OpenFlags &flags,
                      const OpenReply &reply) {
  const bool create = flags.o_creat_excl;
  const std::optional<InodeId> known = m.find_inode(name);
  const bool dentry_cached = known && m.inode(*known).dentry_cached && !m.inode(*known).evicted;
  // O_CREAT|O_EXCL always revalidates (LOOKUP_EXCL), so only an open can ride a cached dentry,
  // and the root is never revalidated.
  const bool walk_ok = m.fc.mounted && (m.fc.connected || (!create && dentry_cached));
  SysResult r;
  if (walk_ok && !create && !exists) {
    r.err = ENOENT;
    m.decide(Decision(Rule::LookupNoEntry).with_err(r.err));
    return r;
  }
  if (walk_ok && create && exists) {
    r.err = EEXIST;
    m.decide(Decision(Rule::LookupExists).with_err(r.err).with_inode(known));
    return r;
  }
  // Instantiated even when the walk fails below: an inode with no io-mode state changes no rule,
  // and the states explore has counted since the walk lived in the executor include it.
  const InodeId inode = fuse_iget(m, name);
  if (!walk_ok) {
    r.err = m.fc.mounted ? ENOTCONN : ENOENT;
    m.decide(Decision(m.fc.mounted ? Rule::LookupDisconnected : Rule::PathWalkNoMount)
                 .with_err(r.err)
                 .with_inode(inode));
    return r;
  }
  if (!create) {
    if (m.fc.connected)
      m.inode(inode).dentry_cached = true; // LOOKUP answered
    return fuse_open(m, inode, flags, reply);
  }
  r = fuse_create_open(m, inode, reply);
  // The server made the file as soon as it answered CREATE without an error, and the kernel
  // instantiated its dentry.
  if (m.fc.connected && reply.kind == OpenReply::Kind::Flags && r.err != ENOTCONN) {
    r.created = true;
    m.inode(inode).dentry_cached = true;
  }
  return r;
}

SysResult fuse_dir_open(Model &m, const OpenReply &reply) {
  SysResult r;
  if (!m.fc.mounted) {
    r.err = ENOENT;
    m.decide(Decision(Rule::PathWalkNoMount).with_err(r.err));
    return r;
  }
  bool has_args = !m.fc.no_opendir;
  // The root needs no LOOKUP; OPENDIR itself fails on a dead connection unless the server
  // never implemented it (no request at all: fpsim-harness fuzz, 6.18).
  if (has_args && !m.fc.connected) {
    r.err = ENOTCONN;
    m.decide(Decision(Rule::DirOpenDisconnected).with_err(r.err));
    return r;
  }
  Rule rule = has_args ? Rule::DirOpen : Rule::DirOpenNoOpendir;
  if (has_args) {
    switch (reply.kind) {
    case OpenReply::Kind::Error:
      r.err = reply.error;
      m.decide(Decision(Rule::DirOpenReplyError).with_err(r.err));
      return r;
    case OpenReply::Kind::Enosys:
      m.fc.no_opendir = true;
      has_args = false;
      rule = Rule::DirOpenEnosys;
      break;
    case OpenReply::Kind::Flags:
      break;
    }
  }
  m.decide(Decision(rule));
  // The root directory: an inode with no io mode, named outside the caller's file indices.
  const FileId f = new_file(m, fuse_iget(m, kRootInodeName), OpenFlags{});
  FuseFile &ff = m.file(f);
  ff.is_dir = true;
  ff.has_args = has_args;
  ff.fh = m.next_fh++;
  r.file = f;
  return r;
}

namespace {

// A read of the folio a held write-through WRITE keeps locked sleeps: through the page cache on
// the folio lock (observed on 6.18); a direct read (fuse_direct_io: a range with a locked folio,
// filemap_range_has_writeback) on inode_lock + fuse_sync_writes first, and the WRITE keeping the
// folio locked holds the inode lock (fpsim-harness fuzz, 6.18).
void read_sleeps(Model &m, FileId f, bool page_cache, SysResult *r) {
  r->blocked = true;
  r->task = sleeping_call(m, page_cache ? TaskKind::ReadPageWait : TaskKind::DirectReadLockWait, f,
                          "read");
  Task &t = m.tasks.mut(idx(*r->task));
  if (!page_cache)
    t.queued = ++m.lock_queue;
  t.result.route = Route::Fuse;
  m.decide(Decision(page_cache ? Rule::ReadPageWait : Rule::DirectReadLockWait)
               .with_inode(t.inode)
               .with_file(f)
               .with_task(r->task));
}

} // namespace

SysResult fuse_file_read_iter(Model &m, FileId f) {
  SysResult r;
  const FuseFile &ff = m.file(f);
  Decision d = Decision().with_inode(ff.inode).with_file(f);
  auto decide = [&m, &d](Rule rule, int err = 0) {
    d.rule = rule;
    d.err = err;
    m.decide(d);
  };
  if (ff.is_dir) {
    r.err = EISDIR;
    decide(Rule::ReadIsDir, r.err);
    return r;
  }
  if (!file_readable(ff)) {
    r.err = EBADF;
    decide(Rule::ReadNotReadable, r.err);
    return r;
  }
  if (!(ff.open_flags & fopen::DIRECT_IO) && ff.passthrough) {
    d.fb = ff.opened_with_fb;
    if (m.profile.has(Feature::PassthroughReadWrite)) {
      r.route = Route::Backing;
      decide(Rule::PassthroughRead);
      return r;
    }
    // The seed (5/9) opened in passthrough mode but still read through FUSE.
    decide(Rule::ReadSeedPassthrough);
  }
  const bool page_cache = uses_page_cache(ff);
  // An uptodate folio is copied out without a request, so it reads even after an abort.
  if (page_cache && m.inode(ff.inode).folio_uptodate) {
    r.route = Route::Fuse;
    decide(Rule::CacheReadUptodate);
    return r;
  }
  // A page-cache read waits for the folio a held write-through WRITE keeps locked; a direct read
  // does where fuse_direct_io looks for folios under writeback in the page cache itself.
  if (folio_locked_by_write(m, ff.inode) &&
      (page_cache || m.profile.has(Feature::DirectReadWaitsForLockedFolio))) {
    read_sleeps(m, f, page_cache, &r);
    return r;
  }
  if (!m.fc.connected) {
    const Decision why = read_disconnected(m, page_cache);
    r.err = why.err;
    decide(why.rule, r.err);
    return r;
  }
  if (page_cache)
    m.inode(ff.inode).folio_uptodate = true;
  r.route = Route::Fuse;
  decide(page_cache                           ? Rule::CacheReadMiss
         : (ff.open_flags & fopen::DIRECT_IO) ? Rule::DirectRead
                                              : Rule::CacheReadODirect);
  return r;
}

SysResult fuse_file_write_iter(Model &m, FileId f, bool held) {
  SysResult r;
  FuseFile &ff = m.file(f);
  if (ff.is_dir || !file_writable(ff)) {
    r.err = EBADF;
    m.decide(Decision(ff.is_dir ? Rule::WriteIsDir : Rule::WriteNotWritable)
                 .with_err(r.err)
                 .with_inode(ff.inode)
                 .with_file(f));
    return r;
  }
  Write w;
  w.file = f;
  w.inode = ff.inode;
  w.held = held;
  w.queued = ++m.lock_queue;
  const WriteId id{static_cast<std::uint32_t>(m.writes.size())};
  if (ff.open_flags & fopen::DIRECT_IO) {
    const Rule lock = fuse_dio_wr_exclusive_lock(m, ff);
    w.exclusive = lock == Rule::DioWrExclusive || lock == Rule::DioWrExclusiveCacheIoMode;
    m.decide(Decision(lock).with_inode(ff.inode).with_file(f).with_write(id));
  } else {
    w.exclusive = true; // fuse_cache_write_iter and passthrough writes: inode_lock
  }
  // The syscall pins the file until it returns (fdget in a multi-threaded process).
  if (ff.f_count.inc() != RefcountMisuse::None)
    m.warn("write", "write on a released FUSE file");
  m.writes.push_back(w);
  m.unfinished_writes.push_back(idx(id));
  if (write_progress(m, id, &r)) {
    if (m.writes[idx(id)].in_flight)
      r.write = id;
    return r;
  }
  Task t;
  t.kind = TaskKind::WriteLockWait;
  t.inode = ff.inode;
  t.file = f;
  t.write = id;
  r.blocked = true;
  r.write = id;
  r.task = new_task(m, t);
  m.decide(Decision(Rule::WriteLockWait)
               .with_inode(t.inode)
               .with_file(f)
               .with_write(id)
               .with_task(r.task));
  return r;
}

SysResult fuse_write_reply(Model &m, WriteId id) {
  SysResult r;
  Write &w = m.writes.mut(idx(id));
  if (w.done) {
    r.err = w.result;
    r.route = w.result ? Route::None : Route::Fuse;
    m.decide(Decision(Rule::WriteReplyAfterAbort)
                 .with_err(r.err)
                 .with_inode(w.inode)
                 .with_file(w.file)
                 .with_write(id));
    return r;
  }
  if (!w.in_flight) {
    m.warn("fuse_write_reply", "the server answered a WRITE it never received");
    r.err = EINVAL;
    return r;
  }
  m.decide(Decision(Rule::WriteReply).with_inode(w.inode).with_file(w.file).with_write(id));
  write_finish(m, id, 0);
  r.route = Route::Fuse;
  return r;
}

namespace {

// fuse_file_mmap's refusals, and its route: the backing file, or the page cache (entering
// cached io mode for a shared mapping of a direct_io file).
Decision fuse_file_mmap_rule(const Model &m, FileId f, bool shared) {
  const FuseFile &ff = m.file(f);
  Decision d = Decision().with_inode(ff.inode).with_file(f).with_other_fb(m.inode(ff.inode).fb);
  auto refuse = [&d](Rule r, int err) {
    d.rule = r;
    d.err = err;
    return d;
  };
  if (ff.is_dir)
    return refuse(Rule::MmapIsDir, ENODEV);
  // do_mmap: every mapping needs a readable fd (PROT_READ).
  if (!file_readable(ff))
    return refuse(Rule::MmapNotReadable, EACCES);
  if (ff.passthrough) {
    // The seed's 5/9 left passthrough mmap as a TODO.
    if (!m.profile.has(Feature::PassthroughMmap))
      return refuse(Rule::MmapSeedPassthrough, ENODEV);
    d.fb = ff.opened_with_fb;
    d.rule = Rule::MmapPassthrough;
    return d;
  }
  if (m.inode(ff.inode).fb && m.profile.has(Feature::MmapRefusedOnBackingInode))
    return refuse(Rule::MmapBackingInode, ENODEV);
  if (!(ff.open_flags & fopen::DIRECT_IO)) {
    d.rule = Rule::MmapPageCache;
    return d;
  }
  if (shared && !m.fc.direct_io_allow_mmap)
    return refuse(Rule::MmapDirectIoSharedRefused, ENODEV);
  d.rule = shared ? Rule::MmapDirectIoShared : Rule::MmapDirectIoPrivate;
  return d;
}

} // namespace

SysResult fuse_file_mmap(Model &m, FileId f, bool shared) {
  SysResult r;
  Decision d = fuse_file_mmap_rule(m, f, shared);
  if (d.err) {
    r.err = d.err;
    m.decide(d);
    return r;
  }
  const FuseFile &ff = m.file(f);
  if (ff.open_flags & fopen::DIRECT_IO && !ff.passthrough) {
    // invalidate_inode_pages2 first: it sleeps on a folio a held write-through WRITE keeps
    // locked (fpsim-harness fuzz showed a private mapping waiting on 6.18).
    if (folio_locked_by_write(m, ff.inode)) {
      r.blocked = true;
      r.task = sleeping_call(m, TaskKind::MmapInvalidateWait, f, "mmap");
      m.tasks.mut(idx(*r.task)).shared = shared;
      m.decide(
          Decision(Rule::MmapInvalidateWait).with_inode(ff.inode).with_file(f).with_task(r.task));
      return r;
    }
    invalidate_folio(m, ff.inode);
  }
  if (d.rule == Rule::MmapDirectIoShared) {
    // A shared mapping of a direct-io file needs the page cache: it takes a cached io
    // reference that lasts until the file is released, not until munmap.
    std::optional<Rule> wait;
    const int err = fuse_file_cached_io_open(m, f, &wait);
    if (wait) {
      r.blocked = true;
      r.task = sleeping_call(m, TaskKind::MmapCachedIoWait, f, "mmap");
      m.tasks.mut(idx(*r.task)).shared = shared;
      m.decide(Decision(*wait).with_inode(d.inode).with_file(f).with_task(r.task));
      return r;
    }
    if (err) {
      r.err = err;
      return r;
    }
  }
  m.decide(d);
  r.vma = new_vma(m, f, shared);
  return r;
}

void vma_close(Model &m, VmaId id) {
  Vma &v = m.vmas.mut(idx(id));
  if (!v.mapped) {
    m.warn("vma_close", "unmapping a VMA twice");
    return;
  }
  v.mapped = false;
  switch (v.target) {
  case VmaTarget::BackingFile:
    backing_file_fput(m, v.backing_file, "vma_close");
    // Its path_put may drop the last pin of a detached mount.
    if (m.fc.sb_alive && !m.fc.mounted && !sb_pinned(m)) {
      m.decide(Decision(Rule::KillSbLastFile).with_file(v.file));
      fuse_kill_sb(m);
    }
    return;
  case VmaTarget::FuseFile:
    fuse_file_fput(m, v.file, "vma_close");
    return;
  }
}

namespace detail {
namespace {

// Whether fuse_flush returns before its request (and its inode lock): directories have no
// flush, and FOPEN_NOFLUSH without writeback cache skips it.
std::optional<Rule> flush_skipped(const Model &m, const FuseFile &ff) {
  if (ff.is_dir)
    return Rule::FlushDirectory;
  if ((ff.open_flags & fopen::NOFLUSH) && !m.fc.writeback_cache)
    return Rule::FlushNoflush;
  return std::nullopt;
}

} // namespace

// The FLUSH request: observed on 6.18, after an abort it fails with ENOTCONN.
int fuse_flush_request(Model &m, FileId f) {
  const FuseFile &ff = m.file(f);
  const int err = m.fc.connected ? 0 : ENOTCONN;
  m.decide(Decision(err ? Rule::FlushDisconnected : Rule::Flush)
               .with_err(err)
               .with_inode(ff.inode)
               .with_file(f));
  return err;
}

} // namespace detail

SysResult fuse_close_fd(Model &m, FileId f) {
  SysResult r;
  const FuseFile &ff = m.file(f);
  if (const std::optional<Rule> skipped = flush_skipped(m, ff)) {
    m.decide(Decision(*skipped).with_inode(ff.inode).with_file(f));
  } else if (m.profile.has(Feature::FlushTakesInodeLock) &&
             inode_lock_must_wait(m, ff.inode, m.lock_queue + 1)) {
    // The close holds the fd's reference while it sleeps; the flush's fput drops it.
    Task t;
    t.kind = TaskKind::FlushLockWait;
    t.inode = ff.inode;
    t.file = f;
    t.queued = ++m.lock_queue;
    r.blocked = true;
    r.task = new_task(m, t);
    m.decide(Decision(Rule::FlushLockWait).with_inode(t.inode).with_file(f).with_task(r.task));
    return r;
  } else {
    r.err = fuse_flush_request(m, f);
  }
  fuse_file_fput(m, f, "close");
  return r;
}

std::vector<TaskId> fuse_run_woken_tasks(Model &m) {
  // folio_unlock hands the folio lock to a sleeper before the writer drops the inode lock, so
  // folio sleepers run before the calls the same step woke otherwise (fpsim-harness fuzz: an
  // invalidating open beats the next writer to the folio on 6.18).
  const auto folio_sleeper = [](TaskKind k) {
    switch (k) {
    case TaskKind::OpenInvalidateWait:
    case TaskKind::ReadPageWait:
    case TaskKind::MmapInvalidateWait:
      return true;
    case TaskKind::OpenCachedIoWait:
    case TaskKind::MmapCachedIoWait:
    case TaskKind::WriteLockWait:
    case TaskKind::TruncateLockWait:
    case TaskKind::DirectReadLockWait:
    case TaskKind::FlushLockWait:
      return false;
    }
    return false;
  };
  std::vector<TaskId> completed;
  // Once per step: a call that returned is never woken again. Calls made while this runs are
  // appended, as they are to the task table.
  skip_finished(m);
  const std::vector<std::uint32_t> &live = m.unfinished_tasks;
  bool progress = true;
  while (progress) {
    progress = false;
    for (std::size_t k = 0; k < 2 * live.size() && !progress; ++k) {
      const bool folio_pass = k < live.size();
      const std::uint32_t i = live[folio_pass ? k : k - live.size()];
      if (const Task &t = m.tasks[i]; t.done || !t.woken || folio_sleeper(t.kind) != folio_pass)
        continue;
      m.tasks.mut(i).woken = false;
      m.deciding_task = TaskId{i};
      complete_task(m, TaskId{i});
      m.deciding_task.reset();
      if (m.tasks[i].done) {
        completed.push_back(TaskId{i});
        progress = true;
      }
    }
  }
  return completed;
}

} // namespace fpsim::model
