// fs/fuse/inode.c and dev.c: INIT, abort, umount, the connection's lifetime
// (docs/kernel-semantics.md §2.1, §2.11).
#include "model/internal.h"

#include "base/assert.h"
#include <cerrno>

namespace fpsim::model {

std::string_view mutant_name(Mutant m) {
  switch (m) {
  case Mutant::None:
    return "none";
  case Mutant::ParallelWriteSetsIomode:
    return "parallel-write-sets-iomode";
  case Mutant::NullFbConflict:
    return "null-fb-conflict";
  case Mutant::MissingPutSameFb:
    return "missing-put-same-fb";
  case Mutant::MissingPutOnRefusal:
    return "missing-put-on-refusal";
  case Mutant::NoFbDetachAtZero:
    return "no-fb-detach-at-zero";
  case Mutant::BackingCloseKeepsRef:
    return "backing-close-keeps-ref";
  case Mutant::BackingFileNotReleased:
    return "backing-file-not-released";
  case Mutant::IdsReusedImmediately:
    return "ids-reused-immediately";
  case Mutant::CachedReleaseSkipsDec:
    return "cached-release-skips-dec";
  case Mutant::NoEbusyCheck:
    return "no-ebusy-check";
  case Mutant::IdrKeptOnClose:
    return "idr-kept-on-close";
  }
  FPSIM_UNREACHABLE("a Mutant outside the enum");
}

std::vector<Mutant> all_mutants() {
  std::vector<Mutant> v;
  for (int i = 1; i <= static_cast<int>(Mutant::IdrKeptOnClose); ++i)
    v.push_back(static_cast<Mutant>(i));
  return v;
}

std::optional<Mutant> parse_mutant(std::string_view name) {
  if (name == "none")
    return Mutant::None;
  for (Mutant m : all_mutants())
    if (mutant_name(m) == name)
      return m;
  return std::nullopt;
}

void Model::warn(std::string where, std::string what) {
  warnings.push_back(Warning{std::move(where), std::move(what)});
}

void Model::clear_touched() {
  inodes.clear_touched();
  files.clear_touched();
  backings.clear_touched();
  backing_files.clear_touched();
  creds.clear_touched();
  vmas.clear_touched();
  writes.clear_touched();
  tasks.clear_touched();
  fc.backing_files_map.clear_changes();
  decisions.clear();
  deciding_task.reset();
}

std::optional<FbId> BackingIdMap::find(std::int32_t id) const {
  const auto it = entries_.find(id);
  if (it == entries_.end())
    return std::nullopt;
  return it->second;
}

void BackingIdMap::add(std::int32_t id, FbId fb) {
  log(*entries_.emplace(id, fb), true);
}

void BackingIdMap::erase(std::int32_t id) {
  const auto it = entries_.find(id);
  if (it == entries_.end())
    return;
  log(*it, false);
  entries_.erase(it);
}

std::optional<InodeId> Model::find_inode(std::uint32_t name) const {
  const auto it = inode_by_name.find(name);
  if (it == inode_by_name.end())
    return std::nullopt;
  return it->second;
}

void BackingIdMap::clear() {
  for (const auto &e : entries_)
    log(e, false);
  entries_.clear();
}

namespace detail {

void fuse_kill_sb(Model &m) {
  m.fc.sb_alive = false;
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i) {
    if (m.inodes[i].evicted)
      continue;
    FuseInode &fi = m.inodes.mut(i);
    fi.evicted = true;
    // fuse_evict_inode (6.9-rc5+) WARNs on a leftover io-mode reference.
    if (fi.iocachectr != 0)
      m.warn("fuse_evict_inode", "iocachectr " + std::to_string(fi.iocachectr) + " at eviction");
    // fuse_free_inode: defensive; the last uncached release normally detached fb already.
    if (fi.fb) {
      const FbId fb = *fi.fb;
      fi.fb.reset();
      fuse_backing_put(m, fb, "fuse_free_inode");
    }
  }
  fuse_conn_put(m);
}

void fuse_conn_put(Model &m) {
  if (m.fc.freed || m.fc.sb_alive || m.fc.dev_open)
    return;
  m.fc.freed = true;
  m.decide(Decision(Rule::ConnFree));
  fuse_backing_files_free(m);
}

} // namespace detail

using namespace detail;

