#include "sim/checker.h"

#include <algorithm>
#include <climits>
#include <fmt/format.h>

namespace fpsim::sim {

using namespace model;

namespace {

template <typename Id>
std::string lookup(const std::vector<std::string> &v, Id id, std::string_view kind) {
  const auto i = idx(id);
  if (i < v.size() && !v[i].empty())
    return v[i];
  return fmt::format("{}#{}", kind, i);
}

const char *iomode_name(IoMode m) {
  switch (m) {
  case IoMode::None:
    return "none";
  case IoMode::Cached:
    return "cached";
  case IoMode::Uncached:
    return "uncached";
  }
  return "?";
}

std::vector<std::string> fb_holders(const Model &m, const ObjectNames &n, FbId fb) {
  std::vector<std::string> h;
  for (const auto &[id, b] : m.fc.backing_files_map)
    if (b == fb)
      h.push_back(fmt::format("the id map (id {})", id));
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
    if (!m.inodes[i].evicted && m.inodes[i].fb == fb)
      h.push_back("inode " + n.inode(InodeId{i}));
  return h;
}

std::vector<std::string> backing_file_holders(const Model &m, const ObjectNames &n,
                                              BackingFileId bf) {
  std::vector<std::string> h;
  for (std::uint32_t f = 0; f < m.files.size(); ++f)
    if (m.files[f].passthrough == bf)
      h.push_back("file " + n.file(FileId{f}) + " (ff->passthrough)");
  for (std::uint32_t v = 0; v < m.vmas.size(); ++v)
    if (m.vmas[v].mapped && m.vmas[v].target == VmaTarget::BackingFile &&
        m.vmas[v].backing_file == bf)
      h.push_back("mapping " + n.vma(VmaId{v}));
  return h;
}

std::string join(const std::vector<std::string> &v) {
  if (v.empty())
    return "nobody it knows of";
  std::string s;
  for (const auto &x : v)
    s += (s.empty() ? "" : ", ") + x;
  return s;
}

} // namespace

std::string ObjectNames::inode(InodeId i) const { return lookup(inodes, i, "inode"); }
std::string ObjectNames::file(FileId f) const { return lookup(files, f, "file"); }
std::string ObjectNames::fb(const Model &m, FbId b) const {
  return fmt::format("{} (fb#{}, id {})", lookup(fbs, b, "fb"), idx(b), m.backing(b).id);
}
std::string ObjectNames::vma(VmaId v) const { return lookup(vmas, v, "vma"); }
std::string ObjectNames::write(WriteId w) const { return lookup(writes, w, "write"); }

namespace {

// Everything check() counts per object, gathered in one pass over each table: the checker runs
// after every step, so a scan per inode or per fb would make a replay quadratic (cubic with the
// steps) in what a trace opens.
struct Tally {
  struct PerInode {
    int cached = 0;
    int uncached = 0;
    int counted_writes = 0;
    int readers = 0;
    int writers = 0;
    bool cache_waiter = false;
    bool folio_sleeper = false;
    std::vector<std::uint32_t> folio_lockers; // writes, in table order
    std::vector<std::uint32_t> fuse_vmas;     // mapped through a FUSE file of this inode
  };
  std::vector<PerInode> inodes;
  std::vector<bool> file_waiting;            // a cached open of it sleeps on direct_io_waitq
  std::vector<int> fb_in_idr;
  std::vector<int> fb_attached;
  std::vector<int> cred_file_holders;
  std::vector<std::int32_t> backing_file_holders;
  std::vector<std::int32_t> idr_ids_sorted;
  bool idr_has_duplicates = false;

