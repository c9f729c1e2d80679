#include "sim/exec/checker.h"

#include "base/assert.h"
#include <algorithm>
#include <array>
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
  FPSIM_UNREACHABLE("an IoMode outside the enum");
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

std::string inode_name(const FuseInode &fi, const Names &names) {
  return fi.name == kRootInodeName ? std::string("(root)") : names.mount_files.at(fi.name);
}
std::string ObjectNames::file(FileId f) const { return lookup(files, f, "file"); }
std::string ObjectNames::fb(const Model &m, FbId b) const {
  return fmt::format("{} (fb#{}, id {})", lookup(fbs, b, "fb"), idx(b), m.backing(b).id);
}
std::string ObjectNames::vma(VmaId v) const { return lookup(vmas, v, "vma"); }
std::string ObjectNames::write(WriteId w) const { return lookup(writes, w, "write"); }

namespace {

template <typename Id> std::int64_t key(std::optional<Id> id) {
  return id ? static_cast<std::int64_t>(idx(*id)) : -1;
}

template <typename T> void grow_to(std::vector<T> &v, std::size_t n) {
  if (v.size() < n)
    v.resize(n);
}

void erase_one(std::vector<std::uint32_t> &v, std::uint32_t x) {
  const auto it = std::find(v.begin(), v.end(), x);
  if (it == v.end())
    return;
  *it = v.back();
  v.pop_back();
}

void add_count(std::vector<std::pair<std::int64_t, int>> &counts, std::int64_t k, int d) {
  for (auto it = counts.begin(); it != counts.end(); ++it)
    if (it->first == k) {
      it->second += d;
      if (it->second == 0)
        counts.erase(it);
      return;
    }
  counts.emplace_back(k, d);
}

int count_of(const std::vector<std::pair<std::int64_t, int>> &counts, std::int64_t k) {
  for (const auto &[x, c] : counts)
    if (x == k)
      return c;
  return 0;
}

void sort_unique(std::vector<std::uint32_t> &v) {
  if (v.size() < 2)
    return;
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

} // namespace

void InvariantChecker::Targets::clear() {
  inodes.clear();
  files.clear();
  fbs.clear();
  backing_files.clear();
  writes.clear();
  creds.clear();
}

const InvariantChecker::InodeLists &InvariantChecker::lists_of(std::uint32_t inode) const {
  static const InodeLists kNone;
  const auto it = inode_lists_.find(inode);
  return it == inode_lists_.end() ? kNone : it->second;
}

InvariantChecker::PerInode &InvariantChecker::tally(std::uint32_t inode) {
  grow_to(inode_tally_, std::size_t{inode} + 1);
  return inode_tally_[inode];
}

void InvariantChecker::size_for(const Model &m) {
  // Most steps make no object: then every table is as large as at the last check.
  const std::array<std::size_t, 8> sizes{m.inodes.size(),   m.files.size(), m.writes.size(),
                                         m.tasks.size(),    m.vmas.size(),  m.backings.size(),
                                         m.creds.size(),    m.backing_files.size()};
  if (sizes == sized_for_)
    return;
  sized_for_ = sizes;
  grow_to(inode_tally_, m.inodes.size());
  grow_to(inode_snap_, m.inodes.size());
  grow_to(file_snap_, m.files.size());
  grow_to(file_waiting_, m.files.size());
  grow_to(file_active_writes_, m.files.size());
  grow_to(write_snap_, m.writes.size());
  grow_to(write_retired_, m.writes.size());
  grow_to(task_snap_, m.tasks.size());
  grow_to(vma_snap_, m.vmas.size());
  grow_to(fb_in_idr_, m.backings.size());
  grow_to(fb_attached_, m.backings.size());
  grow_to(fb_seen_in_idr_, m.backings.size());
  grow_to(cred_file_holders_, m.creds.size());
  if (fb_of_cred_.size() < m.creds.size())
    fb_of_cred_.resize(m.creds.size(), -1);
  grow_to(backing_file_holders_, m.backing_files.size());
}

// Forgets every contribution and counts everything again; what invariant 9 and write
// retirement remember stays.
void InvariantChecker::resync(const Model &m) {
  file_snap_.assign(m.files.size(), FileSnap{});
  write_snap_.assign(m.writes.size(), WriteSnap{});
  task_snap_.assign(m.tasks.size(), TaskSnap{});
  vma_snap_.assign(m.vmas.size(), VmaSnap{});
  inode_snap_.assign(m.inodes.size(), InodeSnap{});
  inode_tally_.assign(m.inodes.size(), PerInode{});
  inode_lists_.clear();
  file_waiting_.assign(m.files.size(), 0);
  file_active_writes_.assign(m.files.size(), 0);
  active_writes_.clear();
  fb_in_idr_.assign(m.backings.size(), 0);
  fb_attached_.assign(m.backings.size(), 0);
  cred_file_holders_.assign(m.creds.size(), 0);
  fb_of_cred_.assign(m.creds.size(), -1);
  backing_file_holders_.assign(m.backing_files.size(), 0);
  idr_count_.clear();
  idr_bad_.clear();
  idr_new_.clear();
  sized_for_ = {};
  size_for(m);
  for (std::uint32_t i = 0; i < m.files.size(); ++i)
    update_file(m, i);
  for (std::uint32_t i = 0; i < m.writes.size(); ++i)
    update_write(m, i);
  for (std::uint32_t i = 0; i < m.tasks.size(); ++i)
    update_task(m, i);
  for (std::uint32_t i = 0; i < m.vmas.size(); ++i)
    update_vma(m, i);
  for (std::uint32_t i = 0; i < m.inodes.size(); ++i)
    update_inode(m, i);
  for (std::uint32_t i = 0; i < m.backings.size(); ++i) {
    fb_of_cred_.at(idx(m.backings[i].cred)) = i;
    dirty_.fbs.push_back(i);
  }
  for (std::uint32_t i = 0; i < m.backing_files.size(); ++i)
    dirty_.backing_files.push_back(i);
  for (const auto &e : m.fc.backing_files_map) {
    idr_apply(e, +1);
    idr_new_.push_back(e);
  }
  idr_seq_ = m.fc.backing_files_map.last_seq();
  synced_ = true;
}

void InvariantChecker::apply_file(const FileSnap &s, int d) {
  if (s.cred >= 0) {
    grow_to(cred_file_holders_, static_cast<std::size_t>(s.cred) + 1);
    cred_file_holders_[static_cast<std::size_t>(s.cred)] += d;
    dirty_.creds.push_back(static_cast<std::uint32_t>(s.cred));
  }
  if (s.passthrough >= 0) {
    grow_to(backing_file_holders_, static_cast<std::size_t>(s.passthrough) + 1);
    backing_file_holders_[static_cast<std::size_t>(s.passthrough)] += d;
    dirty_.backing_files.push_back(static_cast<std::uint32_t>(s.passthrough));
  }
  if (!s.live)
    return;
  PerInode &pi = tally(s.inode);
  pi.cached += s.iomode == IoMode::Cached ? d : 0;
  if (s.iomode == IoMode::Uncached) {
    pi.uncached += d;
    add_count(lists(s.inode).uncached_by_fb, s.opened_fb, d);
  }
  dirty_.inodes.push_back(s.inode);
}

void InvariantChecker::update_file(const Model &m, std::uint32_t f) {
  const FuseFile &ff = m.files[f];
  FileSnap next;
  next.known = true;
  next.live = !ff.released;
  next.iomode = ff.iomode;
  next.inode = idx(ff.inode);
  next.cred = key(ff.cred);
  next.passthrough = key(ff.passthrough);
  next.opened_fb = key(ff.opened_with_fb);
  FileSnap &s = file_snap_[f];
  if (s.known)
    apply_file(s, -1);
  // A write in progress is checked against its file's release.
  if ((!s.known || s.live != next.live) && file_active_writes_[f] > 0)
    for (std::uint32_t w : active_writes_)
      if (write_snap_[w].file == f)
        dirty_.writes.push_back(w);
  apply_file(next, +1);
  s = next;
  dirty_.files.push_back(f);
}

void InvariantChecker::apply_write(std::uint32_t w, const WriteSnap &s, int d) {
  if (!s.counted && !s.locked && !s.folio_locked)
    return;
  PerInode &pi = tally(s.inode);
  pi.counted_writes += s.counted ? d : 0;
  if (s.locked)
    (s.exclusive ? pi.writers : pi.readers) += d;
  if (s.folio_locked) {
    if (d > 0)
      lists(s.inode).folio_lockers.push_back(w);
    else
      erase_one(lists(s.inode).folio_lockers, w);
  }
  dirty_.inodes.push_back(s.inode);
}

void InvariantChecker::update_write(const Model &m, std::uint32_t w) {
  if (write_retired_[w])
    return;
  const Write &wr = m.writes[w];
  WriteSnap &s = write_snap_[w];
  if (s.known) {
    apply_write(w, s, -1);
  } else {
    active_writes_.push_back(w);
    grow_to(file_active_writes_, std::size_t{idx(wr.file)} + 1);
    file_active_writes_[idx(wr.file)]++;
  }
  s.known = true;
  s.inode = idx(wr.inode);
  s.file = idx(wr.file);
  s.counted = wr.counted;
  s.locked = wr.locked;
  s.exclusive = wr.exclusive;
  s.folio_locked = wr.folio_locked;
  apply_write(w, s, +1);
  dirty_.writes.push_back(w);
}

void InvariantChecker::retire_writes() {
  for (std::uint32_t w : retire_next_) {
    if (write_retired_[w])
      continue;
    write_retired_[w] = true;
    // Without tallies (a copy, or after lose_track) the next check recounts without it.
    if (w >= write_snap_.size() || !write_snap_[w].known)
      continue;
    WriteSnap &s = write_snap_[w];
    apply_write(w, s, -1);
    erase_one(active_writes_, w);
    file_active_writes_[s.file]--;
    s = WriteSnap{};
  }
  retire_next_.clear();
}

void InvariantChecker::apply_task(const TaskSnap &s, int d) {
  if (!s.asleep)
    return;
  PerInode &pi = tally(s.inode);
  pi.cache_waiters += s.cache_waiter ? d : 0;
  pi.folio_sleepers += s.folio_sleeper ? d : 0;
  dirty_.inodes.push_back(s.inode);
  if (s.file_waiting) {
    grow_to(file_waiting_, std::size_t{s.file} + 1);
    file_waiting_[s.file] += d;
    dirty_.files.push_back(s.file);
  }
}

void InvariantChecker::update_task(const Model &m, std::uint32_t t) {
  const Task &task = m.tasks[t];
  TaskSnap &s = task_snap_[t];
  if (s.known)
    apply_task(s, -1);
  s.known = true;
  s.asleep = !task.done;
  s.inode = idx(task.inode);
  s.file = idx(task.file);
  s.cache_waiter =
      task.kind == TaskKind::OpenCachedIoWait || task.kind == TaskKind::MmapCachedIoWait;
  s.folio_sleeper = !task.woken && (task.kind == TaskKind::ReadPageWait ||
                                    task.kind == TaskKind::OpenInvalidateWait ||
                                    task.kind == TaskKind::MmapInvalidateWait);
  s.file_waiting = task.kind == TaskKind::OpenCachedIoWait;
  apply_task(s, +1);
}

void InvariantChecker::apply_vma(std::uint32_t v, const VmaSnap &s, int d) {
  if (!s.mapped)
    return;
  switch (s.target) {
  case VmaTarget::BackingFile:
    grow_to(backing_file_holders_, std::size_t{s.backing_file} + 1);
    backing_file_holders_[s.backing_file] += d;
    dirty_.backing_files.push_back(s.backing_file);
    return;
  case VmaTarget::FuseFile: {
    if (d > 0)
      lists(s.inode).fuse_vmas.push_back(v);
    else
      erase_one(lists(s.inode).fuse_vmas, v);
    dirty_.inodes.push_back(s.inode);
    return;
  }
  }
}

void InvariantChecker::update_vma(const Model &m, std::uint32_t v) {
  const Vma &vma = m.vmas[v];
  VmaSnap &s = vma_snap_[v];
  if (s.known)
    apply_vma(v, s, -1);
  s.known = true;
  s.mapped = vma.mapped;
  s.target = vma.target;
  s.backing_file = idx(vma.backing_file);
  s.inode = idx(m.file(vma.file).inode);
  apply_vma(v, s, +1);
}

void InvariantChecker::update_inode(const Model &m, std::uint32_t i) {
  const FuseInode &fi = m.inodes[i];
  InodeSnap &s = inode_snap_[i];
  const std::int64_t attached = !fi.evicted ? key(fi.fb) : -1;
  if (s.known && s.attached >= 0) {
    fb_attached_[static_cast<std::size_t>(s.attached)]--;
    dirty_.fbs.push_back(static_cast<std::uint32_t>(s.attached));
  }
  if (attached >= 0) {
    grow_to(fb_attached_, static_cast<std::size_t>(attached) + 1);
    fb_attached_[static_cast<std::size_t>(attached)]++;
    dirty_.fbs.push_back(static_cast<std::uint32_t>(attached));
  }
  if (!s.known || s.fb != key(fi.fb))
    fb_changed_.push_back(i);
  s.known = true;
  s.attached = attached;
  s.fb = key(fi.fb);
  dirty_.inodes.push_back(i);
}

// A passthrough file is checked against its inode's fb: when that changes, the files that no
// longer match it are found (a scan, but only when some do, and then a violation is reported).
void InvariantChecker::follow_fb_changes(const Model &m) {
  for (std::uint32_t i : fb_changed_) {
    const PerInode &pi = tally(i);
    if (pi.uncached == count_of(lists_of(i).uncached_by_fb, inode_snap_[i].fb))
      continue;
    for (std::uint32_t f = 0; f < m.files.size(); ++f) {
      const FuseFile &ff = m.files[f];
      if (!ff.released && ff.iomode == IoMode::Uncached && idx(ff.inode) == i)
        dirty_.files.push_back(f);
    }
  }
  fb_changed_.clear();
}

void InvariantChecker::idr_apply(const BackingIdMap::Entry &e, int d) {
  const auto [id, fb] = e;
  int &c = idr_count_[id];
  c += d;
  if (id < 1 || c > 1)
    idr_bad_.insert(id);
  else
    idr_bad_.erase(id);
  if (c == 0)
    idr_count_.erase(id);
  grow_to(fb_in_idr_, std::size_t{idx(fb)} + 1);
  fb_in_idr_[idx(fb)] += d;
  dirty_.fbs.push_back(idx(fb));
}

std::vector<Violation> InvariantChecker::check(const Model &m, const ObjectNames &n,
                                               CheckMode mode) {
  std::vector<Violation> out;
  for (; warnings_seen_ < m.warnings.size(); ++warnings_seen_) {
    const Warning &w = m.warnings[warnings_seen_];
    out.push_back(Violation{"WARN", fmt::format("{}: {}", w.where, w.what)});
  }

  retire_writes();
  const BackingIdMap &idr = m.fc.backing_files_map;
  // A change the checker never saw (the driver cleared it unchecked) forces a full check.
  const bool missed = !idr.changes().empty() && idr.changes().front().seq > idr_seq_ + 1;
  if (mode == CheckMode::Full || !synced_ || missed || idr.last_seq() < idr_seq_) {
    resync(m);
  } else {
    size_for(m);
    for (std::uint32_t f : m.files.touched())
      update_file(m, f);
    for (std::uint32_t w : m.writes.touched())
      update_write(m, w);
    for (std::uint32_t t : m.tasks.touched())
      update_task(m, t);
    for (std::uint32_t v : m.vmas.touched())
      update_vma(m, v);
    for (std::uint32_t i : m.inodes.touched())
      update_inode(m, i);
    for (std::uint32_t b : m.backings.touched()) {
      fb_of_cred_.at(idx(m.backings[b].cred)) = b;
      dirty_.fbs.push_back(b);
    }
    for (std::uint32_t c : m.creds.touched())
      dirty_.creds.push_back(c);
    for (std::uint32_t bf : m.backing_files.touched())
      dirty_.backing_files.push_back(bf);
    for (const BackingIdMap::Change &c : idr.changes()) {
      if (c.seq <= idr_seq_)
        continue;
      idr_apply(c.entry, c.added ? +1 : -1);
      if (c.added)
        idr_new_.push_back(c.entry);
    }
    idr_seq_ = idr.last_seq();
  }
  follow_fb_changes(m);
  for (std::uint32_t c : dirty_.creds)
    if (c < fb_of_cred_.size() && fb_of_cred_[c] >= 0)
      dirty_.fbs.push_back(static_cast<std::uint32_t>(fb_of_cred_[c]));

  auto run = [&](std::vector<std::uint32_t> &targets, std::vector<std::uint32_t> &failing,
                 auto check_one) {
    targets.insert(targets.end(), failing.begin(), failing.end());
    sort_unique(targets);
    failing.clear();
    for (std::uint32_t i : targets)
      if ((this->*check_one)(m, n, i, out))
        failing.push_back(i);
  };
  run(dirty_.inodes, failing_.inodes, &InvariantChecker::check_inode);
  run(dirty_.files, failing_.files, &InvariantChecker::check_file);
  check_idr(m, out);
  run(dirty_.fbs, failing_.fbs, &InvariantChecker::check_fb);
  run(dirty_.backing_files, failing_.backing_files, &InvariantChecker::check_backing_file);
  run(dirty_.writes, failing_.writes, &InvariantChecker::check_write);
  // A returned write changes no more: after this check it leaves the tallies.
  for (std::uint32_t w : dirty_.writes)
    if (m.writes[w].done)
      retire_next_.push_back(w);
  std::erase_if(failing_.writes, [&m](std::uint32_t w) { return m.writes[w].done; });
  dirty_.clear();
  return out;
}

bool InvariantChecker::check_inode(const Model &m, const ObjectNames &n, std::uint32_t ii,
                                   std::vector<Violation> &out) {
  const std::size_t before = out.size();
  auto bad = [&out](std::string rule, std::string msg) {
    out.push_back(Violation{std::move(rule), std::move(msg)});
  };
  const FuseInode &fi = m.inodes[ii];
  if (fi.evicted)
    return false;
  const PerInode &pi = tally(ii);
  // Named only when something is wrong: most checks find nothing.
  auto name = [&n, ii] { return n.inode(InodeId{ii}); };
  if (fi.fb && fi.iocachectr >= 0)
    bad("I1", fmt::format("inode {}: fb attached but iocachectr={} (passthrough needs < 0)", name(),
                          fi.iocachectr));
  const int cached = pi.cached, uncached = pi.uncached, writes = pi.counted_writes;
  if (fi.iocachectr != cached - uncached - writes)
    bad("I2", fmt::format("inode {}: iocachectr={} but {} cached - {} uncached - {} parallel "
                          "writes = {}",
                          name(), fi.iocachectr, cached, uncached, writes,
                          cached - uncached - writes));
  if (cached > 0 && fi.fb)
    bad("I4", fmt::format("inode {}: {} cached file(s) while {} is attached", name(), cached,
                          n.fb(m, *fi.fb)));
  if (fi.iocachectr > 0 && !fi.cache_io_mode)
    bad("I8", fmt::format("inode {}: iocachectr={} but FUSE_I_CACHE_IO_MODE is clear", name(),
                          fi.iocachectr));
  if (fi.cache_io_mode && fi.iocachectr <= 0 && pi.cache_waiters == 0)
    bad("I8", fmt::format("inode {}: FUSE_I_CACHE_IO_MODE set with iocachectr={} and no cached "
                          "opener waiting",
                          name(), fi.iocachectr));
  const InodeLists &il = lists_of(ii);
  if (fi.fb && m.profile.has(model::Feature::MmapRefusedOnBackingInode) && !il.fuse_vmas.empty()) {
    std::vector<std::uint32_t> vmas = il.fuse_vmas;
    std::sort(vmas.begin(), vmas.end());
    for (std::uint32_t v : vmas) {
      const Vma &vma = m.vmas[v];
      if (vma.created_at >= fi.fb_attached_at)
        bad("I13", fmt::format("inode {}: mapping {} made through non-passthrough file {} after "
                               "{} was attached",
                               name(), n.vma(VmaId{v}), n.file(vma.file), n.fb(m, *fi.fb)));
    }
  }
  const int readers = pi.readers, writers = pi.writers;
  if (readers != fi.i_rwsem.readers || (writers > 0) != fi.i_rwsem.writer || writers > 1 ||
      (writers > 0 && readers > 0))
    bad("lock", fmt::format("inode {}: i_rwsem readers={} writer={} but writes hold {} shared, "
                            "{} exclusive",
                            name(), fi.i_rwsem.readers, fi.i_rwsem.writer, readers, writers));
  // The folio lock: only a write-through WRITE in flight under the exclusive inode lock holds
  // it, only while the folio is not uptodate, and whoever sleeps on it has a holder to wake it.
  std::vector<std::uint32_t> lockers;
  if (!il.folio_lockers.empty()) {
    lockers = il.folio_lockers;
    std::sort(lockers.begin(), lockers.end());
  }
  for (std::uint32_t wi : lockers) {
    const Write &w = m.writes[wi];
    if (!w.in_flight || !w.locked || !w.exclusive || !w.folio_in_mapping || fi.folio_uptodate)
      bad("folio", fmt::format("inode {}: write {} holds the folio lock with in_flight={} "
                               "inode-locked={} exclusive={} in_mapping={} uptodate={}",
                               name(), n.write(WriteId{wi}), w.in_flight, w.locked, w.exclusive,
                               w.folio_in_mapping, fi.folio_uptodate));
  }
  if (lockers.size() > 1)
    bad("folio", fmt::format("inode {}: {} writes hold the folio lock", name(), lockers.size()));
  if (lockers.empty() && pi.folio_sleepers > 0)
    bad("folio", fmt::format("inode {}: a call sleeps on the folio lock nobody holds", name()));
  return out.size() != before;
}

bool InvariantChecker::check_file(const Model &m, const ObjectNames &n, std::uint32_t fi,
                                  std::vector<Violation> &out) {
  const std::size_t before = out.size();
  auto bad = [&out](std::string rule, std::string msg) {
    out.push_back(Violation{std::move(rule), std::move(msg)});
  };
  const FuseFile &ff = m.files[fi];
  if (ff.released) {
    if (ff.f_count.value() != 0 || ff.passthrough || ff.cred || ff.iomode != IoMode::None)
      bad("I3", fmt::format("file {}: released but f_count={} passthrough={} cred={} iomode={}",
                            n.file(FileId{fi}), ff.f_count.value(), ff.passthrough.has_value(),
                            ff.cred.has_value(), iomode_name(ff.iomode)));
    return out.size() != before;
  }
  if (ff.f_count.value() <= 0 && file_waiting_[fi] == 0)
    bad("file", fmt::format("file {}: not released but f_count={}", n.file(FileId{fi}),
                            ff.f_count.value()));
  if (ff.iomode == IoMode::Uncached) {
    const FuseInode &inode = m.inode(ff.inode);
    if (!ff.passthrough || !ff.cred)
      bad("I3", fmt::format("file {}: iomode uncached without backing_file/cred",
                            n.file(FileId{fi})));
    if (!backing_joins_inode(m, inode.fb, ff.opened_with_fb))
      bad("I3", fmt::format("file {}: opened with {} but inode {} has {}", n.file(FileId{fi}),
                            ff.opened_with_fb ? n.fb(m, *ff.opened_with_fb) : "no fb",
                            n.inode(ff.inode), inode.fb ? n.fb(m, *inode.fb) : "no fb"));
  }
  if (ff.passthrough && ff.iomode != IoMode::Uncached)
    bad("I3", fmt::format("file {}: has a backing_file but iomode={}", n.file(FileId{fi}),
                          iomode_name(ff.iomode)));
  return out.size() != before;
}

void InvariantChecker::check_idr(const Model &m, std::vector<Violation> &out) {
  auto bad = [&out](std::string msg) { out.push_back(Violation{"I9", std::move(msg)}); };
  for (const auto &[id, fb] : idr_new_) {
    if (idx(fb) >= m.backings.size() || fb_seen_in_idr_[idx(fb)])
      continue;
    fb_seen_in_idr_[idx(fb)] = true;
    if (id <= max_id_allocated_)
      bad(fmt::format("id {} allocated after id {}: cyclic allocation moves forward", id,
                      max_id_allocated_));
    max_id_allocated_ = std::max(max_id_allocated_, id);
  }
  idr_new_.clear();
  for (std::int32_t id : idr_bad_) {
    const int entries = idr_count_.at(id);
    for (int e = 0; e < entries; ++e) {
      if (id < 1)
        bad(fmt::format("id {} in the id map is outside [1, INT_MAX]", id));
      if (entries > 1)
        bad(fmt::format("id {} appears {} times in the id map", id, entries));
    }
  }
}

bool InvariantChecker::check_fb(const Model &m, const ObjectNames &n, std::uint32_t bi,
                                std::vector<Violation> &out) {
  const std::size_t before = out.size();
  auto bad = [&out](std::string rule, std::string msg) {
    out.push_back(Violation{std::move(rule), std::move(msg)});
  };
  const FbId fbid{bi};
  const FuseBacking &b = m.backings[bi];
  const int in_idr = fb_in_idr_[bi], attached = fb_attached_[bi];
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
  const int cred_holders = (b.freed ? 0 : 1) + cred_file_holders_.at(idx(b.cred));
  if (m.creds.at(idx(b.cred)).usage.value() != cred_holders)
    bad("cred", fmt::format("{}: its cred has usage {} but {} holder(s)", n.fb(m, fbid),
                            m.creds.at(idx(b.cred)).usage.value(), cred_holders));
  return out.size() != before;
}

bool InvariantChecker::check_backing_file(const Model &m, const ObjectNames &n, std::uint32_t bf,
                                          std::vector<Violation> &out) {
  if (m.backing_files[bf].f_count.value() == backing_file_holders_[bf])
    return false;
  out.push_back(Violation{
      "backing_file",
      fmt::format("backing_file#{} (for {}): f_count={} but held by {}", bf,
                  n.file(m.backing_files[bf].user_file), m.backing_files[bf].f_count.value(),
                  join(backing_file_holders(m, n, BackingFileId{bf})))});
  return true;
}

bool InvariantChecker::check_write(const Model &m, const ObjectNames &n, std::uint32_t wi,
                                   std::vector<Violation> &out) {
  const std::size_t before = out.size();
  const Write &w = m.writes[wi];
  if ((w.in_flight || w.locked) && m.file(w.file).released)
    out.push_back(Violation{"write", fmt::format("write {} in progress on released file {}",
                                                 n.write(WriteId{wi}), n.file(w.file))});
  if (w.done && (w.in_flight || w.locked || w.counted || w.folio_locked))
    out.push_back(Violation{
        "write", fmt::format("write {} returned but still holds in_flight={} inode-locked={} "
                             "parallel-write count={} folio lock={}",
                             n.write(WriteId{wi}), w.in_flight, w.locked, w.counted,
                             w.folio_locked)});
  return out.size() != before;
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