void fuse_mount(Model &m, const InitReply &reply) {
  FuseConn &fc = m.fc;
  fc.initialized = true;
  fc.mounted = true;
  fc.sb_alive = true;
  fc.writeback_cache = reply.writeback_cache;
  // flags2 (which carries FUSE_DIRECT_IO_ALLOW_MMAP, bit 36, and FUSE_PASSTHROUGH, bit 37) only
  // counts with FUSE_INIT_EXT in flags (fpsim-harness fuzz found the first on 6.18).
  fc.direct_io_allow_mmap = reply.direct_io_allow_mmap && reply.init_ext;
  const bool pt_flag = reply.passthrough && reply.init_ext;
  const bool depth_ok =
      reply.max_stack_depth >= 1 && reply.max_stack_depth <= kFilesystemMaxStackDepth;
  const bool wbc_ok =
      !(reply.writeback_cache && m.profile.has(Feature::PassthroughOffWithWritebackCache));
  fc.passthrough = pt_flag && depth_ok && wbc_ok;
  fc.max_stack_depth = fc.passthrough ? reply.max_stack_depth : 0;
  m.decide(Decision(m.profile.has(Feature::SyncInit) ? Rule::InitSync : Rule::InitAfterMount));
  m.decide(Decision(!reply.passthrough ? Rule::InitNoPassthrough
                    : !reply.init_ext  ? Rule::InitNoInitExt
                    : !depth_ok        ? Rule::InitStackDepth
                    : !wbc_ok          ? Rule::InitWritebackCache
                                       : Rule::InitPassthrough));
  if (reply.direct_io_allow_mmap && !reply.init_ext)
    m.decide(Decision(Rule::InitFlags2Ignored));
}

void fuse_abort_conn(Model &m) {
  if (!m.fc.connected) {
    m.decide(Decision(Rule::AbortAlready));
    return;
  }
  m.fc.connected = false;
  m.decide(Decision(Rule::Abort));
  // end_requests: every request in flight returns ECONNABORTED to its caller.
  for (std::uint32_t i : m.unfinished_writes) {
    Write &w = m.writes.mut(i);
    if (w.in_flight) {
      w.in_flight = false;
      w.done = true;
      w.result = ECONNABORTED;
      m.decide(Decision(Rule::AbortEndsWrite)
                   .with_err(ECONNABORTED)
                   .with_inode(w.inode)
                   .with_file(w.file)
                   .with_write(WriteId{i}));
      fuse_send_write_pages_end(m, w);
      if (w.counted) {
        w.counted = false;
        fuse_inode_uncached_io_end(m, w.inode);
      }
      if (w.locked) {
        w.locked = false;
        inode_unlock(m, w.inode, w.exclusive);
      }
      wake_up_page(m, w.inode);
      fuse_file_fput(m, w.file, "fuse_abort_conn");
    }
  }
}

SysResult fuse_conn_abort_write(Model &m) {
  SysResult r;
  if (!m.fc.sb_alive) {
    r.err = ENOENT;
    m.decide(Decision(Rule::AbortNoSuperblock).with_err(r.err));
    return r;
  }
  fuse_abort_conn(m);
  return r;
}

SysResult fuse_umount(Model &m, bool detach) {
  SysResult r;
  if (!m.fc.mounted) {
    r.err = EINVAL;
    m.decide(Decision(Rule::UmountNotMounted).with_err(r.err));
    return r;
  }
  bool busy = sb_pinned(m);
  for (std::uint32_t k : m.unfinished_tasks)
    busy = busy || !m.tasks[k].done;
  if (busy && !detach) {
    r.err = EBUSY;
    m.decide(Decision(Rule::UmountBusy).with_err(r.err));
    return r;
  }
  m.fc.mounted = false;
  m.decide(Decision(busy ? Rule::UmountDetached : Rule::UmountKillSb));
  if (!busy)
    fuse_kill_sb(m);
  return r;
}

SysResult fuse_dev_release(Model &m) {
  SysResult r;
  if (!m.fc.dev_open) {
    r.err = EBADF;
    m.decide(Decision(Rule::DevReleaseClosed).with_err(r.err));
    return r;
  }
  m.fc.dev_open = false;
  m.decide(Decision(Rule::DevRelease));
  if (m.fc.initialized)
    fuse_abort_conn(m);
  fuse_conn_put(m);
  return r;
}

} // namespace fpsim::model