  Tally(const Model &m, const std::vector<std::uint32_t> &live_writes,
        const std::vector<std::uint32_t> &live_tasks)
      : inodes(m.inodes.size()), file_waiting(m.files.size(), false),
        fb_in_idr(m.backings.size(), 0), fb_attached(m.backings.size(), 0),
        cred_file_holders(m.creds.size(), 0), backing_file_holders(m.backing_files.size(), 0) {
    for (const FuseFile &ff : m.files) {
      if (ff.cred && idx(*ff.cred) < cred_file_holders.size())
        cred_file_holders[idx(*ff.cred)]++;
      if (ff.passthrough && idx(*ff.passthrough) < backing_file_holders.size())
        backing_file_holders[idx(*ff.passthrough)]++;
      if (ff.released || idx(ff.inode) >= inodes.size())
        continue;
      inodes[idx(ff.inode)].cached += ff.iomode == IoMode::Cached;
      inodes[idx(ff.inode)].uncached += ff.iomode == IoMode::Uncached;
    }
    for (std::uint32_t wi : live_writes) {
      const Write &w = m.writes[wi];
      if (idx(w.inode) >= inodes.size())
        continue;
      PerInode &pi = inodes[idx(w.inode)];
      pi.counted_writes += w.counted;
      if (w.locked)
        (w.exclusive ? pi.writers : pi.readers)++;
      if (w.folio_locked)
        pi.folio_lockers.push_back(wi);
    }
    for (std::uint32_t ti : live_tasks) {
      const Task &t = m.tasks[ti];
      if (t.done)
        continue;
      const bool cache_wait =
          t.kind == TaskKind::OpenCachedIoWait || t.kind == TaskKind::MmapCachedIoWait;
      const bool folio_wait = t.kind == TaskKind::ReadPageWait ||
                              t.kind == TaskKind::OpenInvalidateWait ||
                              t.kind == TaskKind::MmapInvalidateWait;
      if (idx(t.inode) < inodes.size()) {
        inodes[idx(t.inode)].cache_waiter = inodes[idx(t.inode)].cache_waiter || cache_wait;
        inodes[idx(t.inode)].folio_sleeper =
            inodes[idx(t.inode)].folio_sleeper || (folio_wait && !t.woken);
      }
      if (t.kind == TaskKind::OpenCachedIoWait && idx(t.file) < file_waiting.size())
        file_waiting[idx(t.file)] = true;
    }
    for (std::uint32_t v = 0; v < m.vmas.size(); ++v) {
      const Vma &vma = m.vmas[v];
      if (!vma.mapped)
        continue;
      if (vma.target == VmaTarget::BackingFile &&
          idx(vma.backing_file) < backing_file_holders.size())
        backing_file_holders[idx(vma.backing_file)]++;
      if (vma.target == VmaTarget::FuseFile) {
        const InodeId i = m.file(vma.file).inode;
        if (idx(i) < inodes.size())
          inodes[idx(i)].fuse_vmas.push_back(v);
      }
    }
    for (const auto &[id, fb] : m.fc.backing_files_map) {
      idr_ids_sorted.push_back(id);
      if (idx(fb) < fb_in_idr.size())
        fb_in_idr[idx(fb)]++;
    }
    // Ids are handed out in increasing order until the cursor wraps: usually already sorted.
    if (!std::is_sorted(idr_ids_sorted.begin(), idr_ids_sorted.end()))
      std::sort(idr_ids_sorted.begin(), idr_ids_sorted.end());
    idr_has_duplicates =
        std::adjacent_find(idr_ids_sorted.begin(), idr_ids_sorted.end()) != idr_ids_sorted.end();
    for (const FuseInode &fi : m.inodes)
      if (!fi.evicted && fi.fb && idx(*fi.fb) < fb_attached.size())
        fb_attached[idx(*fi.fb)]++;
  }

