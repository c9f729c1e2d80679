#include "sim/checker.h"

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

bool has_cache_waiter(const Model &m, InodeId i) {
  for (const Task &t : m.tasks)
    if (!t.done && t.inode == i &&
        (t.kind == TaskKind::OpenCachedIoWait || t.kind == TaskKind::MmapCachedIoWait))
      return true;
  return false;
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

std::vector<Violation> InvariantChecker::check(const Model &m, const ObjectNames &n) {
  std::vector<Violation> out;
  auto bad = [&out](std::string rule, std::string msg) {
    out.push_back(Violation{std::move(rule), std::move(msg)});
  };

  for (; warnings_seen_ < m.warnings.size(); ++warnings_seen_) {
    const Warning &w = m.warnings[warnings_seen_];
    bad("WARN", fmt::format("{}: {}", w.where, w.what));
  }

  for (std::uint32_t ii = 0; ii < m.inodes.size(); ++ii) {
    const FuseInode &fi = m.inodes[ii];
    const InodeId id{ii};
    if (fi.evicted)
      continue;
    const std::string name = n.inode(id);
    if (fi.fb && fi.iocachectr >= 0)
      bad("I1", fmt::format("inode {}: fb attached but iocachectr={} (passthrough needs < 0)", name,
                            fi.iocachectr));
    int cached = 0, uncached = 0, writes = 0;
    for (const FuseFile &ff : m.files) {
      if (ff.released || ff.inode != id)
        continue;
      cached += ff.iomode == IoMode::Cached;
      uncached += ff.iomode == IoMode::Uncached;
    }
    for (const Write &w : m.writes)
      writes += w.counted && w.inode == id;
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
    if (fi.cache_io_mode && fi.iocachectr <= 0 && !has_cache_waiter(m, id))
      bad("I8", fmt::format("inode {}: FUSE_I_CACHE_IO_MODE set with iocachectr={} and no cached "
                            "opener waiting",
                            name, fi.iocachectr));
    if (fi.fb && m.profile != KernelProfile::V15)
      for (std::uint32_t v = 0; v < m.vmas.size(); ++v) {
        const Vma &vma = m.vmas[v];
        if (vma.mapped && vma.target == VmaTarget::FuseFile && m.file(vma.file).inode == id &&
            vma.created_at >= fi.fb_attached_at)
          bad("I13", fmt::format("inode {}: mapping {} made through non-passthrough file {} after "
                                 "{} was attached",
                                 name, n.vma(VmaId{v}), n.file(vma.file), n.fb(m, *fi.fb)));
      }
    int readers = 0, writers = 0;
    for (const Write &w : m.writes)
      if (w.locked && w.inode == id)
        (w.exclusive ? writers : readers)++;
    if (readers != fi.i_rwsem.readers || (writers > 0) != fi.i_rwsem.writer || writers > 1 ||
        (writers > 0 && readers > 0))
      bad("lock", fmt::format("inode {}: i_rwsem readers={} writer={} but writes hold {} shared, "
                              "{} exclusive",
                              name, fi.i_rwsem.readers, fi.i_rwsem.writer, readers, writers));
    // The folio lock: only a write-through WRITE in flight under the exclusive inode lock holds
    // it, only while the folio is not uptodate, and whoever sleeps on it has a holder to wake it.
    int folio_lockers = 0;
    for (std::uint32_t wi = 0; wi < m.writes.size(); ++wi) {
      const Write &w = m.writes[wi];
      if (w.inode != id || !w.folio_locked)
        continue;
      folio_lockers++;
      if (!w.in_flight || !w.locked || !w.exclusive || !w.folio_in_mapping || fi.folio_uptodate)
        bad("folio", fmt::format("inode {}: write {} holds the folio lock with in_flight={} "
                                 "inode-locked={} exclusive={} in_mapping={} uptodate={}",
                                 name, n.write(WriteId{wi}), w.in_flight, w.locked, w.exclusive,
                                 w.folio_in_mapping, fi.folio_uptodate));
    }
    if (folio_lockers > 1)
      bad("folio", fmt::format("inode {}: {} writes hold the folio lock", name, folio_lockers));
    if (folio_lockers == 0)
      for (const Task &t : m.tasks)
        if (!t.done && !t.woken && t.inode == id &&
            (t.kind == TaskKind::ReadPageWait || t.kind == TaskKind::OpenInvalidateWait ||
             t.kind == TaskKind::MmapInvalidateWait))
          bad("folio", fmt::format("inode {}: a call sleeps on the folio lock nobody holds", name));
  }

  for (std::uint32_t fi = 0; fi < m.files.size(); ++fi) {
    const FuseFile &ff = m.files[fi];
    const std::string name = n.file(FileId{fi});
    if (ff.released) {
      if (ff.f_count.value() != 0 || ff.passthrough || ff.cred || ff.iomode != IoMode::None)
        bad("I3", fmt::format("file {}: released but f_count={} passthrough={} cred={} iomode={}",
                              name, ff.f_count.value(), ff.passthrough.has_value(),
                              ff.cred.has_value(), iomode_name(ff.iomode)));
      continue;
    }
    const bool waiting = [&] {
      for (const Task &t : m.tasks)
        if (!t.done && t.file == FileId{fi} && t.kind == TaskKind::OpenCachedIoWait)
          return true;
      return false;
    }();
    if (ff.f_count.value() <= 0 && !waiting)
      bad("file", fmt::format("file {}: not released but f_count={}", name, ff.f_count.value()));
    if (ff.iomode == IoMode::Uncached) {
      const FuseInode &inode = m.inode(ff.inode);
      if (!ff.passthrough || !ff.cred)
        bad("I3", fmt::format("file {}: iomode uncached without backing_file/cred", name));
      if (ff.opened_with_fb != inode.fb)
        bad("I3", fmt::format("file {}: opened with {} but inode {} has {}", name,
                              ff.opened_with_fb ? n.fb(m, *ff.opened_with_fb) : "no fb",
                              n.inode(ff.inode), inode.fb ? n.fb(m, *inode.fb) : "no fb"));
    }
    if (ff.passthrough && ff.iomode != IoMode::Uncached)
      bad("I3", fmt::format("file {}: has a backing_file but iomode={}", name,
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
    int dup = 0;
    for (const auto &[id2, fb2] : m.fc.backing_files_map)
      dup += id2 == id;
    if (dup > 1)
      bad("I9", fmt::format("id {} appears {} times in the id map", id, dup));
  }

  for (std::uint32_t bi = 0; bi < m.backings.size(); ++bi) {
    const FbId fbid{bi};
    const FuseBacking &b = m.backings[bi];
    int in_idr = 0, attached = 0;
    for (const auto &[id, fb] : m.fc.backing_files_map)
      in_idr += fb == fbid;
    for (const FuseInode &fi : m.inodes)
      attached += !fi.evicted && fi.fb == fbid;
    const std::string name = n.fb(m, fbid);
    if (b.freed) {
      if (b.count.value() != 0 || in_idr || attached)
        bad("I5", fmt::format("{}: freed but refcount={} and still reachable from {}", name,
                              b.count.value(), join(fb_holders(m, n, fbid))));
    } else if (b.count.value() != in_idr + attached) {
      bad("I6", fmt::format("{}: refcount={} but held by {} (expected {})", name, b.count.value(),
                            join(fb_holders(m, n, fbid)), in_idr + attached));
    } else if (b.count.value() <= 0) {
      bad("I5", fmt::format("{}: refcount 0 but not freed", name));
    }
    int cred_holders = b.freed ? 0 : 1;
    for (const FuseFile &ff : m.files)
      cred_holders += ff.cred == b.cred;
    if (m.creds.at(idx(b.cred)).usage.value() != cred_holders)
      bad("cred", fmt::format("{}: its cred has usage {} but {} holder(s)", name,
                              m.creds.at(idx(b.cred)).usage.value(), cred_holders));
  }

  for (std::uint32_t bf = 0; bf < m.backing_files.size(); ++bf) {
    const BackingFileId id{bf};
    const auto holders = backing_file_holders(m, n, id);
    if (m.backing_files[bf].f_count.value() != static_cast<std::int32_t>(holders.size()))
      bad("backing_file", fmt::format("backing_file#{} (for {}): f_count={} but held by {}", bf,
                                      n.file(m.backing_files[bf].user_file),
                                      m.backing_files[bf].f_count.value(), join(holders)));
  }

  for (std::uint32_t wi = 0; wi < m.writes.size(); ++wi) {
    const Write &w = m.writes[wi];
    if ((w.in_flight || w.locked) && m.file(w.file).released)
      bad("write", fmt::format("write {} in progress on released file {}", n.write(WriteId{wi}),
                               n.file(w.file)));
  }
  return out;
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