  int idr_count(std::int32_t id) const {
    if (!idr_has_duplicates)
      return 1;
    const auto [lo, hi] = std::equal_range(idr_ids_sorted.begin(), idr_ids_sorted.end(), id);
    return static_cast<int>(hi - lo);
  }
};

} // namespace

std::vector<Violation> InvariantChecker::check(const Model &m, const ObjectNames &n) {
  std::vector<Violation> out;
  auto bad = [&out](std::string rule, std::string msg) {
    out.push_back(Violation{std::move(rule), std::move(msg)});
  };

  for (; warnings_seen_ < m.warnings.size(); ++warnings_seen_) {
    const Warning &w = m.warnings[warnings_seen_];
    bad("WARN", fmt::format("{}: {}", w.where, w.what));
  }

  refresh_live(m);
  const Tally tally(m, live_writes_, live_tasks_);

  for (std::uint32_t ii = 0; ii < m.inodes.size(); ++ii) {
    const FuseInode &fi = m.inodes[ii];
    const InodeId id{ii};
    if (fi.evicted)
      continue;
    const Tally::PerInode &pi = tally.inodes[ii];
    const std::string name = n.inode(id);
    if (fi.fb && fi.iocachectr >= 0)
      bad("I1", fmt::format("inode {}: fb attached but iocachectr={} (passthrough needs < 0)", name,
                            fi.iocachectr));
    const int cached = pi.cached, uncached = pi.uncached, writes = pi.counted_writes;
    if (fi.iocachectr != cached - uncached - writes)
      bad("I2", fmt::format("inode {}: iocachectr={} but {} cached - {} uncached - {} parallel "
                            "writes = {}",
                            name, fi.iocachectr, cached, uncached, writes,
                            cached - uncached - writes));
    if (cached > 0 && fi.fb)
      bad("I4", fmt::format("inode {}: {} cached file(s) while {} is attached", name, cached,
                            n.fb(m, *fi.fb)));
    if (fi.iocachectr > 0 && !fi.cache_io_mode)
      bad("I8", fmt::format("inode {}: iocachectr={} but FUSE_I_CACHE_IO_MODE is clear", name,
                            fi.iocachectr));
    if (fi.cache_io_mode && fi.iocachectr <= 0 && !pi.cache_waiter)
      bad("I8", fmt::format("inode {}: FUSE_I_CACHE_IO_MODE set with iocachectr={} and no cached "
                            "opener waiting",
                            name, fi.iocachectr));
    if (fi.fb && m.profile != KernelProfile::V15)
      for (std::uint32_t v : pi.fuse_vmas) {
        const Vma &vma = m.vmas[v];
        if (vma.created_at >= fi.fb_attached_at)
          bad("I13", fmt::format("inode {}: mapping {} made through non-passthrough file {} after "
                                 "{} was attached",
                                 name, n.vma(VmaId{v}), n.file(vma.file), n.fb(m, *fi.fb)));
      }
    const int readers = pi.readers, writers = pi.writers;
    if (readers != fi.i_rwsem.readers || (writers > 0) != fi.i_rwsem.writer || writers > 1 ||
        (writers > 0 && readers > 0))
      bad("lock", fmt::format("inode {}: i_rwsem readers={} writer={} but writes hold {} shared, "
                              "{} exclusive",
                              name, fi.i_rwsem.readers, fi.i_rwsem.writer, readers, writers));
    // The folio lock: only a write-through WRITE in flight under the exclusive inode lock holds
    // it, only while the folio is not uptodate, and whoever sleeps on it has a holder to wake it.
    for (std::uint32_t wi : pi.folio_lockers) {
      const Write &w = m.writes[wi];
      if (!w.in_flight || !w.locked || !w.exclusive || !w.folio_in_mapping || fi.folio_uptodate)
        bad("folio", fmt::format("inode {}: write {} holds the folio lock with in_flight={} "
                                 "inode-locked={} exclusive={} in_mapping={} uptodate={}",
                                 name, n.write(WriteId{wi}), w.in_flight, w.locked, w.exclusive,
                                 w.folio_in_mapping, fi.folio_uptodate));
    }
    if (pi.folio_lockers.size() > 1)
      bad("folio", fmt::format("inode {}: {} writes hold the folio lock", name,
                               pi.folio_lockers.size()));
    if (pi.folio_lockers.empty() && pi.folio_sleeper)
      bad("folio", fmt::format("inode {}: a call sleeps on the folio lock nobody holds", name));
  }

  for (std::uint32_t fi = 0; fi < m.files.size(); ++fi) {
    const FuseFile &ff = m.files[fi];
    if (ff.released) {
      if (ff.f_count.value() != 0 || ff.passthrough || ff.cred || ff.iomode != IoMode::None)
        bad("I3", fmt::format("file {}: released but f_count={} passthrough={} cred={} iomode={}",
                              n.file(FileId{fi}), ff.f_count.value(), ff.passthrough.has_value(),
                              ff.cred.has_value(), iomode_name(ff.iomode)));
      continue;
    }
    if (ff.f_count.value() <= 0 && !tally.file_waiting[fi])
      bad("file", fmt::format("file {}: not released but f_count={}", n.file(FileId{fi}),
                              ff.f_count.value()));
    if (ff.iomode == IoMode::Uncached) {
      const FuseInode &inode = m.inode(ff.inode);
      if (!ff.passthrough || !ff.cred)
        bad("I3", fmt::format("file {}: iomode uncached without backing_file/cred",
                              n.file(FileId{fi})));
      if (ff.opened_with_fb != inode.fb)
        bad("I3", fmt::format("file {}: opened with {} but inode {} has {}", n.file(FileId{fi}),
                              ff.opened_with_fb ? n.fb(m, *ff.opened_with_fb) : "no fb",
                              n.inode(ff.inode), inode.fb ? n.fb(m, *inode.fb) : "no fb"));
    }
    if (ff.passthrough && ff.iomode != IoMode::Uncached)
      bad("I3", fmt::format("file {}: has a backing_file but iomode={}", n.file(FileId{fi}),
                            iomode_name(ff.iomode)));
  }

  if (fb_seen_in_idr_.size() < m.backings.size())
    fb_seen_in_idr_.resize(m.backings.size(), false);
  for (const auto &[id, fb] : m.fc.backing_files_map) {
    if (id < 1)
      bad("I9", fmt::format("id {} in the id map is outside [1, INT_MAX]", id));
    if (!fb_seen_in_idr_[idx(fb)]) {
      fb_seen_in_idr_[idx(fb)] = true;
      if (id <= max_id_allocated_)
        bad("I9", fmt::format("id {} allocated after id {}: cyclic allocation moves forward", id,
                              max_id_allocated_));
      max_id_allocated_ = std::max(max_id_allocated_, id);
    }
    if (const int dup = tally.idr_count(id); dup > 1)
      bad("I9", fmt::format("id {} appears {} times in the id map", id, dup));
  }

  for (std::uint32_t bi = 0; bi < m.backings.size(); ++bi) {
    const FbId fbid{bi};
    const FuseBacking &b = m.backings[bi];
    const int in_idr = tally.fb_in_idr[bi], attached = tally.fb_attached[bi];
    if (b.freed) {
      if (b.count.value() != 0 || in_idr || attached)
        bad("I5", fmt::format("{}: freed but refcount={} and still reachable from {}",
                              n.fb(m, fbid), b.count.value(), join(fb_holders(m, n, fbid))));
    } else if (b.count.value() != in_idr + attached) {
      bad("I6", fmt::format("{}: refcount={} but held by {} (expected {})", n.fb(m, fbid),
                            b.count.value(), join(fb_holders(m, n, fbid)), in_idr + attached));
    } else if (b.count.value() <= 0) {
      bad("I5", fmt::format("{}: refcount 0 but not freed", n.fb(m, fbid)));
    }
    const int cred_holders = (b.freed ? 0 : 1) + tally.cred_file_holders.at(idx(b.cred));
    if (m.creds.at(idx(b.cred)).usage.value() != cred_holders)
      bad("cred", fmt::format("{}: its cred has usage {} but {} holder(s)", n.fb(m, fbid),
                              m.creds.at(idx(b.cred)).usage.value(), cred_holders));
  }

  for (std::uint32_t bf = 0; bf < m.backing_files.size(); ++bf) {
    if (m.backing_files[bf].f_count.value() == tally.backing_file_holders[bf])
      continue;
    const BackingFileId id{bf};
    bad("backing_file", fmt::format("backing_file#{} (for {}): f_count={} but held by {}", bf,
                                    n.file(m.backing_files[bf].user_file),
                                    m.backing_files[bf].f_count.value(),
                                    join(backing_file_holders(m, n, id))));
  }

  for (std::uint32_t wi : live_writes_) {
    const Write &w = m.writes[wi];
    if ((w.in_flight || w.locked) && m.file(w.file).released)
      bad("write", fmt::format("write {} in progress on released file {}", n.write(WriteId{wi}),
                               n.file(w.file)));
    if (w.done && (w.in_flight || w.locked || w.counted || w.folio_locked))
      bad("write", fmt::format("write {} returned but still holds in_flight={} inode-locked={} "
                               "parallel-write count={} folio lock={}",
                               n.write(WriteId{wi}), w.in_flight, w.locked, w.counted,
                               w.folio_locked));
  }
  // Finished writes and calls change no more: the next check skips them.
  std::erase_if(live_writes_, [&m](std::uint32_t wi) { return m.writes[wi].done; });
  std::erase_if(live_tasks_, [&m](std::uint32_t ti) { return m.tasks[ti].done; });
  return out;
}

void InvariantChecker::refresh_live(const Model &m) {
  for (; writes_seen_ < m.writes.size(); ++writes_seen_)
    live_writes_.push_back(static_cast<std::uint32_t>(writes_seen_));
  for (; tasks_seen_ < m.tasks.size(); ++tasks_seen_)
    live_tasks_.push_back(static_cast<std::uint32_t>(tasks_seen_));
}

std::vector<Violation> InvariantChecker::check_open_release(const Model &m, const SysResult &r,
                                                            std::uint64_t delta) {
  std::vector<Violation> out;
  const std::uint64_t want = r.internal_err != 0 && !m.fc.no_open ? 1 : 0;
  if (delta != want || r.sync_release != (want == 1))
    out.push_back(Violation{
        "I12", fmt::format("open returned {} with internal errno {} but sent {} synchronous "
                           "RELEASE(s)",
                           r.err, r.internal_err, delta)});
  return out;
}

std::vector<Violation> InvariantChecker::check_drained(const Model &m, const ObjectNames &n,
                                                      DrainScope scope) {
  std::vector<Violation> out;
  auto leak = [&out](std::string msg) { out.push_back(Violation{"leak", std::move(msg)}); };
  for (std::uint32_t bi = 0; bi < m.backings.size(); ++bi) {
    const FuseBacking &b = m.backings[bi];
    if (!b.freed)
      leak(fmt::format("{} not freed: refcount {}, held by {}", n.fb(m, FbId{bi}), b.count.value(),
                       join(fb_holders(m, n, FbId{bi}))));
  }
  for (std::uint32_t ii = 0; ii < m.inodes.size(); ++ii) {
    const FuseInode &fi = m.inodes[ii];
    if (fi.iocachectr != 0 || fi.fb)
      leak(fmt::format("inode {}: iocachectr={} fb={}", n.inode(InodeId{ii}), fi.iocachectr,
                       fi.fb ? n.fb(m, *fi.fb) : "none"));
  }
  for (std::uint32_t bf = 0; bf < m.backing_files.size(); ++bf)
    if (m.backing_files[bf].f_count.value() != 0)
      leak(fmt::format("backing_file#{} (for {}) not put: f_count {}, held by {}", bf,
                       n.file(m.backing_files[bf].user_file), m.backing_files[bf].f_count.value(),
                       join(backing_file_holders(m, n, BackingFileId{bf}))));
  for (std::uint32_t ci = 0; ci < m.creds.size(); ++ci)
    if (m.creds[ci].usage.value() != 0)
      leak(fmt::format("cred#{} not put: usage {}", ci, m.creds[ci].usage.value()));
  if (scope == DrainScope::References)
    return out;
  for (std::uint32_t fi = 0; fi < m.files.size(); ++fi)
    if (!m.files[fi].released) {
      std::vector<std::string> holders;
      for (std::uint32_t v = 0; v < m.vmas.size(); ++v)
        if (m.vmas[v].mapped && m.vmas[v].target == VmaTarget::FuseFile &&
            m.vmas[v].file == FileId{fi})
          holders.push_back("mapping " + n.vma(VmaId{v}));
      for (std::uint32_t w = 0; w < m.writes.size(); ++w)
        if (!m.writes[w].done && m.writes[w].file == FileId{fi})
          holders.push_back("write " + n.write(WriteId{w}));
      leak(fmt::format("file {} not released: f_count {}, held by {}", n.file(FileId{fi}),
                       m.files[fi].f_count.value(), join(holders)));
    }
  for (const Task &t : m.tasks)
    if (!t.done)
      leak(fmt::format("a call on {} is still asleep", n.file(t.file)));
  if (!m.fc.freed)
    leak(fmt::format("fuse_conn not freed: superblock {}, /dev/fuse fd {}",
                     m.fc.sb_alive ? "alive" : "gone", m.fc.dev_open ? "open" : "closed"));
  return out;
}

} // namespace fpsim::sim
